"""Evaluation arithmetic, lattice matching and the summary table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from braggflow.evaluation.orientation import misorientation_deg
from braggflow.evaluation.rates import cell_statistics, frame_rates, rates_from_counts
from braggflow.evaluation.scoring import false_hits
from braggflow.evaluation.summary import read_tsv, summarise, to_tsv


def rotation(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


def test_yield_is_hit_rate_times_index_rate():
    r = rates_from_counts(frames=40, hits=30, indexed=24)
    assert r.hit_rate == pytest.approx(0.75)
    assert r.index_rate == pytest.approx(0.8)
    assert r.index_yield == pytest.approx(0.6) == pytest.approx(r.hit_rate * r.index_rate)


def test_rates_refuse_impossible_counts():
    with pytest.raises(ValueError):
        rates_from_counts(frames=10, hits=5, indexed=6)


def test_indexed_non_hits_do_not_count():
    n_peaks = np.array([30, 25, 3, 0])
    indexed = np.array([True, False, True, False])  # frame 2 indexed but not a hit
    r = frame_rates(n_peaks, indexed, min_peaks=10)
    assert (r.frames, r.hits, r.indexed) == (4, 2, 1)


def test_empty_run_has_zero_rates():
    r = frame_rates(np.zeros(0), np.zeros(0, bool), min_peaks=10)
    assert (r.hit_rate, r.index_rate, r.index_yield) == (0.0, 0.0, 0.0)


def test_cell_statistics():
    cells = np.array([[79.0, 79.0, 38.0, 90, 90, 90], [79.2, 78.8, 38.2, 90, 90, 90]])
    stats = cell_statistics(cells)
    assert stats["a_A_mean"] == pytest.approx(79.1)
    assert stats["c_A_std"] == pytest.approx(np.std([38.0, 38.2], ddof=1))


def test_same_lattice_in_another_setting_matches_with_its_rotation():
    true = np.diag([1 / 79.1, 1 / 79.1, 1 / 38.0]) @ rotation([1, 2, 3], 40).T
    swap = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]])  # 4-fold about c: same lattice
    found = swap @ true @ rotation([0.3, -1, 0.2], 0.5).T
    assert misorientation_deg(true, found) == pytest.approx(0.5, abs=1e-6)


def test_other_lattice_does_not_match():
    true = np.diag([1 / 79.1, 1 / 79.1, 1 / 38.0])
    other = np.diag([1 / 60.0, 1 / 79.1, 1 / 38.0])
    assert misorientation_deg(true, other) == math.inf
    assert misorientation_deg(true, true @ rotation([1, 0, 0], 20).T) == math.inf


def test_blank_frame_called_hit_is_a_false_hit():
    assert false_hits(np.array([True, True, False]), np.array([True, False, False])) == 1


def test_summary_pools_runs_and_keeps_yield_arithmetic(tmp_path):
    per_run = [
        {"method": "teacher", "run": "r1", "frames": 10, "hits": 8, "indexed": 6, "cells": []},
        {"method": "teacher", "run": "r2", "frames": 10, "hits": 4, "indexed": 2, "cells": []},
        {"method": "peakfinder8", "run": "r1", "frames": 10, "hits": 5, "indexed": 5, "cells": []},
    ]
    rows = summarise(per_run)
    assert [r["method"] for r in rows] == ["peakfinder8", "teacher"]
    teacher = rows[1]
    assert (teacher["frames"], teacher["hits"], teacher["indexed"]) == (20, 12, 8)
    assert teacher["index_yield"] == pytest.approx(teacher["hit_rate"] * teacher["index_rate"])
    path = tmp_path / "s.tsv"
    path.write_text(to_tsv(rows))
    back = read_tsv(path)
    assert back[1]["method"] == "teacher" and float(back[1]["index_yield"]) == pytest.approx(0.4)
