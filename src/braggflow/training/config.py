"""The training config (the ``train:`` section, or a student's section) as a checked dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from braggflow.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, sharding and checkpointing of one training run.

    ``batch_size`` is per rank and micro-step; one optimiser step sees
    ``batch_size * world_size * grad_accum`` frames (the global batch).
    """

    steps: int = 300
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 1e-7
    warmup_steps: int = 20
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float = 1.0
    focal_alpha: tuple[float, float] = (0.25, 0.75)
    focal_gamma: float = 2.0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    activation_checkpointing: bool = False
    mixed_precision: str = "auto"
    reshard_after_forward: bool = True
    augment: bool = False
    seed: int = 2025
    val_batch_size: int = 4
    num_threads: int = 0
    in_memory_max_gb: float = 4.0
    nproc_per_node: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = (
            "steps",
            "batch_size",
            "grad_accum",
            "checkpoint_every",
            "keep_checkpoints",
            "val_batch_size",
            "nproc_per_node",
        )
        for key in positive:
            if int(getattr(self, key)) < 1:
                raise ConfigError(
                    f"train.{key}: bad value {getattr(self, key)}; allowed: integer >= 1"
                )
        if not 0 < self.lr or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(
                f"train.lr/min_lr: bad values {self.lr}/{self.min_lr}; allowed: 0 <= min_lr <= lr, lr > 0"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps: bad value {self.warmup_steps}; allowed: >= 0")
        if self.clip_grad_norm < 0:
            raise ConfigError(
                f"train.clip_grad_norm: bad value {self.clip_grad_norm}; allowed: >= 0 (0 = off)"
            )
        if len(self.focal_alpha) != 2 or any(not 0 <= a <= 1 for a in self.focal_alpha):
            raise ConfigError(
                f"train.focal_alpha: bad value {list(self.focal_alpha)}; allowed: [background, peak] in [0, 1]"
            )
        if self.focal_gamma < 0:
            raise ConfigError(f"train.focal_gamma: bad value {self.focal_gamma}; allowed: >= 0")
        if self.mixed_precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(
                f"train.mixed_precision: bad value {self.mixed_precision!r}; allowed: auto, bf16, fp32"
            )
        if self.num_threads < 0:
            raise ConfigError(
                f"train.num_threads: bad value {self.num_threads}; allowed: >= 0 (0 = auto)"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> TrainConfig:
        """From a config section; keys this dataclass does not know go to ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {k: v for k, v in params.items() if k in known}
        extra = {k: v for k, v in params.items() if k not in known}
        for key in ("betas", "focal_alpha"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        kwargs.update(overrides)
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["focal_alpha"] = list(self.focal_alpha)
        return out

    def identity(self) -> dict[str, Any]:
        """The keys that change the trained weights (a resumed run must match them)."""
        out = self.to_dict()
        for key in (
            "checkpoint_every",
            "keep_checkpoints",
            "val_batch_size",
            "num_threads",
            "in_memory_max_gb",
            "nproc_per_node",
            "activation_checkpointing",
        ):
            out.pop(key)
        return out
