"""``elmjax sweep report``: every run's config and metrics in one table, scaling fits, plots.

``gather(spec, workdir)`` reads each run's config (the sweep file with its overrides, so a
run that never started still has a row) and its ``metrics.jsonl``; ``fits(rows)`` fits
``L(C)`` on the compute frontier and, where several sizes share a budget, the IsoFLOP
optima and ``N*(C)``; ``write_report`` writes ``report.md``, ``report.csv``,
``report.json`` and the PNG plots (``sweep_plots``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np

from elmjax.model.schedule import flops_per_token, param_count
from elmjax.metrics import read_metrics
from elmjax.train import scaling_fit
from elmjax.train import sweep as sweep_lib
from elmjax.train.sweep_runner import run_state

COLUMNS = ("run", "status", "layers", "model_dim", "params", "non_embedding_params",
           "steps_done", "steps", "tokens", "flops", "final_loss", "final_loss_avg",
           "best_loss", "heldout_loss", "wall_s")
FINAL_WINDOW = 0.1  # final_loss_avg: mean train loss over the last 10% of steps


@dataclasses.dataclass
class RunRow:
    """One run's row: ``values`` (``COLUMNS`` plus ``eval:KEY`` metrics) and its loss curve
    ``curve`` as ``(steps, losses)`` arrays with ``tokens_per_step``/``flops_per_token``."""

    values: dict
    curve: tuple
    tokens_per_step: int
    flops_per_token: float


def _loss_rows(rows: list[dict]) -> list[dict]:
    """Training rows by step, the last one kept when a resumed run logged a step twice."""
    by_step = {r["step"]: r for r in rows if "loss" in r}
    return [by_step[s] for s in sorted(by_step)]


def run_row(workdir: str, name: str, cfg) -> RunRow:
    """The table row of run ``name`` (config ``cfg``) in sweep directory ``workdir``."""
    d = sweep_lib.run_dir(workdir, name)
    metrics = read_metrics(d) if os.path.isdir(d) else []
    train = _loss_rows(metrics)
    evals = [r for r in metrics  # evaluation rows: written apart from the training rows
             if "loss" not in r and any(k.startswith("eval") or "/" in k for k in r)]
    seq, tps = cfg.data.seq_len, cfg.data.seq_len * cfg.train.global_batch_size
    fpt = flops_per_token(cfg.model, seq, causal=True)
    n = param_count(cfg.model)
    steps = np.array([r["step"] for r in train], float)
    losses = np.array([r["loss"] for r in train], float)
    done = int(steps[-1]) if len(steps) else 0
    status = run_state(workdir, name, cfg.train.steps)
    record = sweep_lib.read_status(workdir, name) or {}
    v = {"run": name, "status": status, "layers": cfg.model.num_layers,
         "model_dim": cfg.model.model_dim, "params": n,
         "non_embedding_params": param_count(cfg.model, embeddings=False),
         "steps_done": done, "steps": int(cfg.train.steps), "tokens": done * tps,
         "flops": done * tps * fpt, "final_loss": None, "final_loss_avg": None,
         "best_loss": None, "heldout_loss": None, "wall_s": record.get("wall_s")}
    if len(losses):
        tail = losses[steps >= done - max(FINAL_WINDOW * done, 1)]
        v.update(final_loss=float(losses[-1]), final_loss_avg=float(np.mean(tail)),
                 best_loss=float(np.min(losses)))
    if evals:
        last = evals[-1]
        v["heldout_loss"] = last.get("eval_loss")
        v.update({f"eval:{k}": val for k, val in last.items()
                  if k not in ("step", "eval_loss") and isinstance(val, (int, float))})
    return RunRow(v, (steps, losses), tps, fpt)


def gather(spec: str, workdir: str, extra_overrides=()) -> list[RunRow]:
    """Rows of every run of sweep ``spec`` in ``workdir`` (the overrides the sweep was run
    with, noted in ``workdir/sweep.json``, are applied first)."""
    extra = [*sweep_lib.recorded_overrides(workdir), *extra_overrides]
    return [run_row(workdir, name, cfg) for name, _, cfg in sweep_lib.resolve(spec, extra)]


def fit_target(rows: list[RunRow]) -> str:
    """The loss the fits use: held-out loss when every finished run has one, else the
    train loss averaged over each run's last 10% of steps."""
    done = [r.values for r in rows if r.values["final_loss_avg"] is not None]
    if done and all(v["heldout_loss"] is not None for v in done):
        return "heldout_loss"
    return "final_loss_avg"


@dataclasses.dataclass
class Fits:
    """The report's fits: ``loss_vs_compute`` on the frontier points ``frontier`` ([(C, L)]),
    ``optimal_size`` and per-budget ``isoflop`` ([(C, sizes, losses, FitResult)]), the
    ``target`` loss column and ``notes`` saying what limits them."""

    target: str
    frontier: list
    loss_vs_compute: scaling_fit.FitResult
    isoflop: list
    optimal_size: scaling_fit.FitResult
    notes: list


def fits(rows: list[RunRow], *, min_steps: int = 100, bootstrap: int = 200) -> Fits:
    """Fits ``L(C)`` to the lowest loss at each compute budget (runs grouped by FLOPs) and,
    for budgets with 3+ sizes, the IsoFLOP optima and ``N*(C) = k C^a``. Only completed
    runs count; runs shorter than ``min_steps`` are noted as too short to trust."""
    target = fit_target(rows)
    done = [r.values for r in rows if r.values["status"] == "completed"
            and r.values[target] is not None]
    notes = []
    if len(done) < len(rows):
        notes.append(f"{len(rows) - len(done)} of {len(rows)} runs are not completed and are "
                     "left out of the fits")
    short = [v["run"] for v in done if v["steps"] < min_steps]
    if short:
        notes.append(f"runs too short to trust (< {min_steps} steps, dominated by warm-up): "
                     f"{', '.join(short)}")
    flops = np.array([v["flops"] for v in done], float)
    groups = scaling_fit.group_by_compute(flops) if len(done) else []
    frontier, iso_groups = [], []
    for g in groups:
        vs = [done[i] for i in g]
        frontier.append((float(np.median([v["flops"] for v in vs])), min(v[target] for v in vs)))
        if len({v["params"] for v in vs}) >= 3:
            iso_groups.append((frontier[-1][0], np.array([v["params"] for v in vs], float),
                               np.array([v[target] for v in vs], float)))
    c = np.array([p[0] for p in frontier])
    loss = np.array([p[1] for p in frontier])
    lc = scaling_fit.fit_loss_vs_compute(c, loss, bootstrap=bootstrap)
    if iso_groups:
        ns, optima = scaling_fit.fit_optimal_size(iso_groups, bootstrap=bootstrap)
    else:
        ns, optima = scaling_fit.no_fit(0, "no compute budget has 3 or more model sizes "
                                            "(an IsoFLOP grid is needed)"), []
    iso = [(g[0], g[1], g[2], o) for g, o in zip(iso_groups, optima)]
    return Fits(target, frontier, lc, iso, ns, notes)


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def columns(rows: list[RunRow]) -> list[str]:
    """``COLUMNS`` then every ``eval:KEY`` any run reports (sorted)."""
    extra = sorted({k for r in rows for k in r.values if k.startswith("eval:")})
    return [*COLUMNS, *extra]


def markdown(rows: list[RunRow], fit: Fits, title: str) -> str:
    """The report as Markdown: the table, the fits with uncertainty, notes, plot links."""
    cols = columns(rows)
    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.values.get(c)) for c in cols) + " |" for r in rows]
    lines += ["", f"Fits use `{fit.target}`; FLOPs are training FLOPs (forward + backward, "
              "causal attention halved) from the model's own accounting. ± is the standard "
              "deviation over bootstrap resamples of the runs (68% range: their 16th to 84th "
              "percentiles) unless a fit says otherwise.", "",
              "- " + fit.loss_vs_compute.describe("L(C) = E + A·C^(−alpha), compute frontier"),
              "- " + fit.optimal_size.describe("N*(C) = k·C^a, IsoFLOP optima")]
    lines += [f"- " + o.describe(f"IsoFLOP C = {c:.3g}: loss-optimal N") for c, _, _, o in fit.isoflop]
    lines += [f"- note: {n}" for n in fit.notes]
    lines += ["", "![loss vs tokens](loss_vs_tokens.png) ![loss vs FLOPs](loss_vs_flops.png)",
              "", "![final loss vs compute](loss_vs_compute.png) ![IsoFLOP](isoflop.png)", ""]
    return "\n".join(lines)


def _finite(x):
    """``x`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_report(spec: str, workdir: str, out_dir: str | None = None, extra_overrides=(),
                 bootstrap: int = 200, min_steps: int = 100) -> dict:
    """Writes ``report.md/.csv/.json`` and the plots to ``out_dir`` (default
    ``workdir/report``); returns ``{"dir", "files", "fits"}``."""
    from elmjax.train import sweep_plots

    rows = gather(spec, workdir, extra_overrides)
    fit = fits(rows, bootstrap=bootstrap, min_steps=min_steps)
    out_dir = out_dir or os.path.join(workdir, "report")
    os.makedirs(out_dir, exist_ok=True)
    cols = columns(rows)
    files = {"md": os.path.join(out_dir, "report.md"), "csv": os.path.join(out_dir, "report.csv"),
             "json": os.path.join(out_dir, "report.json")}
    with open(files["md"], "w") as f:
        f.write(markdown(rows, fit, f"Sweep report: {spec}"))
    with open(files["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows([{c: r.values.get(c) for c in cols} for r in rows])
    summary = {"sweep": spec, "fit_target": fit.target, "runs": [r.values for r in rows],
               "fits": {"loss_vs_compute": dataclasses.asdict(fit.loss_vs_compute),
                        "optimal_size": dataclasses.asdict(fit.optimal_size),
                        "isoflop": [{"flops": c, "fit": dataclasses.asdict(o)}
                                    for c, _, _, o in fit.isoflop]},
               "notes": fit.notes}
    with open(files["json"], "w") as f:
        json.dump(_finite(summary), f, indent=1)
    files.update(sweep_plots.write_plots(rows, fit, out_dir))
    return {"dir": out_dir, "files": files, "fits": fit}
