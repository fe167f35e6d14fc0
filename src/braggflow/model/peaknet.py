"""PeakNet: backbone -> BiFPN -> dual-pathway head (section 2.2.1), and parameter counting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from braggflow.model.arch import ModelArch
from braggflow.model.backbone import TimmBackbone
from braggflow.model.bifpn import BiFPN
from braggflow.model.head import DualPathwayHead


class PeakNet(nn.Module):
    """Input (B, 1, S, S) z-scored images -> (B, num_classes, S, S) pre-activation logits."""

    def __init__(self, arch: ModelArch) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = TimmBackbone(arch.backbone, arch.backbone_kwargs)
        self.bifpn = BiFPN(self.backbone.channels, arch.bifpn_width, arch.bifpn_blocks)
        self.head = DualPathwayHead(
            arch.bifpn_width,
            arch.num_classes,
            self.backbone.reductions[0],
            len(self.backbone.channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        feats = self.bifpn(feats)
        return self.head(feats, (x.shape[-2], x.shape[-1]))

    def shard_units(self) -> list[nn.Module]:
        """Modules that FSDP shards (and activation checkpointing wraps), innermost first:
        each backbone stage and each BiFPN block; the root is sharded last by the caller."""
        return [m for _, m in self.backbone.stages()] + list(self.bifpn.blocks)


def build_model(
    arch: ModelArch | Mapping[str, Any], device: str | torch.device | None = None
) -> PeakNet:
    """Build a PeakNet (random init from the current torch seed); ``device='meta'`` allocates nothing."""
    if not isinstance(arch, ModelArch):
        arch = ModelArch.from_dict(arch)
    if device is None:
        return PeakNet(arch)
    with torch.device(device):
        return PeakNet(arch)


def count_parameters(model: PeakNet) -> dict[str, int]:
    """Parameters per part: backbone (as timm reports it), BiFPN, head, total."""

    def n(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {
        "backbone": n(model.backbone),
        "bifpn": n(model.bifpn),
        "head": n(model.head),
        "total": n(model),
    }
