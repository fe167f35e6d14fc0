"""One interface over both solvers: fit windows, decide accept/reject, draw labels (2.1.2).

Decision per peak (in this order): too few usable pixels -> not fitted; the solver raised ->
``failed``; not converged -> rejected; reduced chi-square above ``max_reduced_chi2`` -> rejected;
integrated signal-to-noise over the label pixels below ``min_snr`` -> rejected (``weak``).
Rejected peaks are never labelled. Label rule: pixels where the fitted profile without background
reaches ``label_fraction`` of its peak value (default 0.5, the half-maximum footprint); the
profile is read at pixel centres, where the fit predicts the pixel values, and the peak value is
its maximum there, so every accepted peak labels at least its brightest pixel.
"""

from __future__ import annotations

import logging

import numpy as np

from braggflow.fitting.batched import SolveResult, solve_batched
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
    profile,
    weights,
    window_grid,
)
from braggflow.fitting.windows import FitSettings, Windows, bounds, initial_guess

log = logging.getLogger(__name__)

STATUS_ACCEPTED = 0
STATUS_NOT_CONVERGED = 1
STATUS_HIGH_CHI2 = 2
STATUS_TOO_FEW_PIXELS = 3
STATUS_FAILED = 4
STATUS_WEAK = 5
STATUS_OFF_PANEL = 6
STATUS_NAMES = {
    STATUS_ACCEPTED: "accepted",
    STATUS_NOT_CONVERGED: "not_converged",
    STATUS_HIGH_CHI2: "high_chi2",
    STATUS_TOO_FEW_PIXELS: "too_few_pixels",
    STATUS_FAILED: "failed",
    STATUS_WEAK: "weak",
    STATUS_OFF_PANEL: "off_panel",
}

# Fit-table columns (docs/conventions.md "Training set"), the stage adds ``frame``.
TABLE_FLOAT = (
    "fs",
    "ss",
    "amplitude",
    "eta",
    "sigma_fs",
    "sigma_ss",
    "gamma_fs",
    "gamma_ss",
    "slope_ss",
    "slope_fs",
    "offset",
    "reduced_chi2",
    "snr",
    "candidate_fs",
    "candidate_ss",
)
TABLE_INT = ("panel", "n_pixels", "iterations", "status")
TABLE_BOOL = ("converged", "accepted", "failed")
_PARAM_COLUMNS = {
    "amplitude": I_AMP,
    "eta": I_ETA,
    "sigma_fs": I_SX,
    "sigma_ss": I_SY,
    "gamma_fs": I_GX,
    "gamma_ss": I_GY,
    "slope_ss": I_A_SS,
    "slope_fs": I_B_FS,
    "offset": I_C,
}


def _solve(solver: str, data, weight, p0, lo, hi, y, x, settings: FitSettings) -> SolveResult:
    if solver == "lmfit":
        from braggflow.fitting.lmfit_solver import solve_lmfit

        return solve_lmfit(data, weight, p0, lo, hi, y, x)
    return solve_batched(
        data, weight, p0, lo, hi, y, x, settings.max_iterations, ftol=settings.tolerance
    )


def _solve_guarded(
    solver, data, weight, p0, lo, hi, y, x, settings
) -> tuple[SolveResult, np.ndarray]:
    """Solve all peaks; if the batch raises, solve one by one and mark the raising peaks failed."""
    n = data.shape[0]
    failed = np.zeros(n, bool)
    try:
        return _solve(solver, data, weight, p0, lo, hi, y, x, settings), failed
    except Exception as exc:  # noqa: BLE001 - a bad peak must not kill the batch
        log.warning("batch of %d peaks raised (%s); refitting one by one", n, exc)
    out = SolveResult(
        np.full((n, N_PARAMS), np.nan), np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, int)
    )
    for i in range(n):
        s = slice(i, i + 1)
        try:
            one = _solve(solver, data[s], weight[s], p0[s], lo[s], hi[s], y, x, settings)
        except Exception as exc:  # noqa: BLE001
            log.warning("peak %d failed: %s", i, exc)
            failed[i] = True
            continue
        out.params[i], out.cost[i] = one.params[0], one.cost[0]
        out.converged[i], out.iterations[i] = one.converged[0], one.iterations[0]
    return out, failed


def spot_snr(
    p: np.ndarray, inside: np.ndarray, y: np.ndarray, x: np.ndarray, fraction: float
) -> np.ndarray:
    """Integrated signal-to-noise of each fitted spot over its label pixels (photons).

    S = sum of the fitted peak signal A [eta L + (1 - eta) G], B = sum of the fitted background,
    over the pixels the label rule marks; SNR = S / sqrt(S + B + n) (Poisson, +1 per pixel as in
    the residual weights), the same kind of SNR the simulator uses for visibility.
    """
    prof = profile(p, y, x)
    top = np.where(inside, prof, 0.0).max(axis=1, keepdims=True)
    lab = inside & (prof >= fraction * top) & (top > 0)
    signal = p[:, I_AMP] * np.where(lab, prof, 0.0).sum(axis=1)
    bg = p[:, I_C, None] + p[:, I_A_SS, None] * y + p[:, I_B_FS, None] * x
    background = np.where(lab, np.maximum(bg, 0.0), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return signal / np.sqrt(signal + background + lab.sum(axis=1))


def fit_windows(
    win: Windows, settings: FitSettings, solver: str | None = None
) -> dict[str, np.ndarray]:
    """Fit every window with the chosen solver (default ``settings.solver``); the fit table."""
    solver = solver or settings.solver
    n, s = win.n, win.size
    table: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in TABLE_FLOAT}
    table.update({k: np.zeros(n, np.int64) for k in TABLE_INT})
    table.update({k: np.zeros(n, bool) for k in TABLE_BOOL})
    table["panel"][:] = win.panel
    table["candidate_fs"][:] = win.cand_fs
    table["candidate_ss"][:] = win.cand_ss
    n_pix = win.fit_mask.reshape(n, s * s).sum(axis=1)
    table["n_pixels"][:] = n_pix
    status = table["status"]
    status[:] = STATUS_ACCEPTED
    off = win.panel < 0
    few = ~off & (n_pix < settings.min_pixels)
    status[off] = STATUS_OFF_PANEL
    status[few] = STATUS_TOO_FEW_PIXELS
    todo = np.flatnonzero(~off & ~few)
    if todo.size:
        sub = win.subset(todo)
        lo, hi = bounds(sub, settings)
        p0 = initial_guess(sub, lo, hi)
        yy, xx = (g.reshape(-1) for g in window_grid(s))
        data = sub.data.reshape(todo.size, -1)
        w = weights(data, sub.fit_mask.reshape(todo.size, -1))
        res, failed = _solve_guarded(solver, data, w, p0, lo, hi, yy, xx, settings)
        p = res.params
        dof = np.maximum(n_pix[todo] - N_PARAMS, 1)
        chi2 = res.cost / dof
        for name, k in _PARAM_COLUMNS.items():
            table[name][todo] = p[:, k]
        table["fs"][todo] = sub.origin_fs + p[:, I_X0]
        table["ss"][todo] = sub.origin_ss + p[:, I_Y0]
        table["reduced_chi2"][todo] = chi2
        table["converged"][todo] = res.converged & ~failed
        table["failed"][todo] = failed
        table["iterations"][todo] = res.iterations
        snr = spot_snr(p, sub.label_mask.reshape(todo.size, -1), yy, xx, settings.label_fraction)
        table["snr"][todo] = snr
        st = np.full(todo.size, STATUS_ACCEPTED)
        st[~(snr >= settings.min_snr)] = STATUS_WEAK
        st[~(chi2 <= settings.max_reduced_chi2)] = STATUS_HIGH_CHI2
        st[~res.converged] = STATUS_NOT_CONVERGED
        st[failed] = STATUS_FAILED
        status[todo] = st
    table["accepted"][:] = status == STATUS_ACCEPTED
    return table


def label_windows(table: dict[str, np.ndarray], win: Windows, fraction: float) -> np.ndarray:
    """(N, S, S) bool: labelled pixels of each accepted peak (profile > fraction of its peak)."""
    n, s = win.n, win.size
    out = np.zeros((n, s, s), bool)
    acc = np.flatnonzero(table["accepted"])
    if acc.size == 0:
        return out
    p = np.zeros((acc.size, N_PARAMS))
    for name, k in _PARAM_COLUMNS.items():
        p[:, k] = table[name][acc]
    p[:, I_X0] = table["fs"][acc] - win.origin_fs[acc]
    p[:, I_Y0] = table["ss"][acc] - win.origin_ss[acc]
    yy, xx = (g.reshape(-1) for g in window_grid(s))
    # The fitted profile without background at each pixel centre is the fit's prediction of
    # that pixel's peak signal, A [eta L + (1 - eta) G]; label the pixels above ``fraction`` of
    # its largest value in the window (the peak value on the pixel grid).
    prof = profile(p, yy, xx).reshape(acc.size, s, s)
    inside = win.label_mask[acc]
    top = np.where(inside, prof, 0.0).max(axis=(1, 2), keepdims=True)
    out[acc] = (prof >= fraction * top) & inside & (top > 0)
    return out


def paint_labels(labels: np.ndarray, win: Windows, window_labels: np.ndarray) -> np.ndarray:
    """OR each window's labelled pixels into the slab-shaped uint8 ``labels`` (in place)."""
    n, s = window_labels.shape[:2]
    if n == 0:
        return labels
    half = s // 2
    r = np.arange(-half, s - half)
    rows = np.broadcast_to((win.origin_ss[:, None] + r)[:, :, None], (n, s, s))
    cols = np.broadcast_to((win.origin_fs[:, None] + r)[:, None, :], (n, s, s))
    sel = window_labels  # label_mask guarantees in-slab, same-panel pixels
    labels[rows[sel], cols[sel]] = 1
    return labels
