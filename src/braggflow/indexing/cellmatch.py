"""Target-cell checks like indexamajig's: tolerances on lengths and angles, and the target's setting.

A lattice found by the indexer may come in any setting (any basis of the same lattice). Like
CrystFEL's ``match_cell`` we look for lattice vectors ``n1 a + n2 b + n3 c`` (small integers)
whose lengths and mutual angles match the target's a, b, c within the tolerances, so that the
crystal is written in the target's setting (centred targets included: their conventional axes
are lattice vectors too).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from braggflow.formats.cell import UnitCell


@dataclass(frozen=True)
class Tolerance:
    """indexamajig ``--tolerance`` defaults: 5% on lengths, 1.5 degrees on angles."""

    length_frac: float = 0.05
    angle_deg: float = 1.5


def cell_of(direct_rows: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """(a, b, c, alpha, beta, gamma) of a direct basis given as rows (A, degrees)."""
    a, b, c = (np.asarray(v, dtype=float) for v in direct_rows)
    la, lb, lc = (float(np.linalg.norm(v)) for v in (a, b, c))

    def ang(u: np.ndarray, v: np.ndarray, lu: float, lv: float) -> float:
        return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) / (lu * lv)))))

    return la, lb, lc, ang(b, c, lb, lc), ang(a, c, la, lc), ang(a, b, la, lb)


def cell_agrees(params: tuple[float, ...], target: tuple[float, ...], tol: Tolerance) -> bool:
    """Every length within ``length_frac`` and every angle within ``angle_deg`` of the target."""
    for x, t in zip(params[:3], target[:3], strict=True):
        if abs(x - t) > tol.length_frac * t:
            return False
    return all(abs(x - t) <= tol.angle_deg for x, t in zip(params[3:], target[3:], strict=True))


def assemble_bases(
    candidates: list[list[np.ndarray]], target: UnitCell, angle_tol_deg: float, max_bases: int = 64
) -> list[np.ndarray]:
    """Right-handed bases (rows a, b, c) from candidate vectors for each target axis.

    ``candidates[i]`` are vectors (any sign) whose length suits target axis i. Signs are chosen
    so the pairwise angles match the target's; a left-handed triple is inverted (which keeps the
    angles and the lattice).
    """
    cos_t = [
        math.cos(math.radians(x)) for x in (target.alpha_deg, target.beta_deg, target.gamma_deg)
    ]
    tol = math.radians(angle_tol_deg)
    out: list[np.ndarray] = []

    def angle_ok(u: np.ndarray, v: np.ndarray, cos_target: float) -> tuple[bool, float]:
        c = float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))
        # pick the sign of v that brings the angle closest to the target
        sign = 1.0 if abs(c - cos_target) <= abs(-c - cos_target) else -1.0
        diff = abs(math.acos(max(-1.0, min(1.0, sign * c))) - math.acos(cos_target))
        return diff <= tol, sign

    for va in candidates[0]:
        for vb in candidates[1]:
            ok, sb = angle_ok(va, vb, cos_t[2])
            if not ok:
                continue
            vb2 = sb * vb
            for vc in candidates[2]:
                ok, sc = angle_ok(va, vc, cos_t[1])
                if not ok:
                    continue
                vc2 = sc * vc
                c_bc = float(vb2 @ vc2) / (np.linalg.norm(vb2) * np.linalg.norm(vc2))
                if abs(math.acos(max(-1.0, min(1.0, c_bc))) - math.acos(cos_t[0])) > tol:
                    continue
                basis = np.stack([va, vb2, vc2]).astype(float)
                det = np.linalg.det(basis)
                if abs(det) < 1e-6 * np.prod(np.linalg.norm(basis, axis=1)):
                    continue
                out.append(basis if det > 0 else -basis)
                if len(out) >= max_bases:
                    return out
    return out


def lattice_vectors(direct_rows: np.ndarray, max_index: int = 2) -> np.ndarray:
    """All lattice vectors n1 a + n2 b + n3 c with |n_i| <= max_index (one of each +- pair)."""
    coeffs = []
    for n in itertools.product(range(-max_index, max_index + 1), repeat=3):
        if n == (0, 0, 0):
            continue
        first = next(x for x in n if x != 0)
        if first > 0:
            coeffs.append(n)
    return np.asarray(coeffs, dtype=float) @ np.asarray(direct_rows, dtype=float)


def to_target_setting(
    direct_rows: np.ndarray, target: UnitCell, tol: Tolerance, max_index: int = 2
) -> np.ndarray | None:
    """A basis of the same lattice in the target's setting (rows a, b, c), or None.

    Among matching bases the one closest to the target's parameters is returned.
    """
    vecs = lattice_vectors(direct_rows, max_index)
    lengths = np.linalg.norm(vecs, axis=1)
    cands = []
    for t in (target.a_A, target.b_A, target.c_A):
        sel = np.abs(lengths - t) <= tol.length_frac * t
        cands.append(list(vecs[sel]))
    bases = assemble_bases(cands, target, tol.angle_deg)
    if not bases:
        return None
    ref = np.array(target.parameters)
    scale = np.array([target.a_A, target.b_A, target.c_A, 1.0, 1.0, 1.0])

    def misfit(b: np.ndarray) -> float:
        return float(np.sum(((np.array(cell_of(b)) - ref) / scale) ** 2))

    return min(bases, key=misfit)
