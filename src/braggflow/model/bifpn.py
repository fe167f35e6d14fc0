"""BiFPN with layer normalisation and real 3x3 depthwise-separable convolutions (section 2.2.1).

EfficientDet's bidirectional feature pyramid (Tan et al. 2020) with fast normalised fusion
``out = sum_i w_i x_i / (eps + sum_j w_j)``, ``w = relu(w_raw)``. Differences to the authors'
code: LayerNorm instead of batch norm (the paper's choice, robust to batch size 1 and sharding)
and a 3x3 depthwise kernel (theirs was 1x1, i.e. no spatial mixing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW map (channels-last LN, as in ConvNeXt)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class SeparableConvBlock(nn.Module):
    """3x3 depthwise conv -> 1x1 pointwise conv -> LayerNorm -> SiLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.norm = LayerNorm2d(channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))))


class FastFusion(nn.Module):
    """Fast normalised fusion of ``n`` same-shape maps (EfficientDet eq. 3)."""

    def __init__(self, n: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        w = F.relu(self.weight)
        w = w / (w.sum() + self.eps)
        out = xs[0] * w[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * w[i]
        return out


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    if x.shape[-1] > like.shape[-1]:  # finer -> coarser
        return F.adaptive_max_pool2d(x, like.shape[-2:])
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class BiFPNBlock(nn.Module):
    """One top-down + bottom-up pass over ``levels`` maps of equal width (finest first)."""

    def __init__(self, width: int, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.td_fuse = nn.ModuleList(FastFusion(2) for _ in range(levels - 1))
        self.td_conv = nn.ModuleList(SeparableConvBlock(width) for _ in range(levels - 1))
        self.bu_fuse = nn.ModuleList(
            FastFusion(3 if i < levels - 1 else 2) for i in range(1, levels)
        )
        self.bu_conv = nn.ModuleList(SeparableConvBlock(width) for _ in range(levels - 1))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        n = self.levels
        # top-down: coarsest stays, each finer level fuses its input with the upsampled coarser one
        td = [None] * n
        td[n - 1] = feats[n - 1]
        for i in range(n - 2, -1, -1):
            k = i  # module index
            td[i] = self.td_conv[k](self.td_fuse[k]([feats[i], _resize(td[i + 1], feats[i])]))
        # bottom-up: finest output is td[0]; others fuse input, top-down and the finer output
        out = [td[0]]
        for i in range(1, n):
            k = i - 1
            prev = _resize(out[i - 1], feats[i])
            parts = [feats[i], td[i], prev] if i < n - 1 else [feats[i], prev]
            out.append(self.bu_conv[k](self.bu_fuse[k](parts)))
        return out


class BiFPN(nn.Module):
    """Projects backbone maps to ``width`` channels (1x1 conv + LN), then ``blocks`` BiFPN blocks."""

    def __init__(self, in_channels: list[int], width: int, blocks: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1), LayerNorm2d(width)) for c in in_channels
        )
        self.blocks = nn.ModuleList(BiFPNBlock(width, len(in_channels)) for _ in range(blocks))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [p(f) for p, f in zip(self.proj, feats, strict=True)]
        for block in self.blocks:
            xs = block(xs)
        return xs
