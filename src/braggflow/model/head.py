"""The dual-pathway segmentation head (section 2.2.1): 2-class logits at input resolution.

Pathway 1 (downsampled): a 1x1 conv on the finest BiFPN map (stride s), bilinearly upsampled.
Pathway 2 (full resolution): a transposed conv with kernel = stride = s (learnable upsampling).
The two logit maps are summed; each pathway is one layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DualPathwayHead(nn.Module):
    def __init__(self, width: int, num_classes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.coarse = nn.Conv2d(width, num_classes, 1)
        self.fine = nn.ConvTranspose2d(width, num_classes, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        coarse = F.interpolate(self.coarse(x), size=out_hw, mode="bilinear", align_corners=False)
        fine = self.fine(x)
        if fine.shape[-2:] != tuple(out_hw):
            fine = F.interpolate(fine, size=out_hw, mode="bilinear", align_corners=False)
        return coarse + fine
