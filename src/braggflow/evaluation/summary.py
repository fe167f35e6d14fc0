"""The Table 1 analogue: one row per method, pooled over the evaluation runs."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.evaluation.rates import CELL_KEYS, cell_statistics, rates_from_counts

COLUMNS = [
    "method",
    "runs",
    "frames",
    "hits",
    "indexed",
    "hit_rate",
    "index_rate",
    "index_yield",
    *[f"{k}_{s}" for k in CELL_KEYS for s in ("mean", "std")],
    "peak_precision",
    "peak_recall",
    "correct_orientation_fraction",
    "blank_frames",
    "false_hits",
    "indexed_blank_frames",
]


def load_metrics(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in paths]


def summarise(per_run: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pool per-(method, run) metrics into one row per method (counts summed, rates recomputed)."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for m in per_run:
        groups[m["method"]].append(m)
    rows = []
    for method, items in groups.items():
        frames = sum(m["frames"] for m in items)
        hits = sum(m["hits"] for m in items)
        indexed = sum(m["indexed"] for m in items)
        row: dict[str, Any] = {"method": method, "runs": ",".join(sorted(m["run"] for m in items))}
        row.update(rates_from_counts(frames, hits, indexed).as_dict())
        cells = [c for m in items for c in m.get("cells", [])]
        row.update(cell_statistics(np.asarray(cells, float).reshape(-1, 6)))
        truth = [m["truth"] for m in items if m.get("truth")]
        if truth:
            n_found = sum(t["n_found"] for t in truth)
            n_true = sum(t["n_true_visible"] for t in truth)
            n_matched = sum(t["n_matched"] for t in truth)
            n_checked = sum(t["n_orientation_checked"] for t in truth)
            n_correct = sum(t["n_orientation_correct"] for t in truth)
            row["peak_precision"] = n_matched / n_found if n_found else 0.0
            row["peak_recall"] = n_matched / n_true if n_true else 0.0
            row["correct_orientation_fraction"] = n_correct / n_checked if n_checked else math.nan
            for key in ("blank_frames", "false_hits", "indexed_blank_frames"):
                row[key] = sum(t[key] for t in truth)
        rows.append(row)
    order = {"peakfinder8": 0, "teacher": 1}
    rows.sort(key=lambda r: (order.get(r["method"], 2), r["method"]))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def to_tsv(rows: list[Mapping[str, Any]]) -> str:
    lines = ["\t".join(COLUMNS)]
    for row in rows:
        lines.append("\t".join(_fmt(row.get(c)) for c in COLUMNS))
    return "\n".join(lines) + "\n"


def read_tsv(path: str | Path) -> list[dict[str, str]]:
    header, *body = Path(path).read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"), strict=True)) for line in body]
