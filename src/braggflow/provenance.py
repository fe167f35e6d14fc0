"""Provenance stamped on every output: braggflow version, git commit, config subset, input checksums."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from braggflow import __version__


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def git_commit() -> str:
    """The commit of the braggflow checkout (``unknown`` outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(
    config: Mapping[str, Any] | None = None, inputs: Iterable[str | Path] = ()
) -> dict[str, Any]:
    """A JSON-serialisable provenance record."""
    return {
        "braggflow_version": __version__,
        "git_commit": git_commit(),
        "config": dict(config or {}),
        "inputs": {str(p): sha256_file(p) for p in inputs if Path(p).is_file()},
    }


def stamp_h5(
    h5obj: Any, config: Mapping[str, Any] | None = None, inputs: Iterable[str | Path] = ()
) -> None:
    """Store provenance as HDF5 attributes (``braggflow_provenance`` holds the JSON)."""
    record = provenance(config, inputs)
    h5obj.attrs["braggflow_version"] = record["braggflow_version"]
    h5obj.attrs["braggflow_git_commit"] = record["git_commit"]
    h5obj.attrs["braggflow_provenance"] = json.dumps(record, sort_keys=True, default=str)


def write_sidecar(
    path: str | Path, config: Mapping[str, Any] | None = None, inputs: Iterable[str | Path] = ()
) -> Path:
    """Write ``<path>.provenance.json`` beside an output that cannot hold attributes (TSV, stream)."""
    from braggflow.atomic import atomic_write_json

    side = Path(str(path) + ".provenance.json")
    atomic_write_json(side, provenance(config, inputs))
    return side
