"""The reference solver: one ``lmfit.minimize`` (MINPACK Levenberg-Marquardt) per peak.

Same model, weights, bounds and starting point as the batched solver; lmfit applies the bounds
by its Minuit-style reparametrisation and differentiates numerically.
"""

from __future__ import annotations

import numpy as np

from braggflow.fitting.batched import SolveResult
from braggflow.fitting.model import N_PARAMS, PARAM_NAMES, model


def _param_set(p0: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    import lmfit

    params = lmfit.Parameters()
    for k, name in enumerate(PARAM_NAMES):
        params.add(name, value=float(p0[k]), min=float(lo[k]), max=float(hi[k]))
    return params


def solve_one(
    data: np.ndarray,
    weight: np.ndarray,
    p0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
) -> tuple[np.ndarray, float, bool, int]:
    """Fit one window (pixels with weight 0 are left out); returns params, cost, success, nfev."""
    import lmfit

    use = weight > 0
    d, w, yy, xx = data[use], weight[use], y[use], x[use]

    def residual(params) -> np.ndarray:
        vec = np.array([params[name].value for name in PARAM_NAMES])[None, :]
        return w * (model(vec, yy, xx)[0] - d)

    result = lmfit.minimize(residual, _param_set(p0, lo, hi), method="leastsq")
    p = np.array([result.params[name].value for name in PARAM_NAMES])
    cost = float(np.sum(residual(result.params) ** 2))
    ok = bool(result.success) and np.isfinite(cost) and bool(np.all(np.isfinite(p)))
    return p, cost, ok, int(result.nfev)


def solve_lmfit(
    data: np.ndarray,
    weight: np.ndarray,
    p0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
) -> SolveResult:
    """Fit every window with lmfit, one after another (same interface as the batched solver)."""
    n = data.shape[0]
    params = np.zeros((n, N_PARAMS))
    cost = np.zeros(n)
    converged = np.zeros(n, bool)
    nfev = np.zeros(n, int)
    for i in range(n):
        params[i], cost[i], converged[i], nfev[i] = solve_one(
            data[i], weight[i], p0[i], lo[i], hi[i], y, x
        )
    return SolveResult(params, cost, converged, nfev)
