"""Fits recover known exponents from noisy synthetic losses, and say when they cannot."""

import numpy as np

from elmjax.train import scaling_fit


def test_power_law_recovers_alpha_and_E_from_noisy_losses():
    rng = np.random.default_rng(0)
    c = np.logspace(13, 19, 10)
    e, a, alpha = 1.8, 250.0, 0.12
    loss = (e + a * c ** -alpha) * np.exp(rng.normal(0, 0.005, c.size))
    fit = scaling_fit.fit_loss_vs_compute(c, loss, bootstrap=100)
    assert fit.ok and fit.n == 10
    assert abs(fit.params["alpha"] - alpha) < max(3 * fit.std["alpha"], 0.01)
    assert abs(fit.params["E"] - e) < max(3 * fit.std["E"], 0.05)
    assert fit.std["alpha"] > 0 and fit.interval["alpha"][0] <= fit.params["alpha"] <= fit.interval["alpha"][1] + 1e-9
    assert "alpha = " in fit.describe("L(C)")


def test_isoflop_optima_and_optimal_size_exponent_from_noisy_grids():
    rng = np.random.default_rng(1)
    a_true, groups = 0.5, []
    for c in (1e15, 1e16, 1e17, 1e18):
        n_opt = 0.2 * c ** a_true
        n = n_opt * np.logspace(-0.8, 0.8, 7)
        loss = 2.0 + 0.04 * np.log(n / n_opt) ** 2 + rng.normal(0, 0.002, n.size)
        groups.append((c, n, loss))
    fit, optima = scaling_fit.fit_optimal_size(groups, bootstrap=100)
    assert fit.ok and all(o.ok for o in optima)
    assert abs(fit.params["a"] - a_true) < max(3 * fit.std["a"], 0.02)
    for (c, _, _), o in zip(groups, optima):
        assert abs(np.log(o.params["N_opt"] / (0.2 * c ** a_true))) < 0.15


def test_fits_say_when_runs_are_too_few():
    few = scaling_fit.fit_loss_vs_compute([1e12, 1e13, 1e14], [4.0, 3.5, 3.2])
    assert not few.ok and "too few runs" in few.message and "no fit" in few.describe("L(C)")
    two = scaling_fit.isoflop_optimum([1e6, 2e6], [3.0, 2.9])
    assert not two.ok and "too few sizes" in two.message
    concave = scaling_fit.isoflop_optimum([1e6, 2e6, 4e6], [3.0, 3.2, 3.0])
    assert not concave.ok and "not convex" in concave.message
    ns, _ = scaling_fit.fit_optimal_size([(1e15, np.array([1e6, 2e6, 4e6]), np.array([3.1, 3.0, 3.1]))])
    assert not ns.ok and "too few budgets" in ns.message


def test_group_by_compute_joins_runs_rounded_to_whole_steps():
    flops = np.array([1.02e15, 0.98e15, 1e16, 1.05e16, 3e16])
    groups = scaling_fit.group_by_compute(flops)
    assert sorted(map(sorted, groups)) == [[0, 1], [2, 3], [4]]


def test_four_runs_fall_back_to_least_squares_errors_and_say_so():
    c = np.array([1e11, 1e12, 1e13, 1e14])
    loss = 3.0 + 600 * c ** -0.2 + np.array([0.01, -0.01, 0.01, -0.01])
    fit = scaling_fit.fit_loss_vs_compute(c, loss, bootstrap=50)
    assert fit.ok and "too few runs for a bootstrap" in fit.message
    assert fit.std["alpha"] > 1e-3  # a real spread, not the bootstrap redrawing the same runs
    lo, hi = fit.interval["alpha"]
    assert lo < fit.params["alpha"] < hi
