"""Stages 6-7 end to end on a tiny exported teacher: the cache against a fresh teacher forward,
a stale cache refused by ``braggflow distill``, and 2-rank torchrun (gloo, CPU) distillation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

STEPS = 4


def _params(**extra):
    from braggflow.config import validate_config

    params = validate_config({})["distill"]
    params.update(
        students=[{"name": "student_test", "preset": "tiny-test", "bifpn_blocks": 2}],
        steps=STEPS,
        batch_size=2,
        grad_accum=2,
        lr=1e-3,
        checkpoint_every=2,
        cache_batch_size=5,
        **extra,
    )
    return params


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """A synthetic trainset, an exported tiny teacher and its cache (made by the CLI command)."""
    torch = pytest.importorskip("torch")
    from braggflow.cli import main as cli
    from braggflow.model.arch import get_preset
    from braggflow.model.export import export_model
    from braggflow.model.peaknet import build_model
    from braggflow.training.synthetic import write_synthetic_trainset

    d = tmp_path_factory.mktemp("distill")
    write_synthetic_trainset(d / "trainset.h5", n=12, shape=(60, 64), held_out=3)
    torch.manual_seed(0)
    arch = get_preset("tiny-test")
    export_model(build_model(arch), arch, d / "teacher.pt")
    params = json.dumps(_params())
    rc = cli(
        ["cache-teacher", "--params", params, "--model", str(d / "teacher.pt")]
        + ["--trainset", str(d / "trainset.h5"), "--out", str(d / "cache.h5")]
    )
    assert rc == 0
    return d


def test_cache_equals_fresh_teacher_forward(stage):
    import h5py
    import torch

    from braggflow.distill.cache import TeacherCache
    from braggflow.model.export import load_exported
    from braggflow.model.preprocess import preprocess

    cache = TeacherCache(stage / "cache.h5", teacher_path=stage / "teacher.pt")
    model, arch = load_exported(stage / "teacher.pt")
    with h5py.File(stage / "trainset.h5") as fh:
        images, valid = fh["images"][()], fh["valid"][()].astype(bool)
    x, _ = preprocess(images, valid, arch["input_size"])
    with torch.no_grad():
        fresh = model(torch.from_numpy(x[:, None])).numpy()
    cached = cache.logits(slice(None))
    assert cached.dtype == np.float16 and cached.shape == fresh.shape == (12, 2, 64, 64)
    # float16 keeps 11 significant bits: relative error <= 2^-11, plus subnormal spacing
    np.testing.assert_allclose(cached.astype(np.float32), fresh, rtol=2**-10, atol=1e-6)
    order = np.array([7, 2, 11, 2])  # batch reads in any order are rows of the trainset
    np.testing.assert_array_equal(cache.read(order), cached[order])


def test_distill_refuses_a_stale_cache(stage, capsys):
    import torch

    from braggflow.cli import main as cli
    from braggflow.model.arch import get_preset
    from braggflow.model.export import export_model
    from braggflow.model.peaknet import build_model

    torch.manual_seed(1)  # a retrained teacher: different weights, different checksum
    arch = get_preset("tiny-test")
    export_model(build_model(arch), arch, stage / "teacher_v2.pt")
    rc = cli(
        ["distill", "--params", json.dumps(_params()), "--student", "student_test"]
        + ["--teacher", str(stage / "teacher_v2.pt"), "--cache", str(stage / "cache.h5")]
        + ["--trainset", str(stage / "trainset.h5"), "--checkpoint-dir", str(stage / "ck2")]
        + ["--out", str(stage / "never.pt")]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert "stale teacher cache" in err and "teacher_v2.pt" in err
    assert "rerun 'braggflow cache-teacher'" in err
    assert not (stage / "never.pt").exists()


def test_torchrun_two_rank_cpu_distillation(stage):
    out = stage / "student"
    cmd = [
        sys.executable,
        "-m",
        "braggflow.launch",
        "torchrun",
        "--nproc-per-node",
        "2",
        "--",
        "braggflow",
        "distill",
        "--params",
        json.dumps(_params()),
        "--student",
        "student_test",
        "--teacher",
        str(stage / "teacher.pt"),
        "--cache",
        str(stage / "cache.h5"),
        "--trainset",
        str(stage / "trainset.h5"),
        "--checkpoint-dir",
        str(out / "checkpoints"),
        "--out",
        str(out / "student_test.pt"),
        "--metrics",
        str(out / "metrics.jsonl"),
        "--validation",
        str(out / "validation.json"),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    # the loss weights and T are logged once, by rank 0 only
    assert run.stderr.count("0.4 * T^2 * KL(T=2.0)") == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert {"loss", "mse", "kl", "focal_teacher", "grad_norm"} <= set(r)
        assert np.isfinite(r["loss"]) and r["loss"] > 0
    # ZeRO-2 sharding and the teacher's checksum are part of the run's identity
    meta = json.loads(next((out / "checkpoints").glob("step_*/meta.json")).read_text())
    fingerprint = json.loads(meta["fingerprint"])
    assert fingerprint["train"]["reshard_after_forward"] is False
    assert fingerprint["task"]["teacher_sha256"] == fingerprint["identity"]["teacher_sha256"]
    val = json.loads((out / "validation.json").read_text())
    assert val["student"] == "student_test" and val["frames"] == 3
    assert 0 <= val["teacher_pixel_f1"] <= 1
    assert val["f1_ratio_to_teacher"] == pytest.approx(val["f1"] / val["teacher_pixel_f1"], 1e-4)
    arch = json.loads((out / "student_test.json").read_text())
    assert arch["arch"]["name"] == "student_test" and arch["arch"]["bifpn_blocks"] == 2
    assert arch["training"]["teacher"]["sha256"] == fingerprint["identity"]["teacher_sha256"]


def test_a_students_own_steps_replace_distill_steps(stage):
    # a process of its own: an in-process training run leaves torch state behind that made a
    # later test's freshly initialised weights non-finite
    out = stage / "short"
    params = _params()
    params["student_steps"] = {"student_test": 2}  # distill.steps is 4
    cmd = (
        [sys.executable, "-m", "braggflow.cli", "distill", "--params", json.dumps(params)]
        + ["--student", "student_test", "--teacher", str(stage / "teacher.pt")]
        + ["--cache", str(stage / "cache.h5"), "--trainset", str(stage / "trainset.h5")]
        + ["--checkpoint-dir", str(out / "ckpt"), "--out", str(out / "s.pt")]
        + ["--metrics", str(out / "metrics.jsonl")]
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
