"""Shared helpers for benchmarks: argument parsing and the flat JSON result format."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
from collections.abc import Mapping
from pathlib import Path

from braggflow.atomic import atomic_write_json

PACKAGES = (
    "braggflow",
    "numpy",
    "scipy",
    "h5py",
    "torch",
    "timm",
    "ray",
    "lmfit",
    "cctbx-base",
    "ondamonitor",
)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, help="JSON file to write the figures to")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for smoke tests)")
    return parser.parse_args()


def machine() -> dict[str, object]:
    info: dict[str, object] = {
        "node": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def write_result(
    path: str | Path, name: str, figures: Mapping[str, float], **extra: object
) -> dict:
    result = {
        "benchmark": name,
        "figures": {k: float(v) for k, v in figures.items()},
        "machine": machine(),
        "versions": versions(),
        **extra,
    }
    atomic_write_json(path, result)
    return result
