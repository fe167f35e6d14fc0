"""Vectorised, batched Levenberg-Marquardt for many pseudo-Voigt windows at once (numpy).

Every peak is an independent weighted least-squares problem; the iterations run on all
unconverged peaks together (arrays with a leading peak axis, peaks that finish are compacted
away). Bounds use the same Minuit-style reparametrisation as lmfit (``sin`` for two-sided,
``sqrt`` for one-sided bounds), so both solvers minimise the same function from the same start.
Damping follows Nielsen's gain-ratio rule with Marquardt's diagonal scaling. Each peak's
arithmetic is independent of the others in its batch, so results do not depend on how peaks are
grouped into batches (or on a retried Ray task).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braggflow.fitting.model import (
    I_A_SS,
    I_AMP,
    I_B_FS,
    I_C,
    I_ETA,
    I_GX,
    I_GY,
    I_SX,
    I_SY,
    I_X0,
    I_Y0,
    N_PARAMS,
)

_LAMBDA0 = 1e-3
_LAMBDA_MAX = 1e12


@dataclass
class _Bounds:
    lo: np.ndarray
    hi: np.ndarray
    both: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(cls, lo: np.ndarray, hi: np.ndarray) -> _Bounds:
        flo, fhi = np.isfinite(lo), np.isfinite(hi)
        return cls(
            np.where(flo, lo, 0.0), np.where(fhi, hi, 0.0), flo & fhi, flo & ~fhi, ~flo & fhi
        )

    def take(self, idx: np.ndarray) -> _Bounds:
        return _Bounds(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def to_internal(p: np.ndarray, b: _Bounds) -> np.ndarray:
    """lmfit's ``Parameter.setup_bounds`` (Minuit-style transformation), vectorised."""
    with np.errstate(invalid="ignore", divide="ignore"):
        span = np.where(b.both, b.hi - b.lo, 1.0)
        q_both = np.arcsin(np.clip(2.0 * (p - b.lo) / span - 1.0, -1.0, 1.0))
        q_low = np.sqrt(np.maximum((p - b.lo + 1.0) ** 2 - 1.0, 0.0))
        q_up = np.sqrt(np.maximum((b.hi - p + 1.0) ** 2 - 1.0, 0.0))
    return np.where(b.both, q_both, np.where(b.lower, q_low, np.where(b.upper, q_up, p)))


def to_external(q: np.ndarray, b: _Bounds) -> tuple[np.ndarray, np.ndarray]:
    """External values and d(external)/d(internal) for internal values ``q``."""
    half_span = (b.hi - b.lo) / 2.0
    root = np.sqrt(q * q + 1.0)
    p = np.where(
        b.both,
        b.lo + (np.sin(q) + 1.0) * half_span,
        np.where(b.lower, b.lo - 1.0 + root, np.where(b.upper, b.hi + 1.0 - root, q)),
    )
    dp = np.where(
        b.both,
        np.cos(q) * half_span,
        np.where(b.lower, q / root, np.where(b.upper, -q / root, 1.0)),
    )
    return p, dp


@dataclass
class SolveResult:
    params: np.ndarray  # (N, 11) external
    cost: np.ndarray  # (N,) sum of squared weighted residuals
    converged: np.ndarray  # (N,) bool
    iterations: np.ndarray  # (N,) int


def residual_and_jacobian(
    q: np.ndarray, b: _Bounds, y: np.ndarray, x: np.ndarray, data: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted residuals r (N, P), Jacobian dr/dq as (N, 11, P) and cost sum r^2 (N,).

    Analytic derivatives of the section 2.1.2 model (see ``model.model_and_jacobian``) chained
    with the bound transformation; laid out parameter-major so J J^T is one batched matmul.
    """
    p, dp = to_external(q, b)
    n, npix = data.shape
    col = p.T[:, :, None]  # (11, N, 1)
    amp, eta = col[I_AMP], col[I_ETA]
    sx, sy, gx, gy = col[I_SX], col[I_SY], col[I_GX], col[I_GY]
    dx = x - col[I_X0]
    dy = y - col[I_Y0]
    ux, uy = dx / sx, dy / sy
    vx, vy = dx / gx, dy / gy
    gauss = np.exp(-0.5 * (ux * ux + uy * uy))
    lor = 1.0 / (1.0 + vx * vx + vy * vy)
    shape = gauss + eta * (lor - gauss)
    r = w * (amp * shape + col[I_A_SS] * y + col[I_B_FS] * x + col[I_C] - data)
    # Residual weights folded into the shared terms, chain-rule factors dp into each row. The
    # Jacobian only steers the steps (costs stay float64), so it is built in float32.
    f4 = np.float32
    dpc = dp.T.astype(f4)[:, :, None]  # (11, N, 1)
    w4 = w.astype(f4)
    agw = (w * (amp * (1.0 - eta) * gauss)).astype(f4)  # w A (1 - eta) G
    alw = (w * (2.0 * amp * eta * lor * lor)).astype(f4)  # w 2 A eta L^2
    ux, uy, vx, vy = (a.astype(f4) for a in (ux, uy, vx, vy))
    isx, isy, igx, igy = (
        (1.0 / sx).astype(f4),
        (1.0 / sy).astype(f4),
        (1.0 / gx).astype(f4),
        (1.0 / gy).astype(f4),
    )
    jac = np.empty((n, N_PARAMS, npix), f4)
    jac[:, I_AMP] = (w * shape).astype(f4) * dpc[I_AMP]
    jac[:, I_X0] = (agw * (ux * isx) + alw * (vx * igx)) * dpc[I_X0]
    jac[:, I_Y0] = (agw * (uy * isy) + alw * (vy * igy)) * dpc[I_Y0]
    jac[:, I_SX] = agw * (ux * ux) * (dpc[I_SX] * isx)
    jac[:, I_SY] = agw * (uy * uy) * (dpc[I_SY] * isy)
    jac[:, I_GX] = alw * (vx * vx) * (dpc[I_GX] * igx)
    jac[:, I_GY] = alw * (vy * vy) * (dpc[I_GY] * igy)
    jac[:, I_ETA] = (w * (lor - gauss) * amp).astype(f4) * dpc[I_ETA]
    jac[:, I_A_SS] = (w * y).astype(f4) * dpc[I_A_SS]
    jac[:, I_B_FS] = (w * x).astype(f4) * dpc[I_B_FS]
    jac[:, I_C] = w4 * dpc[I_C]
    cost = np.einsum("np,np->n", r, r)
    return r, jac, cost


def _damped_step(
    jac: np.ndarray, r: np.ndarray, lam: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve (J^T J + lam D) d = -J^T r for every peak.

    D is the running maximum of diag(J^T J) over the iterations (Moré's scaling, as MINPACK
    keeps it), so a parameter whose column nearly vanishes for a moment (a Lorentzian width
    while eta ~ 0) cannot take a huge step. Returns the step, the cost reduction predicted by
    the linear model and the updated scaling."""
    jt = np.ascontiguousarray(jac.transpose(0, 2, 1))
    jtj = (jac @ jt).astype(np.float64)
    g = np.einsum("nkp,np->nk", jac, r.astype(np.float32)).astype(np.float64)
    scale = np.maximum(scale, np.einsum("nii->ni", jtj))
    floor = 1e-12 * (1.0 + scale.max(axis=1, keepdims=True))
    damp = lam[:, None] * np.maximum(scale, floor) + floor
    idx = np.arange(N_PARAMS)
    jtj[:, idx, idx] += damp
    try:
        step = np.linalg.solve(jtj, -g[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        step = np.stack(
            [np.linalg.lstsq(a, -gi, rcond=None)[0] for a, gi in zip(jtj, g, strict=True)]
        )
    predicted = np.einsum("ni,ni->n", step, damp * step - g)
    return step, predicted, scale


def solve_batched(
    data: np.ndarray,
    weight: np.ndarray,
    p0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    max_iterations: int = 200,
    ftol: float = 1.5e-8,
    xtol: float = 1.5e-8,
) -> SolveResult:
    """Minimise sum (weight * (model(p) - data))^2 for N peaks at once.

    ``data``/``weight`` (N, P), start ``p0`` and bounds ``lo``/``hi`` (N, 11) (+-inf: none),
    pixel offsets ``y``/``x`` (P,). Convergence per peak (MINPACK-like): an accepted step that
    lowers the cost by less than ``ftol`` relative, a step smaller than ``xtol`` relative, or a
    damping so large that no lower cost exists to machine precision.
    """
    n = data.shape[0]
    b_all = _Bounds.of(lo, hi)
    q_out = to_internal(p0, b_all)
    cost_out = np.full(n, np.nan)
    converged = np.zeros(n, bool)
    iterations = np.zeros(n, int)
    # Compacted state of the unfinished peaks.
    idx = np.arange(n)
    b = b_all
    q = q_out.copy()
    d, w = data, weight
    r, jac, cost = residual_and_jacobian(q, b, y, x, d, w)
    lam = np.full(n, _LAMBDA0)
    nu = np.full(n, 2.0)
    scale = np.zeros((n, N_PARAMS))
    done = ~np.isfinite(cost)
    it = np.zeros(n, int)
    for _ in range(max_iterations):
        if done.any():
            q_out[idx[done]] = q[done]
            cost_out[idx[done]] = cost[done]
            iterations[idx[done]] = it[done]
            keep = ~done
            idx, q, r, jac, cost, lam, nu, it, d, w, scale = (
                a[keep] for a in (idx, q, r, jac, cost, lam, nu, it, d, w, scale)
            )
            b = b.take(keep)
        if idx.size == 0:
            break
        step, predicted, scale = _damped_step(jac, r, lam, scale)
        q_new = q + step
        r_new, jac_new, cost_new = residual_and_jacobian(q_new, b, y, x, d, w)
        it += 1
        gain = cost - cost_new
        better = np.isfinite(cost_new) & (gain > 0)
        q[better] = q_new[better]
        r[better] = r_new[better]
        jac[better] = jac_new[better]
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(predicted > 0, gain / predicted, 0.0)
        # Nielsen (1999): shrink the damping by the gain ratio on success, double it on failure.
        lam = np.where(better, lam * np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), lam * nu)
        nu = np.where(better, 2.0, nu * 2.0)
        small_gain = better & (gain <= ftol * cost) & (predicted <= ftol * cost)
        cost = np.where(better, cost_new, cost)
        step_norm = np.sqrt(np.einsum("ni,ni->n", step, step))
        q_norm = np.sqrt(np.einsum("ni,ni->n", q, q))
        small_step = step_norm <= xtol * (q_norm + xtol)
        stuck = lam > _LAMBDA_MAX
        done = small_gain | small_step | stuck
        converged[idx[done]] = True
    else:
        q_out[idx] = q
        cost_out[idx] = cost
        iterations[idx] = it
    p, _ = to_external(q_out, b_all)
    converged &= np.isfinite(cost_out) & np.all(np.isfinite(p), axis=1)
    return SolveResult(p, cost_out, converged, iterations)
