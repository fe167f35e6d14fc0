"""torchrun FSDP2 training on CPU (gloo): loss falls, 2 ranks == 1 rank, exact resume after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from braggflow.training.synthetic import write_synthetic_trainset

pytestmark = pytest.mark.slow

STEPS = 10
TRAIN = {
    "steps": STEPS,
    "warmup_steps": 2,
    "lr": 3e-3,
    "checkpoint_every": 100,
    "num_threads": 1,
    "augment": True,
}
MODEL = {"preset": "tiny-test"}


def _cmd(ts: Path, out: Path, nproc: int, batch_size: int) -> list[str]:
    params = json.dumps({**TRAIN, "batch_size": batch_size})
    train = [
        "braggflow", "train", "--params", params, "--model-params", json.dumps(MODEL),
        "--trainset", str(ts), "--checkpoint-dir", str(out / "ckpt"), "--out", str(out / "model.pt"),
        "--metrics", str(out / "metrics.jsonl"), "--validation", str(out / "validation.json"),
        "--curve", str(out / "loss.png"),
    ]  # fmt: skip
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--no-python",
        *train,
    ]


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _run(ts: Path, out: Path, nproc: int, batch_size: int) -> None:
    proc = subprocess.run(
        _cmd(ts, out, nproc, batch_size), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["loss"] for r in rows]


def _weights(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def trainset(tmp_path_factory) -> Path:
    return write_synthetic_trainset(
        tmp_path_factory.mktemp("ts") / "trainset.h5", n=16, shape=(60, 64), held_out=4
    )


@pytest.fixture(scope="module")
def two_rank_run(trainset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_rank")
    _run(trainset, out, nproc=2, batch_size=2)
    return out


def test_two_ranks_match_one_rank_and_loss_falls(trainset, two_rank_run, tmp_path):
    _run(trainset, tmp_path, nproc=1, batch_size=4)  # same global batch (4) on one rank
    one, two = _losses(tmp_path), _losses(two_rank_run)
    assert len(one) == len(two) == STEPS
    np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-6)
    assert np.mean(two[-3:]) < 0.6 * two[0], two
    for out in (tmp_path, two_rank_run):
        val = json.loads((out / "validation.json").read_text())
        assert val["frames"] == 4 and val["tp"] + val["fn"] > 0
        assert (out / "loss.png").stat().st_size > 1000
        assert json.loads((out / "model.json").read_text())["arch"]["name"] == "tiny-test"


def test_sigterm_checkpoint_then_resume_gives_identical_weights(trainset, two_rank_run, tmp_path):
    proc = subprocess.Popen(
        _cmd(trainset, tmp_path, nproc=2, batch_size=2),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= STEPS // 2 - 1:
            proc.send_signal(signal.SIGTERM)  # what SLURM does before pre-emption
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, "the run finished before the signal arrived"
    assert "stopped by a signal" in err
    assert not (tmp_path / "model.pt").exists()
    done = sorted((tmp_path / "ckpt").glob("step_*"))
    assert done, err[-2000:]
    stopped_at = int(done[-1].name.split("_")[1])
    assert STEPS // 2 - 1 <= stopped_at < STEPS

    _run(trainset, tmp_path, nproc=2, batch_size=2)  # resume to STEPS
    assert _losses(tmp_path) == _losses(two_rank_run)
    resumed, straight = _weights(tmp_path / "model.pt"), _weights(two_rank_run / "model.pt")
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert np.array_equal(resumed[key].numpy(), straight[key].numpy()), key
