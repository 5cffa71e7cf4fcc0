"""Scaling-law fits with bootstrap uncertainty over runs (scipy / numpy least squares).

* ``fit_loss_vs_compute``: ``L(C) = E + A * C^(-alpha)`` through (compute, final loss)
  points, by ``scipy.optimize.curve_fit`` in a parameterisation that is well scaled
  (``A`` as a log-amplitude at the geometric-mean compute).
* ``isoflop_optimum``: at one compute budget, a parabola in ``log N`` through the losses of
  several sizes (Chinchilla's approach 2); its vertex is the loss-optimal size ``N*``.
* ``fit_optimal_size``: ``N*(C) = k * C^a`` by linear least squares in log-log space.

Each fit is repeated on bootstrap resamples of the runs; the reported uncertainty is the
standard deviation of the refitted parameters, with the 16th-84th percentile range. A fit
with too few points says so in ``FitResult.message`` instead of returning numbers.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import optimize, stats


@dataclasses.dataclass
class FitResult:
    """Fitted ``params`` (name -> value), their bootstrap ``std`` and ``(p16, p84)``
    ``interval``; ``n`` points used; ``ok`` False (and ``message`` saying why) when the data
    cannot support the fit."""

    ok: bool
    params: dict
    std: dict
    interval: dict
    n: int
    message: str = ""

    def describe(self, name: str) -> str:
        """One line: ``name: alpha = 0.31 ± 0.04 (68% range 0.27 to 0.35), ...`` or the reason."""
        if not self.ok:
            return f"{name}: no fit — {self.message}"
        parts = [f"{k} = {v:.4g} ± {self.std[k]:.2g} (68% range {self.interval[k][0]:.4g} to "
                 f"{self.interval[k][1]:.4g})" for k, v in self.params.items()]
        return f"{name} ({self.n} points): " + ", ".join(parts) + (
            f" — {self.message}" if self.message else "")


def no_fit(n: int, message: str) -> FitResult:
    """A fit that could not be made, with the reason."""
    return FitResult(False, {}, {}, {}, n, message)


def _summarise(point: dict, samples: list[dict], n: int, message: str = "") -> FitResult:
    keys = list(point)
    arr = {k: np.array([s[k] for s in samples]) for k in keys}
    std = {k: float(np.std(arr[k])) if len(samples) > 1 else float("nan") for k in keys}
    interval = {k: (float(np.percentile(arr[k], 16)), float(np.percentile(arr[k], 84)))
                if len(samples) > 1 else (float("nan"), float("nan")) for k in keys}
    if len(samples) < 2:
        message = (message + "; " if message else "") + "bootstrap failed, no uncertainty"
    return FitResult(True, point, std, interval, n, message)


# --------------------------------------------------------------------------- L(C)


MIN_DISTINCT_RESAMPLES = 10  # fewer: the bootstrap cannot measure spread (see below)


def _power_law_fit(c: np.ndarray, loss: np.ndarray, start: dict | None = None) -> dict | None:
    """Least-squares ``E, A, alpha`` for ``loss = E + A c^-alpha`` (None if it fails).

    Tries a small grid of starting points, or only ``start`` (a previous fit: bootstrap)."""
    x = np.log(c)
    x0 = float(np.mean(x))

    def model(x, e, log_a, alpha):  # log_a: log of the reducible loss at c = exp(x0)
        return e + np.exp(log_a - alpha * (x - x0))

    best = None
    lo = float(np.min(loss))
    if start is None:
        starts = [(f * lo, a0) for a0 in (0.05, 0.2, 0.5) for f in (0.0, 0.5, 0.9)]
    else:
        starts = [(min(start["E"], 0.99 * lo), start["alpha"])]
    for e0, alpha0 in starts:
        p0 = (e0, np.log(max(float(np.mean(loss)) - e0, 1e-6)), alpha0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, cov = optimize.curve_fit(model, x, loss, p0=p0, maxfev=20000,
                                            bounds=([0.0, -30.0, 1e-4], [lo, 30.0, 5.0]))
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((model(x, *p) - loss) ** 2))
        if best is None or sse < best[0]:
            best = (sse, p, cov)
    if best is None:
        return None
    (e, log_a, alpha), cov = best[1], best[2]
    a = float(np.exp(log_a + alpha * x0))
    # standard errors from the least-squares covariance (A by the delta method)
    var_a = a ** 2 * (cov[1, 1] + x0 ** 2 * cov[2, 2] + 2 * x0 * cov[1, 2])
    errors = {"E": float(np.sqrt(cov[0, 0])), "A": float(np.sqrt(max(var_a, 0.0))),
              "alpha": float(np.sqrt(cov[2, 2]))}
    return {"E": float(e), "A": a, "alpha": float(alpha), "_stderr": errors}


def fit_loss_vs_compute(compute, loss, *, bootstrap: int = 200, seed: int = 0,
                        min_points: int = 4) -> FitResult:
    """Fits ``L(C) = E + A C^(-alpha)`` to runs' ``compute`` (FLOPs) and final ``loss``
    (1-D arrays, one entry per run); bootstrap over runs for the uncertainty."""
    c, loss = np.asarray(compute, float), np.asarray(loss, float)
    keep = np.isfinite(c) & np.isfinite(loss) & (c > 0)
    c, loss = c[keep], loss[keep]
    distinct = len(np.unique(np.round(np.log(c), 3)))
    if distinct < min_points:
        return no_fit(len(c), f"too few runs: a 3-parameter law needs at least {min_points} "
                               f"distinct compute values, have {distinct}")
    point = _power_law_fit(c, loss)
    if point is None:
        return no_fit(len(c), "the least-squares fit did not converge")
    stderr = point.pop("_stderr")
    rng = np.random.default_rng(seed)
    samples, resamples = [], set()
    for _ in range(bootstrap):
        idx = rng.integers(0, len(c), len(c))
        if len(np.unique(c[idx])) < min_points:
            continue
        fit = _power_law_fit(c[idx], loss[idx], start=point)
        if fit is not None:
            fit.pop("_stderr")
            samples.append(fit)
            resamples.add(tuple(sorted(idx)))
    notes = []
    if point["E"] <= 1e-9 or point["E"] >= float(np.min(loss)) - 1e-9:
        notes.append("E is at its bound: the runs do not show where the loss levels off")
    if len(resamples) < MIN_DISTINCT_RESAMPLES:
        # A bootstrap of 4 runs for 3 parameters only redraws the same runs: use the fit's
        # own standard errors instead, and say so.
        notes.append(f"too few runs for a bootstrap ({len(resamples)} distinct resamples with "
                     f"{min_points}+ compute values): ± are the least-squares standard errors "
                     f"with {len(c) - 3} degree(s) of freedom, a loose fit")
        interval = {k: (point[k] - stderr[k], point[k] + stderr[k]) for k in point}
        return FitResult(True, point, stderr, interval, len(c), "; ".join(notes))
    return _summarise(point, samples, len(c), "; ".join(notes))


# --------------------------------------------------------------------------- IsoFLOP


def _vertex(log_n: np.ndarray, loss: np.ndarray) -> float | None:
    """``log N`` at the minimum of a parabola through (log N, loss); None if not convex."""
    a, b, _ = np.polyfit(log_n, loss, 2)
    if a <= 0:
        return None
    return float(-b / (2 * a))


def isoflop_optimum(params, loss, *, bootstrap: int = 200, seed: int = 0) -> FitResult:
    """Loss-optimal size ``N*`` at one compute budget from runs of sizes ``params`` with
    final ``loss`` (a parabola in ``log N``). Needs at least 3 sizes; says so when the
    curve is not convex or its minimum lies outside the sizes tried."""
    n, loss = np.asarray(params, float), np.asarray(loss, float)
    if len(np.unique(n)) < 3:
        return no_fit(len(n), f"too few sizes at this budget: need 3, have {len(np.unique(n))}")
    x = np.log(n)
    v = _vertex(x, loss)
    if v is None:
        return no_fit(len(n), "loss is not convex in log N at this budget (no interior optimum)")
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(n), len(n))
        if len(np.unique(n[idx])) >= 3:
            vb = _vertex(x[idx], loss[idx])
            if vb is not None:
                samples.append({"N_opt": float(np.exp(vb))})
    message = "" if x.min() <= v <= x.max() else "the optimum lies outside the sizes tried"
    return _summarise({"N_opt": float(np.exp(v))}, samples, len(n), message)


def _loglog(c: np.ndarray, n_opt: np.ndarray) -> dict:
    r = stats.linregress(np.log(c), np.log(n_opt))
    return {"a": float(r.slope), "k": float(np.exp(r.intercept))}


def fit_optimal_size(groups, *, bootstrap: int = 200, seed: int = 0) -> tuple[FitResult, list]:
    """``N*(C) = k C^a`` across IsoFLOP budgets.

    ``groups``: ``[(budget C, sizes array, final losses array), ...]``. Returns the fit and
    the per-budget ``isoflop_optimum`` results. The bootstrap resamples runs within every
    budget, recomputes each ``N*`` and refits ``a``. Needs optima at 2 or more budgets.
    """
    optima = [isoflop_optimum(n, l, bootstrap=bootstrap, seed=seed + i)
              for i, (_, n, l) in enumerate(groups)]
    usable = [(c, n, l) for (c, n, l), o in zip(groups, optima) if o.ok]
    if len(usable) < 2:
        return no_fit(len(usable), f"too few budgets with an interior optimum: need 2, have "
                                    f"{len(usable)} (of {len(groups)} budgets)"), optima
    c = np.array([g[0] for g in usable], float)
    n_opt = np.array([o.params["N_opt"] for o in optima if o.ok])
    point = _loglog(c, n_opt)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        resampled = []
        for _, n, l in usable:
            n, l = np.asarray(n, float), np.asarray(l, float)
            idx = rng.integers(0, len(n), len(n))
            v = _vertex(np.log(n[idx]), l[idx]) if len(np.unique(n[idx])) >= 3 else None
            resampled.append(np.exp(v) if v is not None else np.nan)
        resampled = np.array(resampled)
        if np.all(np.isfinite(resampled)):
            samples.append(_loglog(c, resampled))
    message = "" if len(usable) > 2 else "only 2 budgets: the exponent is exact through 2 points"
    return _summarise(point, samples, len(usable), message), optima


def group_by_compute(flops, rel_tol: float = 0.25) -> list[list[int]]:
    """Indices of runs grouped by compute: runs within ``rel_tol`` (ratio) of the group's
    first member share a budget (an IsoFLOP grid rounds each run to whole steps)."""
    order = np.argsort(flops)
    groups, current, anchor = [], [], None
    for i in order:
        if anchor is not None and flops[i] > anchor * (1 + rel_tol):
            groups.append(current)
            current, anchor = [], None
        if anchor is None:
            anchor = flops[i]
        current.append(int(i))
    if current:
        groups.append(current)
    return groups
