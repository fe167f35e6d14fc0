"""Tool and package versions for the provenance report."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess

PACKAGES = (
    "braggflow",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "numpy",
    "scipy",
    "h5py",
    "torch",
    "timm",
    "ray",
    "lmfit",
    "cctbx-base",
    "ondamonitor",
    "mpi4py",
)
TOOLS = {
    "indexamajig": ["indexamajig", "--version"],
    "cheetah": ["cheetah", "--version"],
    "srun": ["srun", "--version"],
    "mpiexec": ["mpiexec", "--version"],
}


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def tool_versions() -> dict[str, str]:
    out = {}
    for name, cmd in TOOLS.items():
        if shutil.which(cmd[0]) is None:
            out[name] = "not on PATH (built-in engine used)" if name != "srun" else "not on PATH"
            continue
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            text = (res.stdout or res.stderr).strip().splitlines()
            ok = res.returncode == 0 and text
            out[name] = text[0] if ok else f"on PATH, version query failed (exit {res.returncode})"
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[name] = f"error: {exc}"
    return out
