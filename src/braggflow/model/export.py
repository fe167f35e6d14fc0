"""Exported model files: ``torch.save({"arch": ..., "state_dict": ...})`` + a JSON of the arch.

Loading uses ``torch.load(weights_only=True)`` only: nothing but tensors and primitives is read
(docs/conventions.md, "Exported model").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from braggflow.atomic import atomic_path, atomic_write_json
from braggflow.errors import InputError
from braggflow.model.arch import ModelArch
from braggflow.model.peaknet import PeakNet, build_model

_WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_orig_mod.")


def clean_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (activation checkpointing, torch.compile); plain contiguous CPU tensors."""
    out = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.replace(prefix, "")
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def export_model(
    model: PeakNet | Mapping[str, torch.Tensor],
    arch: ModelArch | Mapping[str, Any],
    path: str | Path,
    arch_json: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``path`` (.pt) and ``arch_json`` (default: ``path`` with .json) atomically.

    ``model`` may be a module or an already gathered full state dict; ``extra`` (primitives)
    is stored in the JSON only (e.g. provenance, training summary).
    """
    arch_dict = (
        arch.to_dict() if isinstance(arch, ModelArch) else ModelArch.from_dict(arch).to_dict()
    )
    sd = model.state_dict() if isinstance(model, torch.nn.Module) else model
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"arch": arch_dict, "state_dict": clean_state_dict(sd)}, tmp)
    meta = {"arch": arch_dict, **dict(extra or {})}
    atomic_write_json(arch_json or path.with_suffix(".json"), meta)
    return path


def load_exported(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[PeakNet, dict[str, Any]]:
    """Rebuild an exported model in eval mode on ``device``; returns ``(model, arch_dict)``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "exported model not found", "run the train (or distill) stage first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise InputError(
            path, f"not a braggflow model file ({type(exc).__name__})", "re-export it"
        ) from None
    if not isinstance(blob, dict) or "arch" not in blob or "state_dict" not in blob:
        raise InputError(path, "missing 'arch' or 'state_dict'", "re-export it with export_model")
    arch = ModelArch.from_dict(blob["arch"])
    model = build_model(arch, device="meta")
    model.load_state_dict(blob["state_dict"], assign=True)
    model = model.to(device).eval()
    return model, arch.to_dict()


def read_arch_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())["arch"]
