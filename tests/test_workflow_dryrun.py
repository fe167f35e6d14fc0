"""Snakemake parses the workflow: the whole DAG on the default config and every experiment file."""

from __future__ import annotations

import subprocess

import pytest


def _snakemake(repo, *args):
    return subprocess.run(
        ["snakemake", "-n", "--cores", "1", *args], cwd=repo, capture_output=True, text=True
    )


def test_dry_run_default(repo):
    out = _snakemake(repo)
    assert out.returncode == 0, out.stderr[-3000:]


def test_full_dag_has_every_stage(repo):
    # --forceall: the whole DAG whether or not a demo run already left outputs
    out = _snakemake(
        repo,
        "--forceall",
        "results/demo/evaluate/summary.tsv",
        "results/demo/report/performance.tsv",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for rule in [
        "simulate_run",
        "find_peaks",
        "index",
        "peakdiff",
        "fit_labels",
        "train_teacher",
        "infer",
        "evaluate_run",
        "evaluate_summary",
        "performance_table",
    ]:
        assert rule in out.stdout, rule


@pytest.mark.parametrize("name", ["lysozyme_epix10k2m.yaml", "example_files.yaml"])
def test_dry_run_experiment_files(repo, name):
    out = _snakemake(repo, "--configfile", f"config/experiments/{name}")
    assert out.returncode == 0, out.stderr[-3000:]


def test_bad_config_fails_before_any_job(repo):
    out = _snakemake(repo, "--config", "seed=-1")
    assert out.returncode != 0
    assert "config key seed: bad value -1" in out.stdout + out.stderr
