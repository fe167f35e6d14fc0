"""The Table 2 analogue: throughput and efficiency figures gathered from the run and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

INFER_KEYS = ("images_per_s", "frames", "wall_s", "mean_worker_utilisation", "peak_rss_mb")


def rows_from_infer_metrics(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per (model, run) from the inference metrics JSON files."""
    rows = []
    for path in paths:
        path = Path(path)
        data = json.loads(path.read_text())
        source = f"infer:{path.parent.name}/{path.name.removesuffix('.metrics.json')}"
        for key in INFER_KEYS:
            if isinstance(data.get(key), int | float):
                rows.append({"source": source, "figure": key, "value": data[key]})
    return rows


def rows_from_benchmarks(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per figure of every benchmark JSON (``{"benchmark", "figures", "machine"}``)."""
    rows = []
    for path in sorted(Path(p) for p in paths):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        name = data.get("benchmark", path.stem)
        device = data.get("machine", {}).get("gpu", "cpu")
        for figure, value in sorted(data.get("figures", {}).items()):
            rows.append(
                {"source": f"benchmark:{name} ({device})", "figure": figure, "value": value}
            )
    return rows


def to_tsv(rows: list[dict[str, Any]]) -> str:
    lines = ["source\tfigure\tvalue"]
    lines += [f"{r['source']}\t{r['figure']}\t{r['value']:.6g}" for r in rows]
    return "\n".join(lines) + "\n"
