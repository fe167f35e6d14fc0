"""The distillation objective of section 2.2.3.1 (eq. 2-6), with every weight from config.

    total = w_mse * MSE(z_t, z_s)
          + w_kl * T^2 * KL(p_t(T) || p_s(T))
          + w_focal * focal(z_s, argmax z_t)
          + lambda_label * focal(z_s, fitted labels)      (ours, off by default)

``z`` are pre-activation logits (B, C, H, W); ``p(T) = softmax(z / T)`` over the class axis.
Every term is an average over *valid* pixels only (masked detector pixels and padding are left
out of every term the same way). For the KL term the pixels are the batch: H and W are folded
into the batch axis and ``batchmean`` divides the summed KL by the number of valid pixels (eq. 5).
The paper's authors set the KL weight twice (it silently became 0.2) and read the focal weight
from a global; here one frozen dataclass holds them all and is logged once at start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillLossConfig:
    """Weights and temperature of the distillation loss (paper defaults: 0.4 / 0.4 / 0.2, T = 2)."""

    w_mse: float = 0.4
    w_kl: float = 0.4
    w_focal: float = 0.2
    temperature: float = 2.0
    lambda_label: float = 0.0
    focal_alpha: tuple[float, ...] = (0.25, 0.75)  # per class: background, peak (eq. 1)
    focal_gamma: float = 2.0

    def __post_init__(self) -> None:
        weights = {
            "w_mse": self.w_mse,
            "w_kl": self.w_kl,
            "w_focal": self.w_focal,
            "lambda_label": self.lambda_label,
        }
        for name, value in weights.items():
            if not value >= 0:
                raise ValueError(f"distill.{name} must be >= 0, got {value}")
        if sum(weights.values()) <= 0:
            raise ValueError("distill loss weights are all zero: nothing to optimise")
        if not self.temperature > 0:
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature}")
        if not self.focal_gamma >= 0:
            raise ValueError(f"distill.focal_gamma must be >= 0, got {self.focal_gamma}")
        if any(not a >= 0 for a in self.focal_alpha):
            raise ValueError(f"distill.focal_alpha must be >= 0, got {self.focal_alpha}")
        object.__setattr__(self, "focal_alpha", tuple(float(a) for a in self.focal_alpha))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DistillLossConfig:
        """Pick this dataclass's fields from a config section (``distill.loss`` or flat)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def describe(self) -> str:
        return (
            f"distillation loss: {self.w_mse} * MSE + {self.w_kl} * T^2 * KL(T={self.temperature}) "
            f"+ {self.w_focal} * focal(argmax teacher) + {self.lambda_label} * focal(labels); "
            f"focal alpha={list(self.focal_alpha)} gamma={self.focal_gamma}"
        )


def valid_pixels(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, C, H, W) logits -> (N, C) rows, one per valid pixel (H and W folded into the batch)."""
    b, c, h, w = logits.shape
    rows = logits.permute(0, 2, 3, 1).reshape(b * h * w, c)
    if valid is None:
        return rows
    return rows[valid.reshape(b * h * w).to(torch.bool)]


def mse_term(z_s: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """MSE(z_t, z_s) on pixel rows (N, C): mean over valid pixels and classes (eq. 3)."""
    return F.mse_loss(z_s, z_t, reduction="mean")


def kl_term(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_t(T) || p_s(T)) on pixel rows (N, C), ``batchmean`` over pixels; no T^2 (eq. 4-5)."""
    log_p_s = F.log_softmax(z_s / temperature, dim=1)
    log_p_t = F.log_softmax(z_t / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def focal_term(
    z: torch.Tensor, target: torch.Tensor, alpha: tuple[float, ...], gamma: float
) -> torch.Tensor:
    """Focal loss on pixel rows (N, C), mean over pixels: the teacher's own (eq. 1), shared code."""
    from braggflow.training.focal import focal_loss

    return focal_loss(z.T[None, :, :, None], target[None, :, None], alpha, gamma)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    cfg: DistillLossConfig,
    valid: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total distillation loss and its (detached) parts; section 2.2.3.1, eq. 2-6.

    ``student_logits``/``teacher_logits``: (B, C, H, W); ``valid``: (B, H, W) bool, or None
    for all pixels; ``labels``: (B, H, W) integer class map, needed when ``lambda_label > 0``.
    Computed in float32 whatever the inputs (the cache stores float16, training may run bf16).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    z_s = valid_pixels(student_logits.float(), valid)
    z_t = valid_pixels(teacher_logits.detach().float(), valid)
    if cfg.lambda_label > 0 and labels is None:
        raise ValueError("lambda_label > 0 needs the fitted labels in the batch")
    names = ["mse", "kl", "focal_teacher"] + (["focal_label"] if cfg.lambda_label > 0 else [])
    if z_s.shape[0] == 0:  # no valid pixel: a zero that still carries the graph, same keys
        zero = student_logits.sum() * 0.0
        return zero, {k: zero.detach() for k in [*names, "total"]}
    t = cfg.temperature
    parts = {
        "mse": mse_term(z_s, z_t),
        "kl": kl_term(z_s, z_t, t),
        "focal_teacher": focal_term(z_s, z_t.argmax(dim=1), cfg.focal_alpha, cfg.focal_gamma),
    }
    total = cfg.w_mse * parts["mse"] + cfg.w_kl * t * t * parts["kl"]
    total = total + cfg.w_focal * parts["focal_teacher"]
    if cfg.lambda_label > 0:
        y = valid_pixels(labels[:, None].float(), valid)[:, 0]
        parts["focal_label"] = focal_term(z_s, y.long(), cfg.focal_alpha, cfg.focal_gamma)
        total = total + cfg.lambda_label * parts["focal_label"]
    out = {k: v.detach() for k, v in parts.items()}
    out["total"] = total.detach()
    return total, out
