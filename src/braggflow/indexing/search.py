"""Candidate basis vectors by directional periodicity at the target cell's axis lengths.

DPS (Steller, Bolotovsky & Rossmann 1997, J. Appl. Cryst. 30, 1036) finds real-space basis
vectors as directions t along which the projections t . q of the spots are periodic; its 1-D FFT
locates the period L. With a known target cell the periods are known, so the transform is only
needed at those frequencies (the idea of DIALS' real-space grid search, Gildea et al. 2014):

    F(t, L) = (1 / N) sum_i cos(2 pi L t . q_i)

which is 1 for a lattice direction of length L. A coarse hemisphere grid (using the spots of
lowest resolution, where the peak of F is wide) is followed by local refinement of direction and
length with all spots. Thin stills with few low-resolution spots defeat the full 1-D FFT search
(its period resolution is ~ 1 / q_max); this targeted transform still works there.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from braggflow.formats.cell import UnitCell

# Two lattice vectors of similar length L differ by at least the shortest lattice vector s, so
# their directions are >= s / L apart (~20 deg for usual cells); closer candidates are one peak.
MIN_SEPARATION = math.radians(5.0)


@functools.lru_cache(maxsize=8)
def hemisphere(step_rad: float) -> np.ndarray:
    """Quasi-uniform unit vectors on the z >= 0 hemisphere, spacing ~``step_rad`` (Fibonacci)."""
    n = max(16, int(round(2.0 * math.pi / step_rad**2)))
    i = np.arange(n) + 0.5
    z = i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    out = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1).astype(np.float32)
    out.setflags(write=False)
    return out


def periodicity(q: np.ndarray, directions: np.ndarray, length_A: float) -> np.ndarray:
    """F(t, L) for every direction t (rows) at period ``length_A``."""
    phase = (directions @ q.T.astype(directions.dtype)) * np.float32(2.0 * math.pi * length_A)
    return np.cos(phase).mean(axis=1)


def _distinct_top(
    scores: np.ndarray, directions: np.ndarray, n: int, min_sep_rad: float
) -> list[int]:
    m = min(len(scores), max(200, 40 * n))
    top = np.argpartition(scores, len(scores) - m)[len(scores) - m :]
    order = top[np.argsort(scores[top])[::-1]]
    cos_sep = math.cos(min_sep_rad)
    chosen: list[int] = []
    for idx in order:
        d = directions[idx]
        if all(abs(float(d @ directions[j])) < cos_sep for j in chosen):
            chosen.append(int(idx))
            if len(chosen) >= n:
                break
    return chosen


def _tangent_bases(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors normal to each row of ``d`` (k, 3) and to each other."""
    helper = np.where(
        np.abs(d[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]])
    )
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(d, e1)


def refine_vectors(
    q: np.ndarray,
    directions: np.ndarray,
    length_A: float,
    step_rad: float,
    length_tol: float,
    n_rounds: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Local search of direction and length maximising F for every start direction at once.

    Each round tries a 5 x 5 grid of tilts and 5 lengths around the current best and halves the
    grid. Returns (vectors in Angstrom (k, 3), scores (k,)).
    """
    d = np.asarray(directions, dtype=float)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    k = d.shape[0]
    length = np.full(k, float(length_A))
    offsets = np.arange(-2, 3, dtype=float)
    ga, gb = (g.ravel() for g in np.meshgrid(offsets, offsets, indexing="ij"))
    rel = np.linspace(-1.0, 1.0, 5)
    h, tol = 0.5 * step_rad, 0.5 * length_tol
    rows = np.arange(k)
    for _ in range(n_rounds):
        e1, e2 = _tangent_bases(d)
        trial = d[:, None, :] + h * (
            ga[None, :, None] * e1[:, None, :] + gb[None, :, None] * e2[:, None, :]
        )
        trial /= np.linalg.norm(trial, axis=2, keepdims=True)  # (k, 25, 3)
        proj = trial @ q.T  # (k, 25, n)
        lengths = length[:, None] * (1.0 + tol * rel[None, :])  # (k, 5)
        scores = np.cos(2.0 * math.pi * lengths[:, :, None, None] * proj[:, None, :, :]).mean(
            axis=3
        )
        best = scores.reshape(k, -1).argmax(axis=1)
        li, ti = np.unravel_index(best, (5, 25))
        d = trial[rows, ti]
        length = np.clip(
            lengths[rows, li], length_A * (1.0 - length_tol), length_A * (1.0 + length_tol)
        )
        h *= 0.5
        tol *= 0.5
    final = np.cos(2.0 * math.pi * length[:, None] * (d @ q.T)).mean(axis=1)
    return d * length[:, None], final


def _distinct_vectors(
    vectors: np.ndarray, scores: np.ndarray, n: int, min_score: float, min_sep_rad: float
) -> list[np.ndarray]:
    """Best-scoring vectors, dropping those within ``min_sep_rad`` of a better one (either sign)."""
    cos_sep = math.cos(min_sep_rad)
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    chosen: list[int] = []
    for i in np.argsort(-scores):
        if scores[i] < min_score or len(chosen) >= n:
            break
        if all(abs(float(units[i] @ units[j])) < cos_sep for j in chosen):
            chosen.append(int(i))
    return [vectors[i] for i in chosen]


def targeted_candidates(
    q: np.ndarray,
    target: UnitCell,
    step_deg: float = 0.6,
    n_per_axis: int = 10,
    length_tol: float = 0.05,
    min_score: float = 0.3,
) -> list[list[np.ndarray]]:
    """For each target axis (a, b, c): refined candidate vectors (Angstrom), best first."""
    step = math.radians(step_deg)
    dirs = hemisphere(round(step, 6))
    qn = np.linalg.norm(q, axis=1)
    by_length: dict[float, list[np.ndarray]] = {}
    out: list[list[np.ndarray]] = []
    for length in (target.a_A, target.b_A, target.c_A):
        key = next((k for k in by_length if abs(k - length) <= 1e-3 * length), None)
        if key is not None:
            out.append(by_length[key])
            continue
        # coarse pass: spots whose phase error at half a grid step, 2 pi L q (step / 2), stays
        # below ~1 rad (so the grid cannot miss the peak of F); at least the 20 lowest-q spots
        q_coarse = 1.0 / (math.pi * length * step)
        use = np.flatnonzero(qn <= q_coarse)
        if use.size < min(len(qn), 20):
            use = np.argsort(qn)[: min(len(qn), 20)]
        elif use.size > 50:  # the 50 lowest-q of them: enough signal, half the cost
            use = use[np.argsort(qn[use])[:50]]
        scores = periodicity(q[use], dirs, length)
        top = _distinct_top(
            scores, dirs, 3 * n_per_axis, min_sep_rad=max(3.0 * step, 0.5 * MIN_SEPARATION)
        )
        vectors, vscores = refine_vectors(q, dirs[top], length, step, length_tol)
        vecs = _distinct_vectors(
            vectors, vscores, n_per_axis, min_score, min_sep_rad=MIN_SEPARATION
        )
        by_length[length] = vecs
        out.append(vecs)
    return out


def completed_bases(
    q: np.ndarray,
    candidates: list[list[np.ndarray]],
    target: UnitCell,
    step_deg: float,
    length_tol: float,
    angle_tol_deg: float = 5.0,
    max_pairs: int = 12,
    min_score: float = 0.3,
) -> list[np.ndarray]:
    """Bases from pairs of candidates: the third axis is placed at the target's angles to both.

    A weak third periodicity (few spots along it, or masked by noise) may not rank among the
    candidates; its direction follows from the other two and the target angles, and is then
    refined locally on all spots. Rows a, b, c; both mirror solutions are returned.
    """
    angles = np.radians([target.alpha_deg, target.beta_deg, target.gamma_deg])
    lengths = (target.a_A, target.b_A, target.c_A)
    # angle between axes (i, j) is the target angle opposite the third axis
    pair_angle = {(0, 1): angles[2], (0, 2): angles[1], (1, 2): angles[0]}
    tol = math.radians(angle_tol_deg)
    step = math.radians(step_deg)
    out: list[np.ndarray] = []
    for (i, j), ang_ij in pair_angle.items():
        kk = 3 - i - j
        pairs, starts = [], []
        for vi in candidates[i]:
            for vj in candidates[j]:
                if len(pairs) >= 2 * max_pairs:
                    break
                ui, uj = vi / np.linalg.norm(vi), vj / np.linalg.norm(vj)
                g = float(ui @ uj)
                if abs(g) > 0.999:
                    continue
                if abs(math.acos(max(-1.0, min(1.0, g))) - ang_ij) > tol:
                    # the other sign of vj may fit
                    if abs(math.acos(max(-1.0, min(1.0, -g))) - ang_ij) > tol:
                        continue
                    uj, vj, g = -uj, -vj, -g
                # u . ui = cos(angle(i, k)), u . uj = cos(angle(j, k))
                ci = math.cos(pair_angle[tuple(sorted((i, kk)))])
                cj = math.cos(pair_angle[tuple(sorted((j, kk)))])
                alpha, beta = np.linalg.solve(np.array([[1.0, g], [g, 1.0]]), np.array([ci, cj]))
                inplane = alpha * ui + beta * uj
                normal = np.cross(ui, uj)
                normal /= np.linalg.norm(normal)
                gamma2 = 1.0 - float(inplane @ inplane)
                if gamma2 <= 0:
                    continue
                for sign in (1.0, -1.0):  # both mirror solutions
                    pairs.append((vi, vj))
                    starts.append(inplane + sign * math.sqrt(gamma2) * normal)
        if not starts:
            continue
        vk, score = refine_vectors(q, np.asarray(starts), lengths[kk], step, length_tol, n_rounds=3)
        for (vi, vj), v, sc in zip(pairs, vk, score, strict=True):
            if sc < min_score:
                continue
            basis = np.zeros((3, 3))
            basis[i], basis[j], basis[kk] = vi, vj, v
            det = np.linalg.det(basis)
            out.append(basis if det > 0 else -basis)
    return out
