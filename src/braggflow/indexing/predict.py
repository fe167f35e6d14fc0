"""Reflection prediction for an indexed still: which hkl are in diffraction and where they land.

A reciprocal lattice point q = hkl A* is predicted when its excitation error
s = |k_in + q| - |k_in| is within the crystal's profile radius (CrystFEL's ``check_reflection``,
White et al. 2013), up to a resolution limit; it is recorded along k_in + q, projected onto the
panels (CrystFEL's ``locate_peak``). The profile radius is estimated from the excitation errors
of the indexed peaks, as CrystFEL's prediction refinement does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braggflow.indexing.detector import Detector


@dataclass(frozen=True)
class Prediction:
    hkl: np.ndarray  # (n, 3) int
    panel: np.ndarray  # (n,) panel index
    fs: np.ndarray  # raw slab, pixel centre at integer
    ss: np.ndarray
    excitation: np.ndarray  # s (1/Angstrom)

    def __len__(self) -> int:
        return int(self.hkl.shape[0])


def excitation_errors(q: np.ndarray, wavelength: float) -> np.ndarray:
    """s = |k_in + q| - k for lattice points q (1/Angstrom)."""
    k = 1.0 / wavelength
    kout = np.array(q, dtype=float, copy=True)
    kout[:, 2] += k
    return np.linalg.norm(kout, axis=1) - k


def estimate_profile_radius(
    reciprocal: np.ndarray,
    hkl: np.ndarray,
    wavelength: float,
    quantile: float,
    minimum: float,
    max_over_median: float = 4.0,
) -> float:
    """A profile radius (1/A) covering ``quantile`` of the indexed peaks' excitation errors.

    Capped at ``max_over_median`` times their median, so one stray peak cannot inflate it (the
    maximum of ~40 Gaussian |s| is ~3.7 times their median).
    """
    if len(hkl) == 0:
        return minimum
    s = np.abs(excitation_errors(hkl @ reciprocal, wavelength))
    radius = min(float(np.quantile(s, quantile)), max_over_median * float(np.median(s)))
    return float(max(minimum, radius))


def predict(
    reciprocal: np.ndarray,
    detector: Detector,
    wavelength: float,
    profile_radius: float,
    q_max: float,
) -> Prediction:
    """Every reflection within ``profile_radius`` of the Ewald sphere, |q| <= q_max, on a panel."""
    reciprocal = np.asarray(reciprocal, dtype=float)
    direct = np.linalg.inv(reciprocal).T
    # |h| = |a . q| <= |a| q_max
    limits = [int(np.floor(q_max * np.linalg.norm(direct[i]))) for i in range(3)]
    axes = [np.arange(-m, m + 1, dtype=np.int64) for m in limits]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    q = hkl @ reciprocal
    qn = np.linalg.norm(q, axis=1)
    keep = (qn > 0) & (qn <= q_max)
    hkl, q = hkl[keep], q[keep]
    s = excitation_errors(q, wavelength)
    keep = np.abs(s) <= profile_radius
    hkl, q, s = hkl[keep], q[keep], s[keep]
    kout = q.copy()
    kout[:, 2] += 1.0 / wavelength
    panel, fs, ss = detector.project(kout)
    on = panel >= 0
    return Prediction(hkl=hkl[on], panel=panel[on], fs=fs[on], ss=ss[on], excitation=s[on])
