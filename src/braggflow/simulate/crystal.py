"""The crystal: reflection table with Wilson intensities, lattice centering, random orientations.

Intensities follow Wilson statistics (Wilson 1949): for an acentric reflection the normalised
intensity E^2 is exponentially distributed, and the mean falls off as exp(-B / (2 d^2)) with the
overall temperature factor B (|F|^2 carries exp(-2 B sin^2(theta) / lambda^2)). Every E^2 comes
from a counter-based hash of (experiment seed, h, k, l), so the table is fixed per experiment,
independent of which reflections a detector happens to cover, and obeys Friedel's law.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braggflow.formats.cell import UnitCell

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class ReflectionTable:
    """Every allowed reflection up to ``q_max``: Miller indices, 1/d and full intensity (Wilson)."""

    hkl: np.ndarray  # (n, 3) int32
    one_over_d: np.ndarray  # (n,) 1/Angstrom
    intensity: np.ndarray  # (n,) mean 1 at d -> infinity, B fall-off included

    def __len__(self) -> int:
        return int(self.hkl.shape[0])


def centering_allows(centering: str, hkl: np.ndarray) -> np.ndarray:
    """Reflections not extinct by lattice centering (International Tables Vol. A, Table 2.2.13.1)."""
    h, k, l = (hkl[..., i].astype(np.int64) for i in range(3))  # noqa: E741
    if centering in ("P", "R"):
        return np.ones(h.shape, dtype=bool)
    if centering == "A":
        return (k + l) % 2 == 0
    if centering == "B":
        return (h + l) % 2 == 0
    if centering == "C":
        return (h + k) % 2 == 0
    if centering == "I":
        return (h + k + l) % 2 == 0
    if centering == "F":
        return ((h + k) % 2 == 0) & ((h + l) % 2 == 0) & ((k + l) % 2 == 0)
    if centering == "H":  # rhombohedral lattice on hexagonal axes, obverse setting (CrystFEL 'H')
        return (-h + k + l) % 3 == 0
    raise ValueError(f"unknown centering {centering!r}")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014): a bijective 64-bit mixer, vectorised."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def hash_uniform(seed: int, hkl: np.ndarray) -> np.ndarray:
    """A uniform number in (0, 1) per reflection, the same for (h, k, l) and (-h, -k, -l)."""
    hkl = np.asarray(hkl, dtype=np.int64)
    # Friedel: use the representative whose first non-zero index is positive
    first = np.where(hkl[:, 0] != 0, hkl[:, 0], np.where(hkl[:, 1] != 0, hkl[:, 1], hkl[:, 2]))
    canon = hkl * np.where(first < 0, -1, 1)[:, None]
    packed = (
        ((canon[:, 0] + (1 << 20)) << 42)
        | ((canon[:, 1] + (1 << 20)) << 21)
        | (canon[:, 2] + (1 << 20))
    ).astype(np.uint64)
    key = _splitmix64(np.full(1, seed, dtype=np.uint64))[0]
    z = _splitmix64(packed ^ key)
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def wilson_intensity(
    seed: int, hkl: np.ndarray, one_over_d: np.ndarray, b_factor_A2: float
) -> np.ndarray:
    """Acentric Wilson intensities: E^2 ~ Exp(1) times exp(-B / (2 d^2))."""
    e2 = -np.log1p(-hash_uniform(seed, hkl))
    return e2 * np.exp(-0.5 * b_factor_A2 * one_over_d**2)


def reflection_table(
    cell: UnitCell, q_max: float, seed: int, b_factor_A2: float
) -> ReflectionTable:
    """All reflections allowed by the centering with 1/d <= ``q_max`` (1/Angstrom), except 000."""
    direct = cell.direct_matrix()
    recip = cell.reciprocal_matrix()
    # |h| = |q . a| <= q_max |a|
    limits = [int(np.floor(q_max * np.linalg.norm(direct[i]))) for i in range(3)]
    axes = [np.arange(-m, m + 1, dtype=np.int32) for m in limits]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    q = np.linalg.norm(hkl @ recip, axis=1)
    keep = (q <= q_max) & (q > 0) & centering_allows(cell.centering, hkl)
    hkl, q = hkl[keep], q[keep]
    return ReflectionTable(
        hkl=hkl, one_over_d=q, intensity=wilson_intensity(seed, hkl, q, b_factor_A2)
    )


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform on SO(3) (Shoemake 1992, uniform random quaternion)."""
    u1, u2, u3 = rng.random(3)
    a, b = np.sqrt(1.0 - u1), np.sqrt(u1)
    w, x, y, z = (
        a * np.sin(2 * np.pi * u2),
        a * np.cos(2 * np.pi * u2),
        b * np.sin(2 * np.pi * u3),
        b * np.cos(2 * np.pi * u3),
    )
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def oriented_reciprocal_basis(cell: UnitCell, rotation: np.ndarray) -> np.ndarray:
    """Rows a*, b*, c* (1/Angstrom) in the lab frame: the cell's reciprocal basis rotated."""
    return cell.reciprocal_matrix() @ rotation.T
