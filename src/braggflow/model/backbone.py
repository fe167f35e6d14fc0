"""A timm backbone behind the ``features_only`` interface, single-channel input (section 2.2.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from braggflow.errors import ConfigError


class TimmBackbone(nn.Module):
    """Any timm model with ``features_only=True, in_chans=1``; returns one map per stage.

    ``channels`` and ``reductions`` come from timm's ``feature_info``; ``stages()`` lists the
    units FSDP shards (and activation checkpointing wraps).
    """

    def __init__(self, name: str, kwargs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        import timm

        try:
            self.body = timm.create_model(
                name, pretrained=False, features_only=True, in_chans=1, **dict(kwargs or {})
            )
        except (RuntimeError, TypeError, ValueError) as exc:  # unknown name or kwargs
            raise ConfigError(f"model.backbone: timm cannot build {name!r} ({exc})") from None
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())

    def stages(self) -> list[tuple[str, nn.Module]]:
        """Top-level children that are containers with parameters (ConvNeXt ``stages_i``, ResNet
        ``layer_i``, EfficientNet ``blocks_i``); leaf layers (stem conv/norm) stay with the root."""
        return [
            (n, m)
            for n, m in self.body.named_children()
            if any(True for _ in m.children()) and any(True for _ in m.parameters())
        ]

    def replace_stage(self, name: str, module: nn.Module) -> None:
        setattr(self.body, name, module)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))
