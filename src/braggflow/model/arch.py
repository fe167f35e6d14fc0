"""Model architecture configs and named presets (section 2.2.1, Table 1).

An architecture is a small dataclass of primitives (JSON-able), stored inside every exported
model, so a model file always says how to rebuild itself. Presets are registered by name;
``register_preset`` lets other modules (e.g. distillation) add their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from braggflow.errors import ConfigError

MAX_STRIDE = 32  # ConvNeXt-style backbones downsample by 32: the input side must be a multiple


@dataclass(frozen=True)
class ModelArch:
    """How to build a PeakNet: timm backbone + BiFPN + dual-pathway head."""

    name: str
    backbone: str = "convnextv2_atto"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    bifpn_width: int = 64
    bifpn_blocks: int = 2
    num_classes: int = 2
    input_size: int = 256

    def __post_init__(self) -> None:
        if not self.backbone or not isinstance(self.backbone, str):
            raise ConfigError(
                f"model.backbone: bad value {self.backbone!r}; allowed: a timm model name"
            )
        if self.bifpn_width < 1 or self.bifpn_blocks < 1:
            raise ConfigError(
                f"model: bifpn_width={self.bifpn_width}, bifpn_blocks={self.bifpn_blocks}; allowed: >= 1"
            )
        if self.num_classes < 2:
            raise ConfigError(f"model.num_classes: bad value {self.num_classes}; allowed: >= 2")
        if self.input_size < MAX_STRIDE or self.input_size % MAX_STRIDE:
            raise ConfigError(
                f"model.input_size: bad value {self.input_size}; allowed: a multiple of {MAX_STRIDE}"
                " (the backbone downsamples by 32), e.g. 256 or 1920"
            )

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (lists, not tuples): safe for JSON and ``torch.load(weights_only=True)``."""
        return _primitive(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelArch:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model arch: unknown keys {unknown}; allowed: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> ModelArch:
        return dataclasses.replace(self, **changes)


def _primitive(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _primitive(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_primitive(v) for v in obj]
    return obj


# Demo backbones: ConvNeXtV2-atto shrunk through timm kwargs so CPU training fits the demo budget.
_DEMO_TEACHER_BACKBONE = {"dims": [24, 48, 96, 192], "depths": [1, 1, 3, 1]}
_DEMO_STUDENT_BACKBONE = {"dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}

PRESETS: dict[str, ModelArch] = {}


def register_preset(arch: ModelArch) -> ModelArch:
    """Add (or replace) a named preset."""
    PRESETS[arch.name] = arch
    return arch


for _arch in (
    # Paper teacher (Table 1): ConvNeXtV2-huge (658M) + BiFPN 4 blocks (14M) = 673M at 1920x1920.
    ModelArch(
        "peaknet-673m", "convnextv2_huge", {}, bifpn_width=656, bifpn_blocks=4, input_size=1920
    ),
    # Paper students (Table 1): tiny and atto backbones with 4 or 2 BiFPN blocks.
    ModelArch(
        "student-tiny-4", "convnextv2_tiny", {}, bifpn_width=256, bifpn_blocks=4, input_size=1920
    ),
    ModelArch(
        "student-tiny-2", "convnextv2_tiny", {}, bifpn_width=256, bifpn_blocks=2, input_size=1920
    ),
    ModelArch(
        "student-atto-4", "convnextv2_atto", {}, bifpn_width=256, bifpn_blocks=4, input_size=1920
    ),
    ModelArch(
        "student-atto-2", "convnextv2_atto", {}, bifpn_width=256, bifpn_blocks=2, input_size=1920
    ),
    # Demo sizes (ours): same code, shrunk so the embedded experiment trains on 2 CPU cores.
    ModelArch("demo-teacher", "convnextv2_atto", _DEMO_TEACHER_BACKBONE, 48, 2, input_size=256),
    ModelArch("demo-student", "convnextv2_atto", _DEMO_STUDENT_BACKBONE, 24, 1, input_size=256),
    # Tests: the smallest thing that still has every part.
    ModelArch(
        "tiny-test",
        "convnextv2_atto",
        {"dims": [8, 16, 24, 32], "depths": [1, 1, 1, 1]},
        bifpn_width=16,
        bifpn_blocks=1,
        input_size=64,
    ),
):
    register_preset(_arch)

PAPER_PRESETS = (
    "peaknet-673m",
    "student-tiny-4",
    "student-tiny-2",
    "student-atto-4",
    "student-atto-2",
)


def get_preset(name: str) -> ModelArch:
    if name not in PRESETS:
        raise ConfigError(
            f"model.preset: bad value {name!r}; allowed: one of {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


def arch_from_params(params: Mapping[str, Any]) -> ModelArch:
    """The architecture the ``model:`` config section asks for: a preset plus overrides."""
    arch = get_preset(params.get("preset", "demo-teacher"))
    changes = {
        key: params[key]
        for key in ("backbone", "backbone_kwargs", "bifpn_width", "bifpn_blocks", "input_size")
        if params.get(key) is not None
    }
    if "backbone" in changes and "backbone_kwargs" not in changes:
        changes["backbone_kwargs"] = {}  # preset kwargs belong to the preset's backbone
    return arch.replace(**changes) if changes else arch
