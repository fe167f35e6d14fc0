"""Learning-rate schedule: linear warm-up, then cosine decay (pure Python, no torch)."""

from __future__ import annotations

import math


def lr_factor(step: int, warmup: int, total: int, lr: float, min_lr: float) -> float:
    """Multiplier of ``lr`` at optimiser step ``step`` (0-based): linear warm-up to ``lr`` over
    ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))) / lr
