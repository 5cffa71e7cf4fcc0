"""Sweep of the quickstart two-phase curriculum: when phase 2 starts x how much of phase 2
is synthetic data. Six runs::

    elmjax sweep list experiments/sweeps/quickstart_phase2.py
    elmjax sweep run experiments/sweeps/quickstart_phase2.py --workdir runs/sweep_phase2

``get_config()`` is the base; ``get_sweep()`` lists each run's name and config overrides
(keys as on the command line). On a cluster, submit each as its own job with
``elmjax train --config experiments/quickstart_two_phase.py --workdir DIR/NAME <overrides>``.
"""

import os

from elmjax.presets import config_module

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "quickstart_two_phase.py")


def get_config(arg=None):
    return config_module(BASE).get_config(arg)


def get_sweep():
    runs = []
    for start in (0.6, 0.8):
        for synthetic in ("low", "mid", "high"):
            mixture = f"data_mixtures/sweeps/quickstart_phase2_synthetic_{synthetic}.yaml"
            runs.append((f"start{int(start * 100)}_synthetic_{synthetic}",
                         {"curriculum.web.fraction": start, "curriculum.refined.mixture": mixture}))
    return runs
