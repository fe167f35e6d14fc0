"""The one training loop shared by teacher pretraining and student distillation.

``train(task, arch, train_set, cfg, paths, ...)`` runs under torchrun (or as a plain process):
seeded model build -> optional activation checkpointing -> FSDP2 ``fully_shard`` per backbone stage
and BiFPN block, then the root -> AdamW, linear warm-up + cosine decay, gradient accumulation with
gradient sync only on the last micro-batch, grad-norm clipping -> DCP checkpoints every
``cfg.checkpoint_every`` steps and on SIGTERM/SIGUSR1 (then ``Preempted`` is raised) -> exact resume
from the newest complete checkpoint in ``paths.checkpoint_dir`` whose identity (arch, config, task,
training set) matches -> per-step JSONL -> export (full state dict, rank 0) -> validation on the
held-out set -> loss-curve PNG.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braggflow.atomic import atomic_write_json
from braggflow.model.arch import ModelArch
from braggflow.training.checkpoint import (
    load_checkpoint,
    matching_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from braggflow.training.config import TrainConfig
from braggflow.training.data import GlobalBatchSampler, TrainSet
from braggflow.training.distributed import (
    DistEnv,
    all_reduce_,
    apply_activation_checkpointing,
    barrier,
    init_distributed,
    mixed_precision_dtype,
    set_cpu_threads,
    shard_model,
)
from braggflow.training.metrics import MetricsLog, plot_loss_curve
from braggflow.training.schedule import lr_factor
from braggflow.training.task import Task
from braggflow.training.validation import validate

log = logging.getLogger(__name__)

PREEMPT_EXIT_CODE = 143  # 128 + SIGTERM: "stopped cleanly after a checkpoint, resume me"


class Preempted(Exception):
    """Raised after the checkpoint that a SIGTERM/SIGUSR1 asked for has been written."""

    def __init__(self, step: int, path: Path) -> None:
        super().__init__(f"stopped by a signal at step {step}; checkpoint {path}; rerun to resume")
        self.step, self.path = step, path


@dataclass(frozen=True)
class TrainPaths:
    """Where a run writes; ``None`` skips that output."""

    checkpoint_dir: Path
    metrics: Path | None = None
    curve: Path | None = None
    model: Path | None = None
    arch_json: Path | None = None
    validation: Path | None = None


class _StopFlag:
    """SIGTERM/SIGUSR1 set a flag; the loop checkpoints at the next step boundary."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _to_device(batch: Mapping[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True)
        for k, v in batch.items()
    }


def _scalar(v: Any) -> float:
    return float(v.detach().float().item()) if isinstance(v, torch.Tensor) else float(v)


def train(
    task: Task,
    arch: ModelArch,
    train_set: TrainSet,
    cfg: TrainConfig,
    paths: TrainPaths,
    val_set: TrainSet | None = None,
    init_state_dict: Mapping[str, torch.Tensor] | None = None,
    identity: Mapping[str, Any] | None = None,
    export_extra: Mapping[str, Any] | None = None,
    env: DistEnv | None = None,
) -> dict[str, Any]:
    """Run (or resume) one training run; returns a summary dict (same on every rank).

    ``init_state_dict`` seeds the weights of a fresh run (e.g. a pretrained backbone);
    ``identity`` (JSON-able: e.g. the training set's checksum) joins arch, config and task in
    the fingerprint that a checkpoint must match to be resumed; ``export_extra`` goes into the
    exported model's JSON.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from braggflow.model.export import export_model
    from braggflow.model.peaknet import build_model

    env = env or init_distributed()
    threads = set_cpu_threads(env, cfg.num_threads)
    describe = task.describe() if hasattr(task, "describe") else {"task": type(task).__name__}
    fingerprint = json.dumps(
        {
            "arch": arch.to_dict(),
            "train": cfg.identity(),
            "task": describe,
            "identity": dict(identity or {}),
        },
        sort_keys=True,
        default=str,
    )
    if env.is_main:
        log.info(
            "world %d (%s, %s), %d CPU threads/rank; task %s",
            env.world_size,
            env.backend,
            env.device,
            threads,
            describe,
        )
        log.info("config %s", json.dumps(cfg.to_dict(), sort_keys=True))

    # 1. model: identical seeded init on every rank, then sharded
    torch.manual_seed(cfg.seed)
    model = build_model(arch)
    if init_state_dict is not None:
        model.load_state_dict(dict(init_state_dict))
    if cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    shard_model(
        model, env, mixed_precision_dtype(env, cfg.mixed_precision), cfg.reshard_after_forward
    )

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.lr, cfg.min_lr)
    )
    sampler = GlobalBatchSampler(len(train_set), cfg.batch_size, env.world_size, env.rank, cfg.seed)
    metrics = MetricsLog(paths.metrics if env.is_main else None)

    # 2. resume
    step = 0
    ckpt, stale = matching_checkpoint(paths.checkpoint_dir, fingerprint)
    if env.is_main:
        for old in stale:  # another run's (arch/config/task/data changed): never resumed
            log.warning("removing checkpoint %s of a different run", old)
            shutil.rmtree(old, ignore_errors=True)
        for partial in Path(paths.checkpoint_dir).glob(".tmp-step_*"):  # a save cut short by a kill
            shutil.rmtree(partial, ignore_errors=True)
    barrier()
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, optimizer, env)
        step = int(state["step"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        if env.is_main:
            log.info("resumed from %s at step %d", ckpt, step)
    elif env.is_main and paths.metrics and Path(paths.metrics).exists():
        Path(paths.metrics).unlink()
    metrics.truncate(step)

    def checkpoint(at: int) -> Path:
        trainer_state = {
            "step": at,
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.state_dict(),
            "rng": rng_state(),
        }
        return save_checkpoint(
            paths.checkpoint_dir,
            at,
            model,
            optimizer,
            trainer_state,
            env,
            {"fingerprint": fingerprint},
            keep=cfg.keep_checkpoints,
        )

    # 3. loop
    stop = _StopFlag()
    stop.install()
    flag = torch.zeros(1, dtype=torch.int32, device=env.device)
    global_batch = cfg.batch_size * env.world_size * cfg.grad_accum
    try:
        model.train()
        while step < cfg.steps:
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            for micro in range(cfg.grad_accum):
                model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)
                positions, codes = sampler.next_with_codes()
                batch = train_set.batch(positions, codes if cfg.augment else None)
                batch = _to_device(batch, env.device)
                loss, extra = task.loss(model, batch)
                (loss / cfg.grad_accum).backward()
                for k, v in {"loss": loss, **extra}.items():
                    sums[k] = sums.get(k, 0.0) + _scalar(v) / cfg.grad_accum
            if cfg.clip_grad_norm > 0:
                norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), cfg.clip_grad_norm, foreach=True
                )
            else:
                norm = torch.nn.utils.get_total_norm(
                    [p.grad for p in model.parameters() if p.grad is not None]
                )
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            keys = sorted(sums)
            avg = all_reduce_(
                torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=env.device), "sum"
            )
            avg = (avg / env.world_size).cpu().tolist()
            dt = time.perf_counter() - t0
            metrics.write(
                {
                    "step": step,
                    **dict(zip(keys, avg, strict=True)),
                    "lr": lr,
                    "grad_norm": float(norm),
                    "epoch": round(sampler.epoch, 4),
                    "step_s": round(dt, 4),
                    "samples_per_s": round(global_batch / dt, 3),
                }
            )
            flag.fill_(stop.signum)
            all_reduce_(flag, "max")
            if int(flag.item()):
                path = checkpoint(step)
                raise Preempted(step, path)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint(step)  # the last one lets a rerun go straight to export
    finally:
        stop.restore()

    # 4. export, validation, curve
    full_sd = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    summary: dict[str, Any] = {
        "steps": step,
        "world_size": env.world_size,
        "global_batch": global_batch,
    }
    if env.is_main and paths.model:
        export_model(
            full_sd,
            arch,
            paths.model,
            paths.arch_json,
            extra={
                "training": {
                    "steps": step,
                    "task": describe,
                    "train": cfg.to_dict(),
                    **dict(export_extra or {}),
                }
            },
        )
    if val_set is not None:
        result = validate(model, val_set, env, cfg.val_batch_size)
        summary["validation"] = result
        if env.is_main and paths.validation:
            atomic_write_json(
                paths.validation, {**result, "steps": step, "arch": arch.name, "split": 1}
            )
    if env.is_main and paths.curve and paths.metrics:
        plot_loss_curve(
            paths.metrics, paths.curve, title=f"{arch.name}: {describe.get('task', '')}"
        )
    return summary
