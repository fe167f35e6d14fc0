"""Evaluation on a simulated run: truth-perfect, wrong and false-hit peak lists (issue 8)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from braggflow.evaluation.run import evaluate_run
from braggflow.formats.cxi import PeakTable, write_cxi_peaks
from braggflow.formats.stream import Chunk, Stream, write_stream
from braggflow.simulate import quick_experiment
from braggflow.simulate.truth import read_truth

PARAMS = {"min_peaks_for_hit": 10, "match_distance_px": 2.0, "max_orientation_error_deg": 1.0}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    exp = quick_experiment(out, n_frames=8, seed=3, blank_fraction=0.25)
    truth = read_truth(exp["truth"], footprint=False)
    assert (~truth.has_crystal).any(), "the fixture needs a blank frame"
    return exp, truth


def truth_tables(truth, shift_px=0.0):
    tables = []
    for i in range(truth.n_frames):
        r = truth.reflections_in(i, visible_only=True)
        tables.append(PeakTable(fs=r["fs"] + shift_px, ss=r["ss"], intensity=r["photons"]))
    return tables


def write_inputs(tmp_path, exp, tables, name):
    peaks = tmp_path / f"{name}.cxi"
    write_cxi_peaks(peaks, tables, frames_path=exp["frames"])
    stream = tmp_path / f"{name}.stream"
    chunks = [
        Chunk(filename=str(exp["frames"]), event=f"//{i}", serial=i + 1) for i in range(len(tables))
    ]
    write_stream(stream, Stream(chunks=chunks))
    return peaks, stream


def test_truth_peaks_score_perfect_and_shifted_peaks_score_lower(tmp_path, experiment):
    exp, truth = experiment
    good = evaluate_run(
        "truth",
        "r0000",
        *write_inputs(tmp_path, exp, truth_tables(truth), "good"),
        PARAMS,
        exp["geometry"],
        exp["truth"],
    )
    bad = evaluate_run(
        "shifted",
        "r0000",
        *write_inputs(tmp_path, exp, truth_tables(truth, 5.0), "bad"),
        PARAMS,
        exp["geometry"],
        exp["truth"],
    )
    assert good["truth"]["peak_precision"] > 0.99 and good["truth"]["peak_recall"] > 0.99
    assert bad["truth"]["peak_precision"] < good["truth"]["peak_precision"] - 0.5
    assert good["index_yield"] == pytest.approx(good["hit_rate"] * good["index_rate"])
    assert good["indexed"] == 0  # the stream holds no crystal


def test_blank_frame_called_a_hit_is_a_false_hit(tmp_path, experiment):
    exp, truth = experiment
    tables = truth_tables(truth)
    blank = int(np.flatnonzero(~truth.has_crystal)[0])
    rng = np.random.default_rng(0)
    tables[blank] = PeakTable(fs=rng.uniform(10, 50, 15), ss=rng.uniform(10, 50, 15))
    result = evaluate_run(
        "noisy",
        "r0000",
        *write_inputs(tmp_path, exp, tables, "noisy"),
        PARAMS,
        exp["geometry"],
        exp["truth"],
    )
    assert result["truth"]["false_hits"] == 1
    assert result["truth"]["blank_frames"] == int((~truth.has_crystal).sum())


def test_cli_run_and_summary(tmp_path, experiment):
    exp, truth = experiment
    peaks, stream = write_inputs(tmp_path, exp, truth_tables(truth), "cli")
    metrics = tmp_path / "m.json"
    base = [sys.executable, "-m", "braggflow", "evaluate"]
    params = json.dumps(PARAMS)
    subprocess.run(
        [
            *base,
            "run",
            "--params",
            params,
            "--method",
            "teacher",
            "--run",
            "r0000",
            "--peaks",
            str(peaks),
            "--stream",
            str(stream),
            "--geometry",
            str(exp["geometry"]),
            "--truth",
            str(exp["truth"]),
            "--out",
            str(metrics),
        ],
        check=True,
    )
    summary = tmp_path / "summary.tsv"
    subprocess.run(
        [
            *base,
            "summary",
            "--params",
            params,
            "--metrics",
            str(metrics),
            "--out",
            str(summary),
            "--plot-cells",
            str(tmp_path / "cells.png"),
        ],
        check=True,
    )
    header, row = summary.read_text().splitlines()
    values = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    n_hits = sum(len(t) >= 10 for t in truth_tables(truth))
    assert values["method"] == "teacher" and int(values["hits"]) == n_hits
    assert float(values["index_yield"]) == pytest.approx(
        float(values["hit_rate"]) * float(values["index_rate"])
    )
    assert (tmp_path / "cells.png").stat().st_size > 1000
    assert json.loads(summary.with_suffix(".json").read_text())["methods"][0]["method"] == "teacher"
