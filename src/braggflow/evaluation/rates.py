"""The paper's headline metrics (section 3.1, Table 1).

hit rate = hits / frames; indexing rate = indexed hits / hits; indexing yield = hit rate x
indexing rate = indexed hits / frames. A hit is a frame with at least ``min_peaks`` found peaks,
the same rule for every method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Rates:
    frames: int
    hits: int
    indexed: int
    hit_rate: float
    index_rate: float
    index_yield: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def rates_from_counts(frames: int, hits: int, indexed: int) -> Rates:
    """Rates from counts; ``indexed`` counts indexed frames among the hits only."""
    if not 0 <= indexed <= hits <= frames:
        raise ValueError(f"need 0 <= indexed ({indexed}) <= hits ({hits}) <= frames ({frames})")
    hit_rate = _ratio(hits, frames)
    index_rate = _ratio(indexed, hits)
    return Rates(frames, hits, indexed, hit_rate, index_rate, hit_rate * index_rate)


def hit_mask(n_peaks: np.ndarray, min_peaks: int) -> np.ndarray:
    """Frames called hits: at least ``min_peaks`` peaks."""
    return np.asarray(n_peaks) >= min_peaks


def frame_rates(n_peaks: np.ndarray, indexed: np.ndarray, min_peaks: int) -> Rates:
    """Rates from per-frame peak counts and per-frame 'has an indexed crystal' flags."""
    hits = hit_mask(n_peaks, min_peaks)
    indexed = np.asarray(indexed, dtype=bool)
    return rates_from_counts(len(hits), int(hits.sum()), int((hits & indexed).sum()))


CELL_KEYS = ("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg")


def cell_statistics(cells: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation of each cell parameter over indexed frames (Fig 6)."""
    cells = np.asarray(cells, dtype=float).reshape(-1, 6)
    out: dict[str, float] = {}
    for i, key in enumerate(CELL_KEYS):
        column = cells[:, i]
        out[f"{key}_mean"] = float(column.mean()) if len(column) else float("nan")
        out[f"{key}_std"] = float(column.std(ddof=1)) if len(column) > 1 else float("nan")
    return out
