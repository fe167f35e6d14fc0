"""Indexing results against the simulator's ground truth (acceptance figures of the index stage).

A true hit is a frame with a crystal and at least ``min_visible`` visible reflections. It is
correctly indexed when its first crystal is one of the frame's true lattices (any setting of the
same lattice, i.e. modulo the lattice symmetry) within ``max_angle_deg`` and its cell is within
``length_frac`` / ``angle_deg`` of the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from braggflow.evaluation.orientation import misorientation_deg
from braggflow.indexing.cellmatch import cell_of


@dataclass(frozen=True)
class TruthScore:
    true_hits: int
    indexed_true_hits: int
    correct_true_hits: int
    blank_frames: int
    blank_frames_indexed: int
    orientation_errors_deg: tuple[float, ...]

    @property
    def index_rate_true_hits(self) -> float:
        return self.indexed_true_hits / self.true_hits if self.true_hits else 0.0

    @property
    def correct_orientation_fraction(self) -> float:
        return self.correct_true_hits / self.true_hits if self.true_hits else 0.0


def score_frames(
    found: Sequence[Sequence[np.ndarray]],
    truth: object,
    target: tuple[float, ...],
    min_visible: int = 20,
    max_angle_deg: float = 1.0,
    length_frac: float = 0.01,
    angle_deg: float = 1.0,
) -> TruthScore:
    """``found[i]``: reciprocal bases (rows a*, b*, c*, nm^-1) of frame i's crystals, first first."""
    true_hits = indexed = correct = blanks = blank_indexed = 0
    errors: list[float] = []
    for i, bases in enumerate(found):
        if not truth.has_crystal[i]:
            blanks += 1
            blank_indexed += bool(len(bases))
            continue
        if truth.n_visible[i] < min_visible:
            continue
        true_hits += 1
        if not len(bases):
            continue
        indexed += 1
        first = np.asarray(bases[0], float)
        err = min(misorientation_deg(t, first) for t in truth.lattices_in(i))
        errors.append(err)
        cell = cell_of(np.linalg.inv(first).T * 10.0)
        cell_ok = all(
            abs(x - t) <= length_frac * t for x, t in zip(cell[:3], target[:3], strict=True)
        )
        cell_ok &= all(abs(x - t) <= angle_deg for x, t in zip(cell[3:], target[3:], strict=True))
        correct += bool(err <= max_angle_deg and cell_ok)
    return TruthScore(true_hits, indexed, correct, blanks, blank_indexed, tuple(errors))
