"""Training objectives plugged into the shared loop (``braggflow.training.loop.train``).

A task is any object with ``loss(model, batch) -> (loss, metrics)``: ``batch`` is a dict of
tensors on the training device (``image``, ``label``, ``valid``, ``frame`` and any extra fields of
the dataset, e.g. cached teacher logits), ``loss`` a scalar tensor to minimise (mean over this
rank's micro-batch), ``metrics`` a flat dict of floats/0-d tensors averaged over micro-batches and
ranks into the per-step JSONL. Optional ``describe() -> dict`` is logged once at start and stored
in checkpoints (a resumed run must have the same description).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from braggflow.training.focal import focal_loss


@runtime_checkable
class Task(Protocol):
    def loss(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, Any]]: ...


class SegmentationTask:
    """Supervised peak segmentation with the focal loss (teacher pretraining, eq. 1)."""

    def __init__(self, alpha: Sequence[float] = (0.25, 0.75), gamma: float = 2.0) -> None:
        self.alpha, self.gamma = tuple(float(a) for a in alpha), float(gamma)

    def describe(self) -> dict[str, Any]:
        return {
            "task": "segmentation",
            "loss": "focal",
            "alpha": list(self.alpha),
            "gamma": self.gamma,
        }

    def loss(
        self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = model(batch["image"])
        loss = focal_loss(logits, batch["label"], self.alpha, self.gamma)
        with torch.no_grad():
            label = batch["label"]
            peak_frac = (label == 1).sum() / (label != 255).sum().clamp_min(1)
        return loss, {"peak_fraction": peak_frac}
