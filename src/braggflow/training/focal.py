"""Focal loss with per-class alpha (Lin et al. 2017; the paper's eq. 1).

``FL = -alpha_t (1 - p_t)^gamma log p_t`` per pixel, with ``p_t`` the softmax probability of the
true class and ``alpha_t`` the weight of that class (paper: background 0.25, peak 0.75, gamma 2);
averaged over valid pixels (label != ignore_index).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from braggflow.model.preprocess import IGNORE


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: Sequence[float] = (0.25, 0.75),
    gamma: float = 2.0,
    ignore_index: int = IGNORE,
    reduction: str = "mean",
) -> torch.Tensor:
    """``logits`` (B, C, H, W), ``target`` (B, H, W) class indices -> scalar (or per-pixel map)."""
    logp = F.log_softmax(logits.float(), dim=1)
    valid = target != ignore_index
    t = torch.where(valid, target, torch.zeros_like(target)).long()
    logp_t = logp.gather(1, t.unsqueeze(1)).squeeze(1)
    p_t = logp_t.exp()
    alpha_t = torch.as_tensor(list(alpha), dtype=logp.dtype, device=logp.device)[t]
    loss = -alpha_t * (1.0 - p_t).pow(gamma) * logp_t
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum().clamp_min(1)
