"""Fit windows around candidate peaks: extraction from a raw slab, initial guesses and bounds.

A window (default 9x9, section 2.1.2) holds the raw, background-containing, photon-scale pixels
around a candidate. Pixels outside the candidate's panel, masked, non-finite or saturated are
excluded from the fit (weight 0): windows are clipped at panel edges, never wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    window_grid,
)


@dataclass
class FitSettings:
    """Every knob of the fit (config section ``fit_labels``); fields checked on creation."""

    window: int = 9
    solver: str = "batched"
    width_min_px: float = 0.3
    width_max_px: float = 3.0
    max_reduced_chi2: float = 5.0
    min_snr: float = 3.0
    label_fraction: float = 0.5
    min_pixels: int = 20
    max_iterations: int = 200
    tolerance: float = 1e-5

    def __post_init__(self) -> None:
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"window must be an odd size >= 3, got {self.window}")
        if self.solver not in ("batched", "lmfit"):
            raise ValueError(f"solver must be 'batched' or 'lmfit', got {self.solver!r}")
        if not 0 < self.width_min_px < self.width_max_px:
            raise ValueError("need 0 < width_min_px < width_max_px")
        if not 0 < self.label_fraction < 1:
            raise ValueError("label_fraction must lie in (0, 1)")
        if not 0 < self.tolerance < 1:
            raise ValueError("tolerance must lie in (0, 1)")
        if self.min_pixels <= N_PARAMS:
            raise ValueError(f"min_pixels must exceed the {N_PARAMS} fitted parameters")

    @classmethod
    def from_params(cls, params: dict) -> FitSettings:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.items() if k in names})


@dataclass
class Windows:
    """A batch of N fit windows of size S x S (arrays with leading axis N)."""

    data: np.ndarray  # (N, S, S) float64 photons, 0 where unusable
    fit_mask: np.ndarray  # (N, S, S) bool: pixels that enter the fit
    label_mask: np.ndarray  # (N, S, S) bool: pixels that may carry a label
    origin_ss: np.ndarray  # (N,) int: slab row of the window's centre pixel
    origin_fs: np.ndarray  # (N,) int: slab column of the window's centre pixel
    panel: np.ndarray  # (N,) int
    cand_fs: np.ndarray  # (N,) float: candidate position (slab)
    cand_ss: np.ndarray  # (N,) float

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def size(self) -> int:
        return int(self.data.shape[1])

    def subset(self, index: np.ndarray) -> Windows:
        return Windows(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    @classmethod
    def concat(cls, parts: list[Windows], size: int) -> Windows:
        if not parts:
            return empty_windows(size)
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__)
        )


def empty_windows(size: int) -> Windows:
    z = np.zeros((0, size, size))
    zi = np.zeros(0, int)
    return Windows(
        z, z.astype(bool), z.astype(bool), zi, zi, zi, zi.astype(float), zi.astype(float)
    )


def extract_windows(
    slab: np.ndarray,
    panel_map: np.ndarray,
    usable: np.ndarray,
    cand_fs: np.ndarray,
    cand_ss: np.ndarray,
    size: int = 9,
    saturation: np.ndarray | float | None = None,
) -> Windows:
    """Cut ``size`` x ``size`` windows around candidates from one photon-scale slab.

    ``panel_map`` (n_ss, n_fs) gives each slab pixel's panel (-1: none), ``usable`` marks pixels
    that are not masked. A window keeps only pixels of the candidate's own panel (clipped at panel
    and slab edges, never wrapped). Non-finite pixels are excluded from the fit and the labels;
    pixels at or above ``saturation`` (photons; scalar or per-pixel) are excluded from the fit
    but may carry a label.
    """
    cand_fs = np.asarray(cand_fs, float).reshape(-1)
    cand_ss = np.asarray(cand_ss, float).reshape(-1)
    n_ss, n_fs = slab.shape
    ofs = np.rint(cand_fs).astype(int)
    oss = np.rint(cand_ss).astype(int)
    inside = (ofs >= 0) & (ofs < n_fs) & (oss >= 0) & (oss < n_ss)
    panel = np.full(cand_fs.size, -1, int)
    panel[inside] = panel_map[oss[inside], ofs[inside]]
    half = size // 2
    r = np.arange(-half, size - half)
    rows = oss[:, None] + r[None, :]  # (N, S)
    cols = ofs[:, None] + r[None, :]
    in_slab = ((rows >= 0) & (rows < n_ss))[:, :, None] & ((cols >= 0) & (cols < n_fs))[:, None, :]
    rc = np.clip(rows, 0, n_ss - 1)[:, :, None]
    cc = np.clip(cols, 0, n_fs - 1)[:, None, :]
    values = slab[rc, cc].astype(float)
    same_panel = in_slab & (panel_map[rc, cc] == panel[:, None, None]) & (panel[:, None, None] >= 0)
    finite = np.isfinite(values)
    label_mask = same_panel & usable[rc, cc] & finite
    fit_mask = label_mask.copy()
    if saturation is not None:
        sat = saturation if np.ndim(saturation) == 0 else np.asarray(saturation)[rc, cc]
        fit_mask &= values < sat
    data = np.where(fit_mask, values, 0.0)
    return Windows(data, fit_mask, label_mask, oss, ofs, panel, cand_fs, cand_ss)


def bounds(win: Windows, settings: FitSettings) -> tuple[np.ndarray, np.ndarray]:
    """Physical bounds (section 2.1.2): A >= 0, 0 <= eta <= 1, widths in [min, max] px, the centre
    inside the window's usable pixels; background plane unbounded. Shapes (N, 11)."""
    n = win.n
    lo = np.full((n, N_PARAMS), -np.inf)
    hi = np.full((n, N_PARAMS), np.inf)
    lo[:, I_AMP] = 0.0
    for i in (I_SX, I_SY, I_GX, I_GY):
        lo[:, i], hi[:, i] = settings.width_min_px, settings.width_max_px
    lo[:, I_ETA], hi[:, I_ETA] = 0.0, 1.0
    y, x = window_grid(win.size)
    m = win.fit_mask
    big = float(win.size)
    lo[:, I_X0] = np.where(m, x, big).min(axis=(1, 2))
    hi[:, I_X0] = np.where(m, x, -big).max(axis=(1, 2))
    lo[:, I_Y0] = np.where(m, y, big).min(axis=(1, 2))
    hi[:, I_Y0] = np.where(m, y, -big).max(axis=(1, 2))
    return lo, hi


def row_quantile(values: np.ndarray, valid: np.ndarray, q: float) -> np.ndarray:
    """Per-row ``q`` quantile of the valid entries (numpy's linear rule), NaN for empty rows."""
    v = np.sort(np.where(valid, values, np.inf), axis=1)
    k = valid.sum(axis=1)
    pos = q * np.maximum(k - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(k - 1, 0))
    rows = np.arange(v.shape[0])
    a, b = v[rows, lo], v[rows, hi]
    with np.errstate(invalid="ignore"):
        out = a + (pos - lo) * (b - a)
    return np.where(k > 0, out, np.nan)


def initial_guess(win: Windows, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Starting point shared by both solvers (so they agree): background from the window's
    border, height from the candidate's 3x3 neighbourhood, centre at the candidate."""
    n, s = win.n, win.size
    p0 = np.zeros((n, N_PARAMS))
    border = np.zeros((s, s), bool)
    border[[0, -1], :] = True
    border[:, [0, -1]] = True
    c = s // 2
    core = np.zeros((s, s), bool)
    core[c - 1 : c + 2, c - 1 : c + 2] = True
    data = win.data.reshape(n, s * s)
    m = win.fit_mask.reshape(n, s * s)
    on_border = m & border.reshape(-1)
    bg = np.where(
        on_border.sum(axis=1) >= 4,
        row_quantile(data, on_border, 0.5),
        row_quantile(data, m, 0.25),
    )
    bg = np.nan_to_num(bg, nan=0.0)
    in_core = m & core.reshape(-1)
    top = np.where(
        in_core.any(axis=1),
        np.where(in_core, data, -np.inf).max(axis=1),
        np.where(m, data, -np.inf).max(axis=1),
    )
    p0[:, I_C] = bg
    p0[:, I_AMP] = np.maximum(np.where(np.isfinite(top), top - bg, 1.0), 1.0)
    eps = 1e-3
    p0[:, I_X0] = np.clip(win.cand_fs - win.origin_fs, lo[:, I_X0] + eps, hi[:, I_X0] - eps)
    p0[:, I_Y0] = np.clip(win.cand_ss - win.origin_ss, lo[:, I_Y0] + eps, hi[:, I_Y0] - eps)
    for i in (I_SX, I_SY, I_GX, I_GY):
        p0[:, i] = np.clip(1.0, lo[:, i] + eps, hi[:, i] - eps)
    p0[:, I_ETA] = 0.5
    return p0
