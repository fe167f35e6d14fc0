"""Figures of the evaluation stage: unit-cell histograms per method (Fig 6 analogue)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from braggflow.atomic import atomic_path

CELL_LABELS = ("a (Å)", "b (Å)", "c (Å)", "α (°)", "β (°)", "γ (°)")


def plot_cell_histograms(cells_by_method: Mapping[str, np.ndarray], out: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for i, (ax, label) in enumerate(zip(axes.flat, CELL_LABELS, strict=True)):
        values = [np.asarray(c, float).reshape(-1, 6)[:, i] for c in cells_by_method.values()]
        finite = np.concatenate([v for v in values if len(v)] or [np.zeros(0)])
        if len(finite):
            lo, hi = np.percentile(finite, [1, 99])
            pad = max(0.02 * abs(hi), 0.5) if hi - lo < 1e-9 else 0.1 * (hi - lo)
            bins = np.linspace(lo - pad, hi + pad, 40)
        else:
            bins = 10
        for (method, _), v in zip(cells_by_method.items(), values, strict=True):
            ax.hist(v, bins=bins, histtype="step", linewidth=1.5, label=f"{method} (n={len(v)})")
        ax.set_xlabel(label)
        ax.set_ylabel("indexed frames")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Unit cells of indexed frames per peak-finding method")
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
