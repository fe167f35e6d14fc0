"""The student objective plugged into the shared training loop (``braggflow.training.loop``).

The loop is the teacher's (FSDP2, DCP checkpoints, exact resume, metrics, export, validation);
distillation only changes what a step minimises (section 2.2.3.1) and adds the cached teacher
logits to each batch (``TrainSet(extra_fields={"teacher_logits": cache.read})``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from braggflow.distill.loss import DistillLossConfig, distillation_loss


class DistillTask:
    """``loss(model, batch)``: the student's logits against ``batch["teacher_logits"]``."""

    def __init__(self, loss_cfg: DistillLossConfig, teacher_sha256: str = "") -> None:
        self.cfg = loss_cfg
        self.teacher_sha256 = teacher_sha256

    def describe(self) -> dict[str, Any]:
        """Logged once at start and stored in checkpoints (a resume must match it)."""
        out = {"task": "distill", **dataclasses.asdict(self.cfg)}
        out["focal_alpha"] = list(self.cfg.focal_alpha)
        out["teacher_sha256"] = self.teacher_sha256
        return out

    def loss(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        student = model(batch["image"])
        total, parts = distillation_loss(
            student, batch["teacher_logits"], self.cfg, batch.get("valid"), batch.get("label")
        )
        parts.pop("total")
        return total, parts
