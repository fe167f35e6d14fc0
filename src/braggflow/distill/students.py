"""Students of one run: config entries ``distill.students: [{name, preset, ...overrides}]``.

An entry names a model preset (``braggflow model-info`` lists them; the paper's Table 1 line-up is
``student-tiny-4``, ``student-tiny-2``, ``student-atto-4``, ``student-atto-2``) and may override
``backbone``, ``backbone_kwargs``, ``bifpn_width`` and ``bifpn_blocks`` (the demo students shrink
the backbones this way). The input size is always the teacher's: the cached logits live in the
teacher's input square.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from braggflow.errors import ConfigError
from braggflow.model.arch import ModelArch, arch_from_params

ARCH_KEYS = ("preset", "backbone", "backbone_kwargs", "bifpn_width", "bifpn_blocks")


def find_student(students: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    matches = [entry for entry in students if entry.get("name") == name]
    if len(matches) > 1:
        raise ConfigError(f"distill.students: the name {name!r} is used {len(matches)} times")
    if matches:
        return matches[0]
    names = ", ".join(str(s.get("name")) for s in students) or "(none configured)"
    raise ConfigError(f"distill.students: no student named {name!r}; configured: {names}")


def student_arch(entry: Mapping[str, Any], input_size: int) -> ModelArch:
    """The architecture of one student entry, at the teacher's ``input_size``."""
    params = {k: entry[k] for k in ARCH_KEYS if entry.get(k) is not None}
    params["input_size"] = int(input_size)
    return arch_from_params(params).replace(name=str(entry["name"]))
