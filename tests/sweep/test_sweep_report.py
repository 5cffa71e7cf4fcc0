"""The report's rows from written metrics: resumed steps counted once, held-out loss and eval
metrics as columns, the fit target, and runs that never started."""

import json
import os

import numpy as np

from elmjax.metrics import MetricsWriter
from elmjax.model.schedule import flops_per_token, param_count
from elmjax.presets import base_config
from elmjax.train import sweep, sweep_report


def _cfg(dim, steps):
    c = base_config()
    c.model.num_layers, c.model.model_dim, c.model.head_dim = 2, dim, 16
    c.model.vocab_size, c.model.ffn_dim_divisor = 512, 16
    c.data.seq_len, c.train.global_batch_size, c.train.steps = 32, 4, steps
    return c


def _write(workdir, name, rows):
    w = MetricsWriter(os.path.join(workdir, name))
    for step, values in rows:
        w.write(step, values)
    w.close()


def test_rows_fits_and_files_from_written_metrics(tmp_path):
    wd = str(tmp_path)
    a, b = _cfg(32, 10), _cfg(64, 10)
    # run a: resumed after step 6 (steps 6..10 logged twice: the later value counts), evaluated
    _write(wd, "a", [(s, {"loss": 10.0 - s}) for s in (2, 4, 6, 8)]
           + [(s, {"loss": 9.0 - s}) for s in (6, 8, 10)]
           + [(10, {"eval_loss": 2.5, "eval_ppl/poems": 12.2, "arc_easy/acc": 0.3})])
    sweep.write_status(wd, "a", {"status": "completed", "wall_s": 12.0})
    row = sweep_report.run_row(wd, "a", a).values
    tps = 32 * 4
    assert row["final_loss"] == -1.0 and row["best_loss"] == -1.0
    assert row["final_loss_avg"] == -1.0  # last 10% of 10 steps: step 10 only
    assert row["steps_done"] == 10 and row["tokens"] == 10 * tps
    assert row["flops"] == 10 * tps * flops_per_token(a.model, 32)
    assert row["params"] == param_count(a.model)
    assert row["non_embedding_params"] == param_count(a.model) - 512 * 32
    assert row["heldout_loss"] == 2.5 and row["eval:arc_easy/acc"] == 0.3
    assert row["eval:eval_ppl/poems"] == 12.2 and row["status"] == "completed"
    never = sweep_report.run_row(wd, "b", b).values
    assert never["status"] == "not started" and never["final_loss"] is None
    rows = [sweep_report.run_row(wd, "a", a), sweep_report.run_row(wd, "b", b)]
    assert sweep_report.columns(rows)[-2:] == ["eval:arc_easy/acc", "eval:eval_ppl/poems"]
    fit = sweep_report.fits(rows, bootstrap=5)
    assert fit.target == "heldout_loss"
    assert any("1 of 2 runs are not completed" in n for n in fit.notes)
    assert not fit.loss_vs_compute.ok and not fit.optimal_size.ok


def test_report_fits_an_isoflop_grid_end_to_end(tmp_path, monkeypatch):
    """Synthetic runs on an IsoFLOP grid with losses from a known law: the report finds the
    budgets, fits N*(C) near the true exponent and writes every file."""
    wd = str(tmp_path)
    rng = np.random.default_rng(0)
    runs, cfgs = [], {}
    dims = (32, 48, 64, 96, 128)
    n_mid = param_count(_cfg(64, 1).model)
    for c_budget in (1e12, 4e12, 1.6e13):
        for d in dims:
            cfg = _cfg(d, 1)
            fpt = flops_per_token(cfg.model, 32)
            steps = max(1, int(round(c_budget / (fpt * 32 * 4))))
            cfg.train.steps = steps
            n = param_count(cfg.model)
            n_opt = n_mid * (c_budget / 4e12) ** 0.5  # inside the sizes at every budget
            loss = 2 + 0.05 * np.log(n / n_opt) ** 2 + rng.normal(0, 0.001)
            name = f"d{d}_C{c_budget:.0e}"
            cfgs[name] = cfg
            _write(wd, name, [(steps, {"loss": float(loss)})])
            sweep.write_status(wd, name, {"status": "completed", "wall_s": 1.0})
            runs.append(name)
    rows = [sweep_report.run_row(wd, n, cfgs[n]) for n in runs]
    monkeypatch.setattr(sweep_report, "gather", lambda *a, **k: rows)
    out = sweep_report.write_report("grid.py", wd, bootstrap=20, min_steps=1)
    fit = out["fits"]
    assert len(fit.isoflop) == 3 and fit.optimal_size.ok
    assert all(o.ok and not o.message for *_, o in fit.isoflop)  # interior optima
    assert abs(fit.optimal_size.params["a"] - 0.5) < 0.1
    summary = json.load(open(out["files"]["json"]))
    assert summary["fits"]["optimal_size"]["ok"] and len(summary["runs"]) == 15
    for key in ("loss_vs_tokens", "loss_vs_flops", "loss_vs_compute", "isoflop"):
        assert os.path.getsize(out["files"][key]) > 0
