"""Distributed checkpoints (``torch.distributed.checkpoint``) with exact resume.

Layout: ``<dir>/step_00000123/`` holds the DCP shards of ``{"model", "optim"}`` (any world size
can load them), ``trainer_rank<r>.pt`` per rank (step, scheduler, sampler position, RNG states;
tensors and primitives only, loaded with ``weights_only=True``) and ``meta.json`` (written last:
a folder without it is incomplete and ignored). Saving writes to ``.tmp-step_*`` and renames.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from braggflow.atomic import atomic_write_json
from braggflow.training.distributed import DistEnv, barrier

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npst["key"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _step_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / "meta.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(root: str | Path) -> Path | None:
    dirs = _step_dirs(Path(root))
    return dirs[-1] if dirs else None


def read_meta(path: Path) -> dict[str, Any]:
    return json.loads((path / "meta.json").read_text())


def matching_checkpoint(root: str | Path, fingerprint: str) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint of this run (same fingerprint), and those of other runs."""
    mine, stale = [], []
    for path in _step_dirs(Path(root)):
        (mine if read_meta(path).get("fingerprint") == fingerprint else stale).append(path)
    return (mine[-1] if mine else None), stale


def save_checkpoint(
    root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: Mapping[str, Any],
    env: DistEnv,
    meta: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Collective: every rank calls it. Returns the final folder."""
    root = Path(root)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, exist_ok=True)
    barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(dict(trainer_state), tmp / f"trainer_rank{env.rank}.pt")
    barrier()
    if env.is_main:
        atomic_write_json(tmp / "meta.json", {"step": step, "world_size": env.world_size, **meta})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in _step_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint saved: %s", final)
    barrier()
    return final


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, env: DistEnv
) -> dict[str, Any]:
    """Collective: restores model and optimiser in place; returns this rank's trainer state."""
    path = Path(path)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    model_state = {"model": model_sd}
    dcp.load(model_state, checkpoint_id=str(path))  # strict: every weight must be there
    # Parameters that never had a gradient (e.g. frozen ones) have no optimiser state on disk;
    # they keep the freshly initialised (zero) state.
    optim_state = {"optim": optim_sd}
    dcp.load(
        optim_state, checkpoint_id=str(path), planner=DefaultLoadPlanner(allow_partial_load=True)
    )
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_state["model"],
        optim_state_dict=optim_state["optim"],
    )
    own = path / f"trainer_rank{env.rank}.pt"
    fallback = path / "trainer_rank0.pt"  # world size changed: sampler/scheduler are global
    trainer = torch.load(own if own.is_file() else fallback, map_location="cpu", weights_only=True)
    if not own.is_file():
        log.warning(
            "checkpoint %s has no state for rank %d; RNG streams restart from rank 0's",
            path,
            env.rank,
        )
    return trainer
