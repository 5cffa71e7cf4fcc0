"""The loss-curve plot draws on its own figure: no process-wide matplotlib state changes."""

import json

import matplotlib
import numpy as np

from elmjax import metrics


def test_plot_loss_leaves_the_matplotlib_backend_and_pyplot_alone(tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    rows = [{"step": s, "loss": 5.0 / s, "phase": "web" if s < 6 else "refined"}
            for s in range(1, 11)] + [{"step": 10, "loss": 0.5, "eval_loss": 0.6}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend plot_loss does not use: a switch to Agg would show
    try:
        figures = plt.get_fignums()
        path = metrics.plot_loss(tmp_path)
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures
    finally:
        matplotlib.use(before)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (4 * 110, 7 * 110)  # figsize (7, 4) inches at 110 dpi
    assert np.ptp(image[..., :3]) > 0  # something was drawn


def test_plot_loss_without_rows_writes_nothing(tmp_path):
    assert metrics.plot_loss(tmp_path) is None
    assert not (tmp_path / "loss.png").exists()
