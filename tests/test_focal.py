"""Focal loss (eq. 1) against a hand computation."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from braggflow.training.focal import focal_loss  # noqa: E402


def test_focal_loss_matches_hand_computation():
    # two pixels: a peak predicted with p=0.8, a background pixel predicted with p(bg)=0.6
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(4.0), math.log(2 / 3)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    p_peak, p_bg = 0.8, 0.6
    fl_peak = -0.75 * (1 - p_peak) ** 2 * math.log(p_peak)
    fl_bg = -0.25 * (1 - p_bg) ** 2 * math.log(p_bg)
    got = focal_loss(logits, target, alpha=(0.25, 0.75), gamma=2.0)
    assert got.item() == pytest.approx((fl_peak + fl_bg) / 2, rel=1e-6)
    per_pixel = focal_loss(logits, target, reduction="none")
    assert per_pixel[0, 0].tolist() == pytest.approx([fl_peak, fl_bg], rel=1e-6)


def test_gamma_zero_alpha_half_is_half_cross_entropy_and_ignore_is_skipped():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 5)
    target = torch.randint(0, 2, (2, 4, 5))
    target[0, 0, :] = 255
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    assert focal_loss(logits, target, alpha=(0.5, 0.5), gamma=0.0).item() == pytest.approx(
        0.5 * ce.item(), rel=1e-6
    )


def test_confident_correct_pixels_are_down_weighted():
    target = torch.ones(1, 1, 1, dtype=torch.long)
    easy = focal_loss(torch.tensor([[[[0.0]], [[4.0]]]]), target)
    hard = focal_loss(torch.tensor([[[[0.0]], [[-1.0]]]]), target)
    ce_ratio = math.log(1 + math.exp(1)) / math.log(1 + math.exp(-4))
    assert hard.item() / easy.item() > 10 * ce_ratio  # the (1-p)^gamma factor


def test_no_valid_pixels_gives_zero_with_gradient():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = focal_loss(logits, torch.full((1, 3, 3), 255))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
