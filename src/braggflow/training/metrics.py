"""Per-step metrics (JSON lines) and the loss-curve figure for the report."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from braggflow.atomic import atomic_path


class MetricsLog:
    """Append-only JSONL of one dict per optimiser step; ``truncate(step)`` on resume."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate(self, step: int) -> None:
        """Keep only records with ``step <= step`` (a resumed run rewrites what came after)."""
        if not self.path or not self.path.is_file():
            return
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))

    def write(self, record: Mapping[str, Any]) -> None:
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(dict(record), sort_keys=True) + "\n")
                fh.flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return out


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path, title: str = "training") -> Path:
    """Loss (log scale) and learning rate against optimiser step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    loss = [r["loss"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, loss, lw=1, color="C0", label="training loss")
    if len(loss) >= 10:
        k = max(2, len(loss) // 20)
        smooth = [
            sum(loss[max(0, i - k + 1) : i + 1]) / len(loss[max(0, i - k + 1) : i + 1])
            for i in range(len(loss))
        ]
        ax.plot(steps, smooth, lw=2, color="C3", label=f"running mean ({k})")
    if loss and all(v > 0 and math.isfinite(v) for v in loss):
        ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if records and "lr" in records[0]:
        ax2 = ax.twinx()
        ax2.plot(
            steps, [r["lr"] for r in records], lw=1, ls="--", color="0.5", label="learning rate"
        )
        ax2.set_ylabel("learning rate")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_png
