"""``braggflow distill``: Stage 7: distil a student from cached teacher logits (run under torchrun)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from braggflow.commands._common import add_params_args, params_of

NAME = "distill"
HELP = "Stage 7: distil a student from cached teacher logits (run under torchrun)"

log = logging.getLogger("braggflow.distill")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument("--student", required=True, help="a name from distill.students")
    parser.add_argument(
        "--teacher", required=True, help="exported teacher (.pt) the cache must match"
    )
    parser.add_argument("--cache", required=True, help="teacher-logit cache from cache-teacher")
    parser.add_argument("--trainset", required=True, help="training-set HDF5 from fit-labels")
    parser.add_argument(
        "--checkpoint-dir", required=True, help="distributed checkpoints (resumed from)"
    )
    parser.add_argument("--out", required=True, help="exported student (.pt)")
    parser.add_argument("--arch", help="architecture JSON beside the model (default: <out>.json)")
    parser.add_argument("--metrics", help="per-step metrics (JSON lines)")
    parser.add_argument(
        "--validation", help="held-out pixel precision/recall/F1 with the teacher's F1 (JSON)"
    )
    parser.add_argument("--curve", help="loss-curve PNG")
    parser.add_argument("--steps", type=int, help="override distill.steps")


def train_params(params: dict) -> dict:
    """The keys of the ``distill`` section that the shared loop's TrainConfig knows."""
    from braggflow.training.config import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    return {k: v for k, v in params.items() if k in known}


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "distill")
    from braggflow.atomic import atomic_write_json
    from braggflow.distill.cache import TeacherCache
    from braggflow.distill.loss import DistillLossConfig
    from braggflow.distill.objective import DistillTask
    from braggflow.distill.students import find_student, student_arch
    from braggflow.distill.validation import teacher_scores
    from braggflow.training.config import TrainConfig
    from braggflow.training.data import TrainSet, trainset_identity
    from braggflow.training.distributed import init_distributed, shutdown
    from braggflow.training.loop import PREEMPT_EXIT_CODE, Preempted, TrainPaths, train

    entry = find_student(params.get("students", []), args.student)
    loss_cfg = DistillLossConfig.from_params(params)
    overrides = {"reshard_after_forward": False}  # ZeRO-2 style for students (2.2.3.1)
    own_steps = (params.get("student_steps") or {}).get(args.student)
    if own_steps:  # a student's own schedule length (smaller students may need longer)
        overrides["steps"] = int(own_steps)
    if args.steps:
        overrides["steps"] = args.steps
    cfg = TrainConfig.from_params(train_params(params), **overrides)
    # refuse a stale or misaligned cache before any process group or model exists
    cache = TeacherCache(args.cache, teacher_path=args.teacher, trainset_path=args.trainset)
    teacher_arch = cache.arch() or {}
    input_size = int(cache.attrs.get("input_size", teacher_arch.get("input_size", 0)))
    arch = student_arch(entry, input_size)
    env = init_distributed()
    try:
        in_memory = cache.load_into_memory(cfg.in_memory_max_gb)
        train_set = TrainSet(
            args.trainset,
            input_size,
            0,
            extra_fields={"teacher_logits": cache.read},
            in_memory_max_gb=cfg.in_memory_max_gb,
        )
        val_set = TrainSet(args.trainset, input_size, 1, in_memory_max_gb=cfg.in_memory_max_gb)
        if env.is_main:
            log.info(loss_cfg.describe())
            log.info(
                "student %s: arch %s; teacher %s (sha256 %s); cache %s (%s); "
                "%d training frames, %d held-out",
                args.student,
                json.dumps(arch.to_dict()),
                args.teacher,
                cache.teacher_sha256[:16],
                args.cache,
                "in memory" if in_memory else "read per batch",
                len(train_set),
                len(val_set),
            )
        teacher = teacher_scores(cache, val_set)
        identity = {**trainset_identity(args.trainset), "teacher_sha256": cache.teacher_sha256}
        paths = TrainPaths(
            checkpoint_dir=Path(args.checkpoint_dir),
            metrics=Path(args.metrics) if args.metrics else None,
            curve=Path(args.curve) if args.curve else None,
            model=Path(args.out),
            arch_json=Path(args.arch) if args.arch else None,
            validation=None,  # written below, with the teacher's F1 beside the student's
        )
        try:
            summary = train(
                DistillTask(loss_cfg, cache.teacher_sha256),
                arch,
                train_set,
                cfg,
                paths,
                val_set,
                identity=identity,
                export_extra={
                    "student": dict(entry),
                    "teacher": {"path": str(args.teacher), "sha256": cache.teacher_sha256},
                    "trainset": identity,
                },
                env=env,
            )
        except Preempted as stop:
            log.warning("%s", stop)
            return PREEMPT_EXIT_CODE
        student = summary.get("validation", {})
        result = {
            **student,
            "steps": summary["steps"],
            "arch": arch.name,
            "split": 1,
            "student": args.student,
            "teacher_pixel_f1": teacher["f1"],
            "teacher_precision": teacher["precision"],
            "teacher_recall": teacher["recall"],
            "f1_ratio_to_teacher": (
                round(student["f1"] / teacher["f1"], 6)
                if student.get("f1") is not None and teacher.get("f1")
                else None
            ),
            "teacher_sha256": cache.teacher_sha256,
        }
        if env.is_main:
            if args.validation:
                atomic_write_json(args.validation, result)
            log.info("done: %s", json.dumps(result, default=str))
        return 0
    finally:
        shutdown()
