"""Acceptance of the built-in indexer on the embedded simulated experiment (issue 3).

>= 85% of the true hits with >= 20 visible spots are indexed with the right cell (lengths within
1%, angles within 1 deg) and an orientation within 1 deg of truth (modulo the lattice symmetry);
no blank frame is indexed; predicted reflections land on the real spots. Peaks are (a) the truly
visible spots plus 0.3 px noise (independent of peakfinder8) and (b) the built-in peakfinder8's
peaks. The stage runs as the workflow runs it: ``braggflow index`` with the default config, in
its own process (cctbx import order).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from braggflow.formats.cxi import PeakTable, write_cxi_peaks
from braggflow.formats.stream import read_stream
from braggflow.indexing.truthcheck import score_frames

N_FRAMES = 40


def _index(exp: dict, peaks, out, repo) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "braggflow",
        "index",
        "--peaks",
        str(peaks),
        "--frames",
        str(exp["frames"]),
        "--geometry",
        str(exp["geometry"]),
        "--cell",
        str(exp["cell"]),
        "--out",
        str(out),
        "--threads",
        "2",
    ]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.with_name(out.name + ".json").read_text())


def _found(stream_path, n_frames: int) -> list[list[np.ndarray]]:
    found: list[list[np.ndarray]] = [[] for _ in range(n_frames)]
    for chunk in read_stream(stream_path).chunks:
        found[chunk.frame_index] = [c.reciprocal_matrix_nm for c in chunk.crystals]
    return found


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    from braggflow.simulate import quick_experiment, read_truth

    out = tmp_path_factory.mktemp("index_acceptance")
    exp = quick_experiment(out, n_frames=N_FRAMES, seed=2025)
    return {**exp, "dir": out, "truth_obj": read_truth(exp["truth"], footprint=False)}


@pytest.mark.slow
def test_true_spots_indexed_with_right_cell_and_orientation(experiment, repo):
    truth = experiment["truth_obj"]
    rng = np.random.default_rng(0)
    tables = []
    for i in range(truth.n_frames):
        r = truth.reflections_in(i, visible_only=True)
        n = r["fs"].size
        tables.append(
            PeakTable(
                fs=r["fs"] + rng.normal(0, 0.3, n),
                ss=r["ss"] + rng.normal(0, 0.3, n),
                intensity=r["photons"],
            )
        )
    peaks = experiment["dir"] / "truth_peaks.cxi"
    write_cxi_peaks(peaks, tables, frames_path=experiment["frames"])
    out = experiment["dir"] / "truth.stream"
    summary = _index(experiment, peaks, out, repo)
    cell = (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)
    score = score_frames(_found(out, N_FRAMES), truth, cell)
    assert score.true_hits >= 20
    assert score.correct_orientation_fraction >= 0.85, score
    assert score.blank_frames > 0 and score.blank_frames_indexed == 0
    assert summary["seconds_per_hit"] < 2.0
    # predicted reflections land on the real spots (PeakDiff matches on them)
    near, total = 0, 0
    for chunk in read_stream(out).chunks:
        i = chunk.frame_index
        if not chunk.crystals or not truth.has_crystal[i]:
            continue
        r = truth.reflections_in(i, visible_only=True)
        p_fs = np.concatenate([c.reflections.fs for c in chunk.crystals])
        p_ss = np.concatenate([c.reflections.ss for c in chunk.crystals])
        d = np.hypot(r["fs"][:, None] - p_fs[None], r["ss"][:, None] - p_ss[None]).min(axis=1)
        near += int((d <= 1.0).sum())
        total += d.size
    assert near >= 0.9 * total


@pytest.mark.slow
def test_peakfinder8_peaks_indexed_and_no_blank_frame(experiment, repo):
    peaks = experiment["dir"] / "pf8.cxi"
    cmd = [
        sys.executable,
        "-m",
        "braggflow",
        "find-peaks",
        "--frames",
        str(experiment["frames"]),
        "--geometry",
        str(experiment["geometry"]),
        "--out",
        str(peaks),
    ]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = experiment["dir"] / "pf8.stream"
    _index(experiment, peaks, out, repo)
    score = score_frames(
        _found(out, N_FRAMES), experiment["truth_obj"], (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)
    )
    assert score.correct_orientation_fraction >= 0.85, score
    assert score.blank_frames_indexed == 0
