"""fit-labels on a real local Ray (one instance shared by this module): same labels as in-process,
and a worker killed mid-run is retried without changing a byte of the labels."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from braggflow.fitting.trainset import read_trainset

standin = pytest.importorskip("test_fit_labels_data")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    from braggflow.fitting.distributed import start_ray

    started = start_ray(num_cpus=2)
    yield
    if started:
        import ray

        ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from braggflow.cli import main

    root = tmp_path_factory.mktemp("flray")
    p = standin.standin_inputs(root, n_frames=8, seed=21)
    sel = root / "r0000.tsv"
    assert (
        main(
            [
                "peakdiff",
                "--peaks",
                str(p["peaks"]),
                "--stream",
                str(p["stream"]),
                "--frames",
                str(p["frames"]),
                "--geometry",
                str(p["geometry"]),
                "--out",
                str(sel),
            ]
        )
        == 0
    )
    return {**p, "selection": sel}


def _run(inputs, out, params):
    from braggflow.cli import main

    args = [
        "fit-labels",
        "--params",
        json.dumps(params),
        "--selections",
        str(inputs["selection"]),
        "--streams",
        str(inputs["stream"]),
        "--frames",
        str(inputs["frames"]),
        "--geometry",
        str(inputs["geometry"]),
        "--out",
        str(out),
        "--summary",
        str(out.with_suffix(".json")),
        "--num-cpus",
        "2",
    ]
    assert main(args) == 0
    return read_trainset(out), json.loads(out.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def serial_result(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "trainset.h5"
    return _run(inputs, out, {"executor": "serial"})


def _same(a, b):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["images"], b["images"])
    assert a["frames"]["event"].tolist() == b["frames"]["event"].tolist()
    for key in ("fs", "ss", "amplitude", "status", "frame"):
        np.testing.assert_array_equal(a["fits"][key], b["fits"][key])


def test_ray_stage_matches_in_process_in_submission_order(
    ray_local, inputs, serial_result, tmp_path
):
    # one frame per batch, at most 2 in flight: many tasks finishing out of order
    ts, summary = _run(inputs, tmp_path / "t.h5", {"batch_frames": 1, "max_in_flight": 2})
    assert summary["executor"] == "ray" and summary["batches"] == ts["labels"].shape[0]
    _same(ts, serial_result[0])


def test_killed_worker_is_retried_and_labels_are_identical(
    ray_local, inputs, serial_result, tmp_path, monkeypatch
):
    from braggflow.fitting.distributed import KILL_ONCE_ENV

    flag = tmp_path / "kill-a-worker"
    flag.write_text("the first task that finds this file SIGKILLs its worker")
    monkeypatch.setenv(KILL_ONCE_ENV, str(flag))
    ts, summary = _run(inputs, tmp_path / "t.h5", {"batch_frames": 2, "max_retries": 3})
    assert not flag.exists(), "no worker was killed"
    assert summary["frames_failed"] == []
    _same(ts, serial_result[0])
    assert os.environ[KILL_ONCE_ENV] == str(flag)
