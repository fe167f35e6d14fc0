"""Does an indexing solution describe the true lattice, and how far is its orientation off?

Two reciprocal bases describe the same lattice when one, expressed in the other, is an integer
matrix of determinant +-1 (a change of setting, e.g. a symmetry-equivalent choice of axes). The
orientation error is the rotation angle between the true basis and the found basis brought into
the true setting.
"""

from __future__ import annotations

import numpy as np


def setting_matrix(true_rstar: np.ndarray, found_rstar: np.ndarray) -> np.ndarray:
    """M with found = M @ true (rows are a*, b*, c*), as real numbers."""
    return np.asarray(found_rstar, float) @ np.linalg.inv(np.asarray(true_rstar, float))


def misorientation_deg(true_rstar: np.ndarray, found_rstar: np.ndarray, tol: float = 0.05) -> float:
    """Rotation angle (degrees) between the two lattices, or inf if they are not the same lattice.

    ``tol`` is the largest allowed deviation of the setting matrix from integers.
    """
    m = setting_matrix(true_rstar, found_rstar)
    m_int = np.rint(m)
    if np.abs(m - m_int).max() > tol or round(abs(np.linalg.det(m_int))) != 1:
        return float("inf")
    # found basis expressed in the true setting: true' = M_int^-1 found
    aligned = np.linalg.inv(m_int) @ np.asarray(found_rstar, float)
    true = np.asarray(true_rstar, float)
    # best rotation taking true rows onto aligned rows (Kabsch), then its angle
    u, _, vt = np.linalg.svd(true.T @ aligned)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    cos = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def best_match_deg(true_bases: list[np.ndarray], found_rstar: np.ndarray) -> float:
    """Smallest misorientation of a found lattice against any true lattice of the frame."""
    if not true_bases:
        return float("inf")
    return min(misorientation_deg(t, found_rstar) for t in true_bases)
