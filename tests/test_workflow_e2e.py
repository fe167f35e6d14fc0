"""The whole workflow on a tiny simulated experiment: every stage, the Table 1 summary, the report.

Slow (a few minutes on 2 cores): it runs all eleven stages for real with Snakemake.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from braggflow.formats.cxi import read_cxi_peaks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(repo, tmp_path_factory):
    results = tmp_path_factory.mktemp("e2e") / "results"
    cmd = [
        "snakemake",
        "--cores",
        "2",
        "--configfile",
        "tests/data/tiny.yaml",
        "--config",
        f"results_dir={results}",
    ]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-4000:]
    yield repo, cmd, results / "e2e"
    shutil.rmtree(repo / "logs" / "e2e", ignore_errors=True)


def test_summary_has_one_row_per_method_with_consistent_arithmetic(finished_run):
    _, _, root = finished_run
    header, *rows = (root / "evaluate" / "summary.tsv").read_text().splitlines()
    names = header.split("\t")
    table = {r.split("\t")[0]: dict(zip(names, r.split("\t"), strict=True)) for r in rows}
    students = ["student_tiny_b4", "student_atto_b2"]
    assert sorted(table) == sorted(["peakfinder8", "teacher", *students])
    min_peaks = json.loads((root / "evaluate" / "teacher" / "r0001.json").read_text())[
        "min_peaks_for_hit"
    ]
    for method, row in table.items():
        hit_rate, index_rate = float(row["hit_rate"]), float(row["index_rate"])
        assert float(row["index_yield"]) == pytest.approx(hit_rate * index_rate, abs=1e-5)
        # cross-check against the method's own CXI peak lists
        tables = read_cxi_peaks(root / "peaks" / method / "r0001.cxi")
        assert int(row["frames"]) == len(tables) == 10
        assert int(row["hits"]) == sum(len(t) >= min_peaks for t in tables)
        assert 0 <= int(row["indexed"]) <= int(row["hits"])


def test_every_stage_left_its_outputs(finished_run):
    _, _, root = finished_run
    for rel in [
        "data/r0000.cxi",
        "peaks/peakfinder8/r0000.cxi",
        "index/peakfinder8/r0000.stream",
        "peakdiff/r0000.tsv",
        "labels/trainset.h5",
        "models/teacher.pt",
        "cache/teacher_logits.h5",
        "models/student_atto_b2.pt",
        "peaks/teacher/r0001.cxi",
        "infer/teacher/r0001.metrics.json",
        "evaluate/cell_histograms.png",
        "report/performance.tsv",
        "report/activation_maps.png",
        "report/versions.tsv",
    ]:
        assert (root / rel).is_file(), rel


def test_nothing_reruns_and_report_builds(finished_run):
    repo, cmd, root = finished_run
    dry = subprocess.run([*cmd, "-n"], cwd=repo, capture_output=True, text=True)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    report = root / "report.html"
    out = subprocess.run([*cmd, "--report", str(report)], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    html = report.read_text(errors="replace")
    for figure in ["cell_histograms.png", "activation_maps.png", "summary.tsv", "loss.png"]:
        assert figure in html, figure
