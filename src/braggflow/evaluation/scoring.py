"""Scores against the simulator's ground truth (what no peak finder's paper can report).

Peak precision/recall: found peaks are matched one-to-one to the truly visible reflections of the
same frame and panel (linear_sum_assignment on pixel distance, the PeakDiff matcher); a match
farther than ``max_distance_px`` does not count. Orientation: an indexed frame is correct when
one of its crystals is the same lattice as a true lattice of the frame within ``max_angle_deg``.
False hits: blank frames (no crystal) that a method calls hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from braggflow.evaluation.orientation import best_match_deg


@dataclass
class FramePeaks:
    """Peaks of one frame in raw slab coordinates (pixel centre at an integer)."""

    fs: np.ndarray
    ss: np.ndarray
    panel: np.ndarray


def peak_counts(
    found: Sequence[FramePeaks], truth: Sequence[FramePeaks], max_distance_px: float
) -> tuple[int, int, int]:
    """(n_found, n_true, n_matched) summed over frames."""
    from braggflow.peakdiff import match_peaks

    n_found = n_true = n_matched = 0
    for f, t in zip(found, truth, strict=True):
        match = match_peaks(
            f.fs, f.ss, t.fs, t.ss, max_distance_px, a_panel=f.panel, b_panel=t.panel
        )
        n_found += len(f.fs)
        n_true += len(t.fs)
        n_matched += match.n_matched
    return n_found, n_true, n_matched


def precision_recall(n_found: int, n_true: int, n_matched: int) -> tuple[float, float]:
    precision = n_matched / n_found if n_found else 0.0
    recall = n_matched / n_true if n_true else 0.0
    return precision, recall


def orientation_errors(
    found_bases: Sequence[Sequence[np.ndarray]], true_bases: Sequence[Sequence[np.ndarray]]
) -> np.ndarray:
    """Per frame with a found crystal: the smallest misorientation (deg; inf = wrong lattice)."""
    errors = []
    for found, true in zip(found_bases, true_bases, strict=True):
        if found:
            errors.append(min(best_match_deg(list(true), f) for f in found))
    return np.asarray(errors, dtype=float)


def false_hits(is_hit: np.ndarray, has_crystal: np.ndarray) -> int:
    """Blank frames called hits."""
    return int((np.asarray(is_hit, bool) & ~np.asarray(has_crystal, bool)).sum())
