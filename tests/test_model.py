"""PeakNet: presets and parameter counts (paper Table 1), shapes, export round trip, model-info.

Marked slow only because ``import timm`` alone takes ~20 s here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

from braggflow.errors import ConfigError  # noqa: E402
from braggflow.model.arch import PRESETS, ModelArch, arch_from_params, get_preset  # noqa: E402

# timm's features_only backbones with in_chans=1 (no classifier head)
TIMM_BACKBONES = {
    "convnextv2_huge": 657_455_744,
    "convnextv2_tiny": 27_861_888,
    "convnextv2_atto": 3_385_480,
}


@pytest.fixture(scope="module")
def counts():
    from braggflow.model.peaknet import build_model, count_parameters

    return {name: count_parameters(build_model(a, device="meta")) for name, a in PRESETS.items()}


def test_paper_teacher_is_673m_from_658m_backbone_and_14m_bifpn(counts):
    c = counts["peaknet-673m"]
    assert c["backbone"] == TIMM_BACKBONES["convnextv2_huge"]  # paper: 658M
    assert (
        13.5e6 < c["bifpn"] < 14.5e6 and get_preset("peaknet-673m").bifpn_blocks == 4
    )  # paper: 14M, 4 blocks
    assert c["total"] == c["backbone"] + c["bifpn"] + c["head"]
    assert abs(c["total"] - 673e6) / 673e6 < 0.005
    assert get_preset("peaknet-673m").input_size == 1920


def test_student_presets_use_tiny_and_atto_with_4_or_2_blocks(counts):
    for name in ("student-tiny-4", "student-tiny-2", "student-atto-4", "student-atto-2"):
        arch = get_preset(name)
        assert counts[name]["backbone"] == TIMM_BACKBONES[arch.backbone]
        assert arch.bifpn_blocks == int(name[-1])
    assert counts["student-tiny-4"]["bifpn"] > counts["student-tiny-2"]["bifpn"]
    assert counts["demo-teacher"]["total"] > counts["demo-student"]["total"]


def test_bifpn_uses_3x3_depthwise_and_layernorm():
    from braggflow.model.peaknet import build_model

    model = build_model(get_preset("tiny-test"))
    depthwise = [m for n, m in model.bifpn.named_modules() if n.endswith("depthwise")]
    assert depthwise and all(
        m.kernel_size == (3, 3) and m.groups == m.in_channels for m in depthwise
    )
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert type(model.head.fine) is torch.nn.ConvTranspose2d


def test_forward_gives_two_class_logits_at_input_resolution_and_all_params_learn():
    from braggflow.model.peaknet import build_model

    torch.manual_seed(0)
    model = build_model(get_preset("tiny-test"))
    out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 2, 64, 64)
    out[:, 1].mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_export_round_trip_is_exact(tmp_path):
    from braggflow.model.export import export_model, load_exported
    from braggflow.model.peaknet import build_model

    torch.manual_seed(1)
    arch = get_preset("tiny-test")
    model = build_model(arch).eval()
    path = export_model(model, arch, tmp_path / "m.pt", extra={"note": "x"})
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["arch"]["name"] == "tiny-test" and meta["note"] == "x"
    loaded, arch_dict = load_exported(path, "cpu")
    assert arch_dict == arch.to_dict() and arch_dict["input_size"] == 64
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # only tensors and primitives inside: loadable with weights_only=True
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"arch", "state_dict"}


def test_load_exported_refuses_a_bad_file(tmp_path):
    from braggflow.errors import InputError
    from braggflow.model.export import load_exported

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a braggflow model"):
        load_exported(bad)


def test_arch_config_checks_and_overrides():
    arch = arch_from_params({"preset": "demo-teacher", "input_size": 512, "bifpn_blocks": 3})
    assert (arch.input_size, arch.bifpn_blocks, arch.backbone) == (512, 3, "convnextv2_atto")
    assert ModelArch.from_dict(arch.to_dict()) == arch
    other = arch_from_params({"preset": "demo-teacher", "backbone": "resnet18"})
    assert other.backbone_kwargs == {}
    with pytest.raises(ConfigError, match="input_size"):
        arch.replace(input_size=100)
    with pytest.raises(ConfigError, match="model.preset"):
        get_preset("nope")


def test_any_timm_backbone_works():
    from braggflow.model.peaknet import build_model

    model = build_model(
        ModelArch("r", "resnet18", {}, bifpn_width=8, bifpn_blocks=1, input_size=64)
    )
    assert [n for n, _ in model.backbone.stages()] == ["layer1", "layer2", "layer3", "layer4"]
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_model_info_prints_every_preset(capsys):
    from braggflow.cli import main

    assert main(["model-info", "--json", "--preset", "peaknet-673m", "--preset", "tiny-test"]) == 0
    rows = {r["preset"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"peaknet-673m", "tiny-test"}
    assert rows["peaknet-673m"]["backbone"] == TIMM_BACKBONES["convnextv2_huge"]
    assert main(["model-info", "--preset", "student-atto-2"]) == 0
    text = capsys.readouterr().out
    assert "student-atto-2" in text and "3.39M" in text and "peaknet-673m" not in text
    np.testing.assert_equal(
        rows["tiny-test"]["total"],
        rows["tiny-test"]["backbone"] + rows["tiny-test"]["bifpn"] + rows["tiny-test"]["head"],
    )
