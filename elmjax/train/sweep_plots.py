"""The sweep report's PNG plots, drawn on explicit ``matplotlib.figure.Figure`` objects
(no pyplot, no process-wide backend switch).

* ``loss_vs_tokens.png`` / ``loss_vs_flops.png``: every run's training loss curve;
* ``loss_vs_compute.png``: each run's final loss against its compute, the frontier
  points and the fitted ``L(C) = E + A C^-alpha``;
* ``isoflop.png``: loss against parameters at each budget with the fitted parabola and
  its optimum, and the fitted ``N*(C) = k C^a`` beside it.
A plot whose fit is impossible still gets written, saying why inside the axes.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
from matplotlib.figure import Figure


def _save(fig: Figure, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    return path


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, textwrap.fill(text, 50), transform=ax.transAxes, ha="center",
            va="center", fontsize=8, color="0.3")


def _curves(rows, out: str, x_of: str) -> str:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    order = sorted(rows, key=lambda r: r.values["params"])
    for color, r in zip(_colors(len(order)), order):
        steps, loss = r.curve
        if not len(steps):
            continue
        x = steps * r.tokens_per_step * (r.flops_per_token if x_of == "flops" else 1)
        ax.plot(x, loss, color=color, lw=1.2, label=f"{r.values['run']} ({r.values['params'] / 1e6:.2g}M)")
    if not any(len(r.curve[0]) for r in rows):
        _note(ax, "no run has logged a loss yet")
    else:
        ax.set_xscale("log")
        ax.legend(fontsize=7, ncol=2)
    ax.set_xlabel("tokens" if x_of == "tokens" else "training FLOPs")
    ax.set_ylabel("train loss")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)


def _loss_vs_compute(rows, fit, out: str) -> str:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    pts = [(r.values["flops"], r.values[fit.target]) for r in rows
           if r.values["status"] == "completed" and r.values[fit.target] is not None]
    if pts:
        ax.scatter(*zip(*pts), s=18, color="0.6", label="runs")
    if fit.frontier:
        ax.scatter(*zip(*fit.frontier), s=30, color="C0", label="frontier (lowest loss per budget)")
    lc = fit.loss_vs_compute
    if lc.ok:
        c = np.logspace(np.log10(min(p[0] for p in fit.frontier)) - 0.3,
                        np.log10(max(p[0] for p in fit.frontier)) + 0.5, 200)
        p = lc.params
        ax.plot(c, p["E"] + p["A"] * c ** -p["alpha"], color="C3",
                label=f"L = {p['E']:.3g} + {p['A']:.3g}·C^-{p['alpha']:.3f} "
                      f"(α ± {lc.std['alpha']:.2g})")
    else:
        _note(ax, f"no fit: {lc.message}")
    if pts:
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(fit.target)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)


def _isoflop(fit, out: str) -> str:
    fig = Figure(figsize=(11, 4.5))
    ax, ax_n = fig.subplots(1, 2)
    if not fit.isoflop:
        _note(ax, f"no IsoFLOP curves: {fit.optimal_size.message}")
    for color, (c, n, loss, opt) in zip(_colors(len(fit.isoflop)), fit.isoflop):
        ax.scatter(n, loss, color=color, s=18, label=f"C = {c:.2g}")
        if opt.ok:
            x = np.log(n)
            coef = np.polyfit(x, loss, 2)
            grid = np.linspace(x.min(), x.max(), 100)
            ax.plot(np.exp(grid), np.polyval(coef, grid), color=color, lw=1)
            ax.axvline(opt.params["N_opt"], color=color, ls=":", lw=0.8)
    if fit.isoflop:
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("parameters N")
    ax.set_ylabel(fit.target)
    ax.set_title("IsoFLOP curves (dotted: loss-optimal N)", fontsize=9)
    ns = fit.optimal_size
    opt_pts = [(c, o.params["N_opt"], o.std["N_opt"]) for c, _, _, o in fit.isoflop if o.ok]
    if opt_pts:
        c, n, err = (np.array(v, float) for v in zip(*opt_pts))
        ax_n.errorbar(c, n, yerr=np.nan_to_num(err), fmt="o", color="C0", label="N* per budget")
        ax_n.set_xscale("log")
        ax_n.set_yscale("log")
    if ns.ok:
        grid = np.logspace(np.log10(c.min()) - 0.3, np.log10(c.max()) + 0.5, 100)
        ax_n.plot(grid, ns.params["k"] * grid ** ns.params["a"], color="C3",
                  label=f"N* = {ns.params['k']:.3g}·C^{ns.params['a']:.3f} (a ± {ns.std['a']:.2g})")
        ax_n.legend(fontsize=7)
    else:
        _note(ax_n, f"no N*(C) fit: {ns.message}")
    ax_n.set_xlabel("training FLOPs C")
    ax_n.set_ylabel("loss-optimal parameters N*")
    for a in (ax, ax_n):
        a.grid(alpha=0.3, which="both")
    return _save(fig, out)


def write_plots(rows, fit, out_dir: str) -> dict:
    """Writes the four PNGs into ``out_dir``; returns ``{plot name: path}``."""
    p = lambda name: os.path.join(out_dir, f"{name}.png")  # noqa: E731
    return {"loss_vs_tokens": _curves(rows, p("loss_vs_tokens"), "tokens"),
            "loss_vs_flops": _curves(rows, p("loss_vs_flops"), "flops"),
            "loss_vs_compute": _loss_vs_compute(rows, fit, p("loss_vs_compute")),
            "isoflop": _isoflop(fit, p("isoflop"))}
