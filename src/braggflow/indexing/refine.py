"""Index assignment and least-squares refinement of a reciprocal basis against the peaks.

A peak is indexed by a basis when all three of its fractional Miller indices h = a . q lie within
``tolerance`` of integers (CrystFEL's peak check works the same way). Refinement solves the
linear least-squares problem hkl A* = q for the reciprocal basis A* (rows a*, b*, c*) on the
indexed peaks and repeats the assignment (Rossmann & van Beek 1999, linear orientation fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fit:
    direct: np.ndarray  # rows a, b, c (Angstrom)
    indexed: np.ndarray  # (n,) bool over the peaks given
    hkl: np.ndarray  # (n, 3) int: nearest Miller indices of every peak
    rms_hkl: float  # rms deviation of the indexed peaks' indices from integers

    @property
    def n_indexed(self) -> int:
        return int(self.indexed.sum())

    @property
    def reciprocal(self) -> np.ndarray:
        """Rows a*, b*, c* (1/Angstrom)."""
        return np.linalg.inv(self.direct).T


def assign(
    q: np.ndarray, direct: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Nearest hkl of every q, which peaks are indexed, and the rms deviation of those."""
    frac = q @ np.asarray(direct, dtype=float).T
    hkl = np.rint(frac)
    dev = np.abs(frac - hkl)
    indexed = (dev.max(axis=1) <= tolerance) & np.any(hkl != 0, axis=1)
    rms = float(np.sqrt(np.mean(dev[indexed] ** 2))) if indexed.any() else float("inf")
    return hkl.astype(np.int64), indexed, rms


def refine(q: np.ndarray, direct: np.ndarray, tolerance: float, n_iter: int = 4) -> Fit:
    """Alternate assignment and the linear fit of A*; stops when the indexed set is stable."""
    direct = np.asarray(direct, dtype=float)
    hkl, indexed, rms = assign(q, direct, tolerance)
    for _ in range(n_iter):
        if indexed.sum() < 6 or np.linalg.matrix_rank(hkl[indexed].astype(float)) < 3:
            break
        rstar, *_ = np.linalg.lstsq(hkl[indexed].astype(float), q[indexed], rcond=None)
        new_direct = np.linalg.inv(rstar).T
        new_hkl, new_indexed, new_rms = assign(q, new_direct, tolerance)
        if new_indexed.sum() < indexed.sum():
            break
        stable = np.array_equal(new_indexed, indexed) and np.array_equal(new_hkl, hkl)
        direct, hkl, indexed, rms = new_direct, new_hkl, new_indexed, new_rms
        if stable:
            break
    return Fit(direct=direct, indexed=indexed, hkl=hkl, rms_hkl=rms)


# ----------------------------------------------------------------------------- constrained fit

# Free cell parameters per lattice type: groups of indices into (a, b, c, alpha, beta, gamma) that
# share one value; parameters in no group stay at the target's value (90 or 120 degrees).
_TIES_UNIQUE_C = {
    "triclinic": [[0], [1], [2], [3], [4], [5]],
    "monoclinic": [[0], [1], [2], [5]],
    "orthorhombic": [[0], [1], [2]],
    "tetragonal": [[0, 1], [2]],
    "hexagonal": [[0, 1], [2]],
    "rhombohedral": [[0, 1, 2], [3, 4, 5]],
    "cubic": [[0, 1, 2]],
}
_AXIS = {"a": 0, "b": 1, "c": 2}


def cell_ties(lattice_type: str, unique_axis: str) -> list[list[int]]:
    """Groups of tied cell parameters for a Bravais lattice (unique axis moves the ties)."""
    ties = _TIES_UNIQUE_C.get(lattice_type, _TIES_UNIQUE_C["triclinic"])
    ua = _AXIS.get(unique_axis, 2)
    if ua == 2 or lattice_type in ("triclinic", "orthorhombic", "rhombohedral", "cubic"):
        return ties
    # relabel axes so that the unique axis takes c's role (angles follow their axes)
    others = [i for i in range(3) if i != ua]
    perm = {0: others[0], 1: others[1], 2: ua, 3: others[0] + 3, 4: others[1] + 3, 5: ua + 3}
    return [[perm[i] for i in group] for group in ties]


def _direct_from_params(p6: np.ndarray) -> np.ndarray:
    """Direct basis rows a, b, c (crystal frame, a along x, b in xy) from six cell parameters."""
    a, b, c = p6[:3]
    al, be, ga = np.radians(p6[3:])
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz = np.sqrt(max(c * c - cx * cx - cy * cy, 1e-12))
    return np.array([[a, 0.0, 0.0], [b * np.cos(ga), b * np.sin(ga), 0.0], [cx, cy, cz]])


def _rotation(omega: np.ndarray) -> np.ndarray:
    """Rodrigues rotation of angle |omega| about omega."""
    theta = float(np.linalg.norm(omega))
    if theta < 1e-15:
        return np.eye(3)
    k = omega / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def refine_constrained(
    q: np.ndarray,
    hkl: np.ndarray,
    direct: np.ndarray,
    target_params: tuple[float, ...],
    ties: list[list[int]],
    wavelength: float,
    n_iter: int = 8,
) -> np.ndarray:
    """Orientation and the lattice's free cell parameters fitted to the observed spot positions.

    Residuals are observed scattering vectors minus hkl A*: their components along the sphere
    are the spot-position errors, the radial component is the excitation error (a still only
    records points near the Ewald sphere; this is what fixes rotations about axes normal to the
    beam, which barely move the spots). Gauss-Newton over a rotation vector and the tied cell
    parameters (the constrained analogue of the linear fit above).
    Returns the refined direct basis (rows a, b, c in the lab frame).
    """
    p6 = np.array(target_params, dtype=float)
    current = np.array(cell_of_rows(direct))
    free = np.array([current[g].mean() for g in ties])
    # starting orientation: the rotation taking the crystal-frame basis onto the fitted one
    m = np.linalg.solve(_direct_from_params(p6), np.asarray(direct, float))
    u, _, vt = np.linalg.svd(m)
    u0 = u @ vt  # direct_lab ~= B @ u0
    if np.linalg.det(u0) < 0:
        return np.asarray(direct, float)
    hkl = np.asarray(hkl, dtype=float)

    def model(x: np.ndarray) -> np.ndarray:
        params = p6.copy()
        for g, v in zip(ties, x[3:], strict=True):
            params[g] = v
        d_lab = _direct_from_params(params) @ u0 @ _rotation(x[:3]).T
        return (hkl @ np.linalg.inv(d_lab).T).ravel()

    x = np.concatenate([np.zeros(3), free])
    steps = np.concatenate([np.full(3, 1e-5), np.maximum(np.abs(free), 1.0) * 1e-6])
    obs = np.asarray(q, float).ravel()
    for _ in range(n_iter):
        r0 = model(x)
        jac = np.stack(
            [(model(x + np.eye(len(x))[i] * steps[i]) - r0) / steps[i] for i in range(len(x))],
            axis=1,
        )
        dx, *_ = np.linalg.lstsq(jac, obs - r0, rcond=None)
        x = x + dx
        if np.all(np.abs(dx) < steps):
            break
    params = p6.copy()
    for g, v in zip(ties, x[3:], strict=True):
        params[g] = v
    return _direct_from_params(params) @ u0 @ _rotation(x[:3]).T


def cell_of_rows(direct: np.ndarray) -> tuple[float, float, float, float, float, float]:
    a, b, c = (np.asarray(v, dtype=float) for v in direct)
    la, lb, lc = (float(np.linalg.norm(v)) for v in (a, b, c))

    def ang(x: np.ndarray, y: np.ndarray, lx: float, ly: float) -> float:
        return float(np.degrees(np.arccos(np.clip(x @ y / (lx * ly), -1.0, 1.0))))

    return la, lb, lc, ang(b, c, lb, lc), ang(a, c, la, lc), ang(a, b, la, lb)
