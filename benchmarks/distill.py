"""Distillation step time from the teacher-logit cache vs. running the teacher live.

Both runs use the shared training loop (``braggflow.training.loop.train``) with the same student,
data, batch and schedule; only the source of the teacher's logits differs: ``cached_step_s``
reads them from the float16 cache (stage 6), ``live_teacher_step_s`` runs the teacher's forward
(no grad) inside every micro-step. Also timed: building the cache (``cache_frames_per_s``).
Step times are the fastest of the timed steps (robust against other load on a shared machine);
the medians are reported beside them (``*_median``).

    uv run python benchmarks/distill.py --out benchmarks/results/distill.json [--quick]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402


class LiveTeacherTask:
    """The distillation objective with the teacher run live (what the cache avoids)."""

    def __init__(self, teacher: Any, loss_cfg: Any) -> None:
        self.teacher, self.cfg = teacher, loss_cfg

    def describe(self) -> dict[str, Any]:
        return {"task": "distill-live-teacher"}

    def loss(self, model: Any, batch: dict) -> tuple[Any, dict]:
        import torch

        from braggflow.distill.loss import distillation_loss

        with torch.no_grad():
            teacher_logits = self.teacher(batch["image"])
        total, parts = distillation_loss(
            model(batch["image"]), teacher_logits, self.cfg, batch["valid"], batch["label"]
        )
        parts.pop("total")
        return total, parts


def _step_times(metrics: Path, skip: int) -> list[float]:
    import json

    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r["step_s"] for r in rows[skip:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write the figures to")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for smoke tests)")
    parser.add_argument("--teacher", help="an exported teacher (default: random demo-teacher)")
    parser.add_argument("--trainset", help="a training set (default: synthetic, demo-sized)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run (+1 warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from braggflow.config import validate_config
    from braggflow.distill.cache import TeacherCache, cache_teacher
    from braggflow.distill.loss import DistillLossConfig
    from braggflow.distill.objective import DistillTask
    from braggflow.distill.students import student_arch
    from braggflow.model.arch import get_preset
    from braggflow.model.export import export_model, load_exported
    from braggflow.model.peaknet import build_model
    from braggflow.training.config import TrainConfig
    from braggflow.training.data import TrainSet
    from braggflow.training.distributed import init_distributed, shutdown
    from braggflow.training.loop import TrainPaths, train
    from braggflow.training.synthetic import write_synthetic_trainset

    params = validate_config({})["distill"]
    students = params["students"][:1] if args.quick else params["students"]
    steps = 2 if args.quick else args.steps
    work = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    trainset = Path(args.trainset) if args.trainset else work / "trainset.h5"
    if not args.trainset:
        side = 120 if args.quick else 240
        write_synthetic_trainset(trainset, n=16 if args.quick else 40, shape=(side, side))
    teacher_path = Path(args.teacher) if args.teacher else work / "teacher.pt"
    if not args.teacher:
        arch = get_preset("demo-teacher")
        if args.quick:
            arch = arch.replace(input_size=128)
        torch.manual_seed(0)
        export_model(build_model(arch), arch, teacher_path)

    env = init_distributed()
    t0 = time.perf_counter()
    summary = cache_teacher(teacher_path, trainset, work / "cache.h5", batch_size=8, device="auto")
    cache_s = time.perf_counter() - t0
    cache = TeacherCache(work / "cache.h5", teacher_path=teacher_path, trainset_path=trainset)
    cache.load_into_memory(4.0)
    teacher, teacher_arch = load_exported(teacher_path, env.device)
    size = int(teacher_arch["input_size"])
    loss_cfg = DistillLossConfig.from_params(params)
    cfg = TrainConfig(
        steps=steps + 1,
        batch_size=4,
        grad_accum=1,
        warmup_steps=0,
        checkpoint_every=10_000,
        reshard_after_forward=False,
        num_threads=args.threads,
    )
    data = TrainSet(trainset, size, 0, extra_fields={"teacher_logits": cache.read})
    figures: dict[str, float] = {
        "cache_frames_per_s": summary["frames"] / cache_s,
        "cache_frames": summary["frames"],
        "input_size": size,
        "batch_size": cfg.batch_size,
        "timed_steps": steps,
        "threads": torch.get_num_threads() if args.threads == 0 else args.threads,
    }
    for i, entry in enumerate(students):
        arch = student_arch(entry, size)
        times = {}
        for mode, task in (
            ("cached", DistillTask(loss_cfg, cache.teacher_sha256)),
            ("live_teacher", LiveTeacherTask(teacher, loss_cfg)),
        ):
            run = work / f"{entry['name']}-{mode}"
            paths = TrainPaths(checkpoint_dir=run / "ckpt", metrics=run / "metrics.jsonl")
            train(task, arch, data, cfg, paths, env=env)
            step_s = _step_times(run / "metrics.jsonl", skip=1)
            times[mode] = min(step_s)
            figures[f"{entry['name']}_{mode}_step_s"] = times[mode]
            figures[f"{entry['name']}_{mode}_step_s_median"] = statistics.median(step_s)
        figures[f"{entry['name']}_speedup"] = times["live_teacher"] / times["cached"]
        if i == 0:  # headline figures: the first (largest) demo student
            figures["cached_step_s"] = times["cached"]
            figures["live_teacher_step_s"] = times["live_teacher"]
            figures["speedup"] = times["live_teacher"] / times["cached"]
    shutdown()
    result = write_result(
        args.out,
        "distill",
        figures,
        device=str(env.device),
        teacher=str(teacher_arch["name"]),
        students=[s["name"] for s in students],
    )
    print({k: round(v, 4) for k, v in result["figures"].items()})


if __name__ == "__main__":
    main()
