"""The CLI lists every stage and starts fast (heavy imports only inside commands)."""

from __future__ import annotations

import subprocess
import sys
import time

STAGES = [
    "simulate",
    "find-peaks",
    "index",
    "peakdiff",
    "fit-labels",
    "train",
    "cache-teacher",
    "distill",
    "infer",
    "evaluate",
    "report",
    "model-info",
]


def test_help_lists_every_stage_and_is_fast():
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "braggflow", "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert out.returncode == 0
    for stage in STAGES:
        assert stage in out.stdout
    assert elapsed < 2.0, f"braggflow --help took {elapsed:.2f} s"


def test_help_imports_no_heavy_package():
    code = (
        "import sys, braggflow.cli as c; c.build_parser();"
        "heavy = [m for m in ('torch','timm','ray','cctbx','numba','scipy','h5py','matplotlib') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
