"""``braggflow train``: Stage 5: train the teacher (run under torchrun; FSDP2) -> checkpoints + exported model."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import InputError

NAME = "train"
HELP = "Stage 5: train the teacher (run under torchrun; FSDP2) -> checkpoints + exported model"

log = logging.getLogger("braggflow.train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument(
        "--model-params", help="JSON of the 'model' config section (rules pass this)"
    )
    parser.add_argument("--trainset", required=True, help="training-set HDF5 from fit-labels")
    parser.add_argument(
        "--checkpoint-dir", required=True, help="distributed checkpoints (resumed from)"
    )
    parser.add_argument("--out", required=True, help="exported model (.pt)")
    parser.add_argument("--arch", help="architecture JSON beside the model (default: <out>.json)")
    parser.add_argument("--metrics", help="per-step metrics (JSON lines)")
    parser.add_argument("--validation", help="held-out pixel precision/recall/F1 (JSON)")
    parser.add_argument("--curve", help="loss-curve PNG")
    parser.add_argument("--steps", type=int, help="override train.steps")


def _model_params(args: argparse.Namespace) -> dict:
    from braggflow.config import stage_params

    if args.model_params:
        return json.loads(args.model_params)
    return stage_params(None, args.config, "model")


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "train")
    if not Path(args.trainset).is_file():
        raise InputError(args.trainset, "training set not found", "run the fit_labels stage first")
    from braggflow.model.arch import arch_from_params
    from braggflow.training.config import TrainConfig
    from braggflow.training.data import TrainSet, trainset_identity
    from braggflow.training.distributed import init_distributed, shutdown
    from braggflow.training.loop import PREEMPT_EXIT_CODE, Preempted, TrainPaths, train
    from braggflow.training.task import SegmentationTask

    model_params = _model_params(args)
    arch = arch_from_params(model_params)
    cfg = TrainConfig.from_params(params, **({"steps": args.steps} if args.steps else {}))
    env = init_distributed()
    try:
        train_set = TrainSet(
            args.trainset, arch.input_size, 0, in_memory_max_gb=cfg.in_memory_max_gb
        )
        val_set = TrainSet(args.trainset, arch.input_size, 1, in_memory_max_gb=cfg.in_memory_max_gb)
        if env.is_main:
            log.info(
                "arch %s; %d training frames, %d held-out",
                json.dumps(arch.to_dict()),
                len(train_set),
                len(val_set),
            )
        paths = TrainPaths(
            checkpoint_dir=Path(args.checkpoint_dir),
            metrics=Path(args.metrics) if args.metrics else None,
            curve=Path(args.curve) if args.curve else None,
            model=Path(args.out),
            arch_json=Path(args.arch) if args.arch else None,
            validation=Path(args.validation) if args.validation else None,
        )
        identity = trainset_identity(args.trainset)
        task = SegmentationTask(cfg.focal_alpha, cfg.focal_gamma)
        try:
            summary = train(
                task,
                arch,
                train_set,
                cfg,
                paths,
                val_set,
                identity=identity,
                export_extra={"trainset": identity, "model_params": model_params},
                env=env,
            )
        except Preempted as stop:
            log.warning("%s", stop)
            return PREEMPT_EXIT_CODE
        if env.is_main:
            log.info("done: %s", json.dumps(summary, default=str))
        return 0
    finally:
        shutdown()
