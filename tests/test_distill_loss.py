"""The distillation loss (section 2.2.3.1, eq. 2-6) against a hand computation on small tensors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from braggflow.distill.loss import DistillLossConfig, distillation_loss  # noqa: E402

# Two frames of 1 x 2 pixels, 2 classes; the last pixel of frame 1 is masked out.
Z_S = [[[1.0, -0.5], [0.2, 2.0]], [[0.0, 3.0], [1.0, 1.0]]]  # [frame][pixel] -> (bg, peak)
Z_T = [[[2.0, -1.0], [-0.3, 1.5]], [[1.0, 0.0], [9.0, -9.0]]]
VALID = [[True, True], [True, False]]
LABELS = [[0, 1], [1, 0]]


def _as_bchw(rows):
    # [frame][pixel][class] -> (B, C, H=1, W)
    return torch.tensor(rows, dtype=torch.float32).permute(0, 2, 1)[:, :, None, :].contiguous()


def _softmax(z, t=1.0):
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def _hand(cfg: DistillLossConfig):
    pixels = [
        (Z_S[b][w], Z_T[b][w], LABELS[b][w]) for b in range(2) for w in range(2) if VALID[b][w]
    ]
    n = len(pixels)  # 3 valid pixels: batchmean divides by pixels, not by frames (2)
    t = cfg.temperature
    mse = sum((s - q) ** 2 for zs, zt, _ in pixels for s, q in zip(zs, zt, strict=True)) / (2 * n)
    kl = 0.0
    for zs, zt, _ in pixels:
        ps, pt = _softmax(zs, t), _softmax(zt, t)
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps, strict=True))
    kl /= n

    def focal(target_of):
        total = 0.0
        for zs, zt, y in pixels:
            k = target_of(zs, zt, y)
            p = _softmax(zs)[k]
            total += -cfg.focal_alpha[k] * (1 - p) ** cfg.focal_gamma * math.log(p)
        return total / n

    f_teacher = focal(lambda zs, zt, y: max(range(2), key=lambda c: zt[c]))
    f_label = focal(lambda zs, zt, y: y)
    total = cfg.w_mse * mse + cfg.w_kl * t * t * kl + cfg.w_focal * f_teacher
    total += cfg.lambda_label * f_label
    return {
        "mse": mse,
        "kl": kl,
        "focal_teacher": f_teacher,
        "focal_label": f_label,
        "total": total,
    }


def _run(cfg):
    z_s = _as_bchw(Z_S).requires_grad_(True)
    valid = torch.tensor(VALID)[:, None, :]
    labels = torch.tensor(LABELS)[:, None, :]
    total, parts = distillation_loss(z_s, _as_bchw(Z_T), cfg, valid=valid, labels=labels)
    total.backward()
    return total, parts, z_s.grad


def test_paper_defaults():
    cfg = DistillLossConfig()
    assert (cfg.w_mse, cfg.w_kl, cfg.w_focal, cfg.temperature, cfg.lambda_label) == (
        0.4,
        0.4,
        0.2,
        2.0,
        0.0,
    )


def test_each_term_and_total_match_hand_computation():
    cfg = DistillLossConfig()
    hand = _hand(cfg)
    total, parts, grad = _run(cfg)
    for key in ("mse", "kl", "focal_teacher"):
        assert parts[key].item() == pytest.approx(hand[key], rel=1e-6), key
    assert "focal_label" not in parts  # off by default
    assert total.item() == pytest.approx(hand["total"], rel=1e-6)
    # masked pixel gets no gradient; valid ones do
    assert torch.all(grad[1, :, 0, 1] == 0)
    assert torch.all(grad[0] != 0)


def test_t_squared_factor_and_batchmean_over_pixels():
    # only the KL term: total must be w_kl * T^2 * sum(KL over valid pixels) / n_valid_pixels
    for t in (1.0, 2.0, 4.0):
        cfg = DistillLossConfig(w_mse=0.0, w_kl=1.0, w_focal=0.0, temperature=t)
        total, parts, _ = _run(cfg)
        hand = _hand(cfg)
        assert total.item() == pytest.approx(t * t * hand["kl"], rel=1e-6)
        # batchmean over pixels: 3 valid pixels, 2 frames -> dividing by frames would be 1.5x bigger
        assert parts["kl"].item() == pytest.approx(hand["kl"], rel=1e-6)
        assert parts["kl"].item() != pytest.approx(hand["kl"] * 3 / 2, rel=1e-3)


def test_optional_label_term():
    cfg = DistillLossConfig(lambda_label=0.5)
    hand = _hand(cfg)
    total, parts, _ = _run(cfg)
    assert parts["focal_label"].item() == pytest.approx(hand["focal_label"], rel=1e-6)
    assert total.item() == pytest.approx(hand["total"], rel=1e-6)


def test_masked_pixels_do_not_change_the_loss():
    cfg = DistillLossConfig(lambda_label=1.0)
    total, _, _ = _run(cfg)
    z_s, z_t = _as_bchw(Z_S), _as_bchw(Z_T)
    z_s[1, :, 0, 1] = 1e4  # garbage under the mask
    z_t[1, :, 0, 1] = -1e4
    valid = torch.tensor(VALID)[:, None, :]
    labels = torch.tensor(LABELS)[:, None, :]
    again, _ = distillation_loss(z_s, z_t, cfg, valid=valid, labels=labels)
    assert again.item() == pytest.approx(total.item(), rel=1e-6)


def test_float16_teacher_and_no_valid_pixel():
    cfg = DistillLossConfig()
    z_s = _as_bchw(Z_S).requires_grad_(True)
    total, _ = distillation_loss(z_s, _as_bchw(Z_T).half(), cfg)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    zero, parts = distillation_loss(z_s, _as_bchw(Z_T), cfg, valid=torch.zeros(2, 1, 2, dtype=bool))
    zero.backward()
    assert zero.item() == 0.0 and parts["total"].item() == 0.0
    assert set(parts) == {"mse", "kl", "focal_teacher", "total"}  # same keys on every rank


@pytest.mark.parametrize(
    "bad",
    [{"w_kl": -0.1}, {"temperature": 0.0}, {"w_mse": 0, "w_kl": 0, "w_focal": 0}],
)
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError, match="distill"):
        DistillLossConfig(**bad)


def test_from_params_ignores_other_keys():
    cfg = DistillLossConfig.from_params({"w_kl": 0.3, "temperature": 3, "steps": 10})
    assert cfg.w_kl == 0.3 and cfg.temperature == 3 and cfg.w_mse == 0.4
    assert "0.3 * T^2 * KL(T=3)" in cfg.describe()
