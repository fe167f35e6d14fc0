"""Cheetah's compiled peakfinder8 (ondamonitor's ``om.algorithms._crystallography``) for cross-validation.

OM's Python wrapper breaks on numpy 2, so :class:`ReferencePeakfinder8` calls the compiled
function directly with the same mask (min/max resolution cut included) and radial bins as a
:class:`~braggflow.peakfinder8.algorithm.Peakfinder8`. The compiled function's arguments (OM
23.8): ``max_num_peaks, data (float32), mask (int8), pix_r (float32), rstats_num_pix,
rstats_pidx, rstats_radius, fast, asic_nx, asic_ny, nasics_x, nasics_y, adc_thresh, min_snr,
min_pix_count, max_pix_count, local_bg_radius``; it returns lists ``fs, ss, total intensity,
com index, npix, max intensity, local sigma, snr``.
"""

from __future__ import annotations

import numpy as np

from braggflow.formats.cxi import PeakTable
from braggflow.peakfinder8.algorithm import Peakfinder8


def available() -> bool:
    """True when ondamonitor's compiled peakfinder8 can be imported."""
    try:
        from om.algorithms._crystallography import peakfinder_8  # noqa: F401
    except ImportError:
        return False
    return True


def asic_grid(panel_bounds: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(asic_nx, asic_ny, nasics_x, nasics_y) when the panels tile the slab as a regular grid."""
    b = np.asarray(panel_bounds).reshape(-1, 4)
    widths = b[:, 1] - b[:, 0] + 1
    heights = b[:, 3] - b[:, 2] + 1
    nx, ny = int(widths[0]), int(heights[0])
    n_ss, n_fs = shape
    grid = (widths == nx).all() and (heights == ny).all() and n_fs % nx == 0 and n_ss % ny == 0
    grid = grid and (b[:, 0] % nx == 0).all() and (b[:, 2] % ny == 0).all()
    grid = grid and len(b) == (n_fs // nx) * (n_ss // ny)
    if not grid:
        raise ValueError("Cheetah's peakfinder8 needs panels of one size tiling the slab as a grid")
    return nx, ny, n_fs // nx, n_ss // ny


class ReferencePeakfinder8:
    """Cheetah's compiled peakfinder8 set up like ``finder`` (mask and radius prepared once)."""

    def __init__(self, finder: Peakfinder8) -> None:
        self.finder = finder
        self.grid = asic_grid(finder.bounds, finder.shape)
        self.mask = finder.valid_flat.reshape(finder.shape).astype(np.int8)
        self.radius = finder.rbin_flat.reshape(finder.shape).astype(np.float32)

    def find(self, frame: np.ndarray) -> PeakTable:
        from om.algorithms._crystallography import peakfinder_8

        p = self.finder.params
        nx, ny, ax, ay = self.grid
        out = peakfinder_8(
            p.max_num_peaks,
            np.ascontiguousarray(frame, dtype=np.float32),
            self.mask,
            self.radius,
            0,
            None,
            None,
            0,
            nx,
            ny,
            ax,
            ay,
            float(p.adc_threshold),
            float(p.min_snr),
            int(p.min_pix_count),
            int(p.max_pix_count),
            int(p.local_bg_radius),
        )
        fs, ss, tot, _com, npix, max_i, _sigma, snr = (np.asarray(o, dtype=np.float64) for o in out)
        return PeakTable(fs=fs, ss=ss, intensity=tot, max_intensity=max_i, npix=npix, snr=snr)


def reference_peakfinder8(finder: Peakfinder8, frame: np.ndarray) -> PeakTable:
    """One frame through Cheetah's compiled peakfinder8 with ``finder``'s layout and parameters."""
    return ReferencePeakfinder8(finder).find(frame)
