"""The dual-pathway segmentation head (section 2.2.1): 2-class logits at input resolution.

The BiFPN levels are first merged at the finest level (stride s): each coarser map is bilinearly
upsampled and all are combined by fast normalised fusion, so every BiFPN output (including the
last block's bottom-up path) reaches the logits. Then two pathways of one layer each:
pathway 1 (downsampled): a 1x1 conv at stride s, bilinearly upsampled;
pathway 2 (full resolution): a transposed conv with stride s and kernel 2s (learnable upsampling;
each output pixel sees its own and the neighbouring cells, so spots crossing a cell edge stay whole).
The two logit maps are summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DualPathwayHead(nn.Module):
    def __init__(self, width: int, num_classes: int, stride: int, levels: int) -> None:
        super().__init__()
        from braggflow.model.bifpn import FastFusion

        self.stride = stride
        self.merge = FastFusion(levels)
        self.coarse = nn.Conv2d(width, num_classes, 1)
        self.fine = nn.ConvTranspose2d(
            width, num_classes, kernel_size=2 * stride, stride=stride, padding=stride // 2
        )

    def forward(self, feats: list[torch.Tensor], out_hw: tuple[int, int]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = self.merge(
            [feats[0]]
            + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        )
        coarse = F.interpolate(self.coarse(x), size=out_hw, mode="bilinear", align_corners=False)
        fine = self.fine(x)
        if fine.shape[-2:] != tuple(out_hw):
            fine = F.interpolate(fine, size=out_hw, mode="bilinear", align_corners=False)
        return coarse + fine
