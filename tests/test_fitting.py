"""Pseudo-Voigt model, bounds, both solvers and the label rule on synthetic windows (2.1.2)."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.fitting import batched
from braggflow.fitting.fit import (
    STATUS_ACCEPTED,
    STATUS_FAILED,
    STATUS_HIGH_CHI2,
    STATUS_NOT_CONVERGED,
    STATUS_TOO_FEW_PIXELS,
    fit_windows,
    label_windows,
)
from braggflow.fitting.model import (
    I_AMP,
    I_C,
    I_ETA,
    I_GX,
    I_GY,
    I_SX,
    I_SY,
    I_X0,
    I_Y0,
    N_PARAMS,
    model,
    model_and_jacobian,
    window_grid,
)
from braggflow.fitting.synthetic import make_windows, random_params
from braggflow.fitting.windows import FitSettings, Windows, bounds, initial_guess

Y, X = (g.reshape(-1) for g in window_grid(9))


def _params(**kw) -> np.ndarray:
    p = np.zeros((1, N_PARAMS))
    p[0, [I_AMP, I_SX, I_SY, I_GX, I_GY, I_ETA, I_C]] = [100.0, 1.0, 1.0, 1.0, 1.0, 0.5, 2.0]
    for name, value in kw.items():
        p[0, globals()[f"I_{name}"]] = value
    return p


def test_model_is_the_papers_pseudo_voigt():
    p = _params(AMP=50.0, X0=0.3, Y0=-0.2, SX=0.9, SY=1.3, GX=0.7, GY=1.1, ETA=0.25, C=3.0)
    x, y = 1.0, 2.0
    dx, dy = x - 0.3, y + 0.2
    gauss = np.exp(-(dx**2) / (2 * 0.9**2) - dy**2 / (2 * 1.3**2))
    lor = 1.0 / (1.0 + dx**2 / 0.7**2 + dy**2 / 1.1**2)
    expect = 50.0 * (0.25 * lor + 0.75 * gauss) + 3.0
    assert model(p, np.array([y]), np.array([x]))[0, 0] == pytest.approx(expect)
    # both shapes are 1 at the centre, so A is the peak height above background
    assert model(_params(X0=0.0, Y0=0.0), np.array([0.0]), np.array([0.0]))[0, 0] == pytest.approx(
        102.0
    )


def test_analytic_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    p = random_params(4, rng)
    _, jac = model_and_jacobian(p, Y, X)
    for k in range(N_PARAMS):
        h = 1e-6 * max(1.0, abs(p[:, k]).max())
        up, dn = p.copy(), p.copy()
        up[:, k] += h
        dn[:, k] -= h
        num = (model(up, Y, X) - model(dn, Y, X)) / (2 * h)
        np.testing.assert_allclose(jac[:, :, k], num, rtol=1e-5, atol=1e-6)


def test_weighted_jacobian_in_internal_coordinates():
    rng = np.random.default_rng(2)
    p = random_params(3, rng)
    win, _ = make_windows(p, rng)
    lo, hi = bounds(win, FitSettings())
    b = batched._Bounds.of(lo, hi)
    q = batched.to_internal(initial_guess(win, lo, hi), b)
    data = win.data.reshape(3, -1)
    w = 1.0 / np.sqrt(data + 1.0)
    r, jac, cost = batched.residual_and_jacobian(q, b, Y, X, data, w)
    np.testing.assert_allclose(cost, (r**2).sum(axis=1))
    for k in range(N_PARAMS):
        up, dn = q.copy(), q.copy()
        up[:, k] += 1e-6
        dn[:, k] -= 1e-6
        num = (
            batched.residual_and_jacobian(up, b, Y, X, data, w)[0]
            - batched.residual_and_jacobian(dn, b, Y, X, data, w)[0]
        ) / 2e-6
        np.testing.assert_allclose(jac[:, k, :], num, rtol=1e-4, atol=1e-6)


def test_bound_transform_is_lmfits():
    import lmfit

    cases = [(0.3, 0.0, 1.0), (5.0, 0.0, np.inf), (-2.0, -np.inf, 1.0), (1.7, -np.inf, np.inf)]
    for value, lo, hi in cases:
        par = lmfit.Parameter("p", value=value, min=lo, max=hi)
        internal = par.setup_bounds()
        b = batched._Bounds.of(np.array([[lo]]), np.array([[hi]]))
        q = batched.to_internal(np.array([[value]]), b)
        assert q[0, 0] == pytest.approx(internal)
        ext, _ = batched.to_external(q + 0.37, b)
        assert ext[0, 0] == pytest.approx(par.from_internal(internal + 0.37))


def test_batched_recovers_noiseless_parameters_exactly():
    rng = np.random.default_rng(3)
    p = random_params(50, rng, amplitude=(30.0, 300.0))
    y, x = window_grid(9)
    mean = model(p, y.reshape(-1), x.reshape(-1)).reshape(50, 9, 9)
    win, _ = make_windows(p, rng)
    win.data = mean  # no noise
    table = fit_windows(win, FitSettings(tolerance=1e-12, max_iterations=500), "batched")
    assert table["converged"].all()
    np.testing.assert_allclose(table["fs"] - 100, p[:, I_X0], atol=1e-3)
    np.testing.assert_allclose(table["ss"] - 100, p[:, I_Y0], atol=1e-3)
    np.testing.assert_allclose(table["offset"], p[:, I_C], rtol=0.02, atol=0.02)
    assert np.median(table["reduced_chi2"]) < 1e-4


def test_batched_on_poisson_windows_finds_centres_and_sane_chi2():
    rng = np.random.default_rng(4)
    p = random_params(400, rng, amplitude=(40.0, 400.0))
    win, _ = make_windows(p, rng)
    table = fit_windows(win, FitSettings(), "batched")
    err = np.hypot(table["fs"] - 100 - p[:, I_X0], table["ss"] - 100 - p[:, I_Y0])
    assert table["converged"].mean() > 0.99
    assert np.median(err) < 0.1
    assert 0.6 < np.median(table["reduced_chi2"]) < 1.2  # Poisson with 1/sqrt(I+1) weights
    assert table["accepted"].mean() > 0.97


def test_batched_agrees_with_lmfit():
    """A small version of the benchmark's >= 5000-peak comparison (benchmarks/fit.py)."""
    rng = np.random.default_rng(5)
    p = random_params(60, rng)
    win, _ = make_windows(p, rng)
    s = FitSettings()
    a = fit_windows(win, s, "batched")
    b = fit_windows(win, s, "lmfit")
    assert np.mean(a["accepted"] == b["accepted"]) >= 59 / 60
    d = np.hypot(a["fs"] - b["fs"], a["ss"] - b["ss"])
    assert np.median(d) <= 0.02


def test_result_of_a_peak_does_not_depend_on_its_batch():
    rng = np.random.default_rng(6)
    p = random_params(30, rng)
    win, _ = make_windows(p, rng)
    s = FitSettings()
    all_at_once = fit_windows(win, s)
    for i in (0, 7, 29):
        alone = fit_windows(win.subset(np.array([i])), s)
        for key in ("fs", "ss", "amplitude", "reduced_chi2"):
            assert alone[key][0] == all_at_once[key][i]


def test_label_rule_half_maximum_of_a_centred_gaussian():
    p = _params(X0=0.0, Y0=0.0, ETA=0.0, SX=1.0, SY=1.0, C=0.0)
    y, x = window_grid(9)
    mean = model(p, y.reshape(-1), x.reshape(-1)).reshape(1, 9, 9)
    win, _ = make_windows(p, np.random.default_rng(0), candidate_jitter_px=0.0)
    win.data = mean
    table = fit_windows(win, FitSettings(tolerance=1e-12), "batched")
    labels = label_windows(table, win, 0.5)[0]
    # exp(-r^2/2) >= 0.5  <=>  r^2 <= 1.386: the centre and its 4 neighbours
    expect = np.zeros((9, 9), bool)
    expect[4, 3:6] = expect[3:6, 4] = True
    np.testing.assert_array_equal(labels, expect)
    wide = label_windows(table, win, 0.1)[0]
    assert wide.sum() > labels.sum() and (wide | labels).sum() == wide.sum()


def test_rejected_fits_are_never_labelled():
    rng = np.random.default_rng(7)
    p = random_params(2, rng, amplitude=(150.0, 200.0))
    win, _ = make_windows(p, rng)
    # window 1: two strong peaks -> one pseudo-Voigt cannot describe it
    win.data[1, 1, 1] += 400.0
    win.data[1, 1:3, 1:3] += 150.0
    table = fit_windows(win, FitSettings(), "batched")
    assert table["status"][0] == STATUS_ACCEPTED
    assert table["status"][1] == STATUS_HIGH_CHI2
    labels = label_windows(table, win, 0.5)
    assert labels[0].any() and not labels[1].any()
    # a fit stopped after one iteration has not converged
    stopped = fit_windows(win.subset(np.array([0])), FitSettings(max_iterations=1))
    assert stopped["status"][0] == STATUS_NOT_CONVERGED and not stopped["accepted"][0]
    assert not label_windows(stopped, win.subset(np.array([0])), 0.5).any()


def test_a_peak_that_raises_is_recorded_as_failed(monkeypatch):
    from braggflow.fitting import fit as fit_mod

    rng = np.random.default_rng(8)
    p = random_params(5, rng, amplitude=(100.0, 200.0))
    win, _ = make_windows(p, rng)
    real = fit_mod.solve_batched

    def flaky(data, *args, **kw):
        if np.any(data == -1.0):  # the poisoned window
            raise FloatingPointError("boom")
        return real(data, *args, **kw)

    win.data[2, 0, 0] = -1.0
    monkeypatch.setattr(fit_mod, "solve_batched", flaky)
    table = fit_windows(win, FitSettings())
    assert table["status"].size == 5  # never dropped
    assert table["status"][2] == STATUS_FAILED and table["failed"][2] and not table["accepted"][2]
    assert table["accepted"][[0, 1, 3, 4]].all()


def test_empty_batch_and_too_few_pixels():
    empty = Windows.concat([], 9)
    table = fit_windows(empty, FitSettings())
    assert all(v.size == 0 for v in table.values())
    rng = np.random.default_rng(9)
    win, _ = make_windows(random_params(1, rng), rng)
    win.fit_mask[0, :, 2:] = False  # 18 usable pixels < min_pixels
    table = fit_windows(win, FitSettings())
    assert table["status"][0] == STATUS_TOO_FEW_PIXELS and not table["accepted"][0]


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 8},
        {"solver": "x"},
        {"width_min_px": 0.0},
        {"label_fraction": 1.0},
        {"min_pixels": 5},
    ],
)
def test_settings_are_checked(bad):
    with pytest.raises(ValueError):
        FitSettings(**bad)


def test_row_quantile_is_numpys():
    from braggflow.fitting.windows import row_quantile

    rng = np.random.default_rng(10)
    v = rng.normal(size=(50, 81))
    valid = rng.uniform(size=v.shape) > 0.3
    valid[0] = False
    for q in (0.25, 0.5):
        got = row_quantile(v, valid, q)
        assert np.isnan(got[0])
        ref = [np.percentile(row[ok], 100 * q) for row, ok in zip(v[1:], valid[1:], strict=True)]
        np.testing.assert_allclose(got[1:], ref)
