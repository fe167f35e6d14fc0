"""PeakDiff: match found peaks to predicted reflections and select frames (paper section 2.1.1).

The matcher is a minimum-cost bipartite assignment (``scipy.optimize.linear_sum_assignment``) on
the Euclidean pixel distance between two peak sets, solved independently per detector panel.
Pairs farther apart than ``max_distance_px`` are never matched. The same matcher compares any two
peak sets (found vs predicted here; a method's peaks vs ground truth in evaluation).

Per frame (paper section 2.1.1): ``precision = matched / found`` and ``recall = matched /
predicted``; an empty denominator gives NaN (undefined), never a crash. Frames are kept when
their precision, recall and peak counts pass the configured thresholds (Fig 3's selection box).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Reasons written to the selection TSV (first failing test wins, in this order).
REASON_SELECTED = "selected"
REASON_NOT_INDEXED = "not_indexed"
REASON_FEW_FOUND = "too_few_found"
REASON_FEW_PREDICTED = "too_few_predicted"
REASON_LOW_PRECISION = "low_precision"
REASON_LOW_RECALL = "low_recall"
REASON_BAD_FRAME = "bad_frame"

DEFAULTS: dict[str, Any] = {
    "max_distance_px": 3.0,
    "min_precision": 0.8,
    "min_recall": 0.1,
    "min_found": 10,
    "min_predicted": 10,
    "overlay_frames": 3,
}


@dataclass(frozen=True)
class Match:
    """Result of matching peak set A against peak set B.

    ``a_index[k]`` and ``b_index[k]`` are matched (indices into the inputs), ``distance_px[k]``
    their separation. Unmatched indices are those absent from these arrays.
    """

    a_index: np.ndarray
    b_index: np.ndarray
    distance_px: np.ndarray
    n_a: int
    n_b: int

    @property
    def n_matched(self) -> int:
        return int(self.a_index.size)

    def unmatched_a(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.n_a), self.a_index)

    def unmatched_b(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.n_b), self.b_index)


def _as_1d(values: Any, n: int | None = None, dtype: Any = float) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if n is not None and arr.size != n:
        raise ValueError(f"expected {n} values, got {arr.size}")
    return arr


def match_peaks(
    a_fs: Sequence[float] | np.ndarray,
    a_ss: Sequence[float] | np.ndarray,
    b_fs: Sequence[float] | np.ndarray,
    b_ss: Sequence[float] | np.ndarray,
    max_distance_px: float,
    a_panel: Sequence[int] | np.ndarray | None = None,
    b_panel: Sequence[int] | np.ndarray | None = None,
) -> Match:
    """One-to-one match of peaks A to peaks B minimising total pixel distance (section 2.1.1).

    Peaks on different panels never match (panels default to one shared panel). Among the
    assignments with the largest number of pairs closer than ``max_distance_px`` the one with
    the smallest summed distance is returned: pairs farther apart are left unmatched.
    """
    from scipy.optimize import linear_sum_assignment

    a_fs, a_ss = _as_1d(a_fs), _as_1d(a_ss)
    b_fs, b_ss = _as_1d(b_fs), _as_1d(b_ss)
    n_a, n_b = a_fs.size, b_fs.size
    if a_ss.size != n_a or b_ss.size != n_b:
        raise ValueError("fs and ss of one peak set differ in length")
    pa = np.zeros(n_a, int) if a_panel is None else _as_1d(a_panel, n_a, int)
    pb = np.zeros(n_b, int) if b_panel is None else _as_1d(b_panel, n_b, int)
    empty = Match(np.empty(0, int), np.empty(0, int), np.empty(0, float), n_a, n_b)
    if n_a == 0 or n_b == 0 or not max_distance_px > 0:
        return empty

    out_a, out_b, out_d = [], [], []
    for panel in np.intersect1d(pa, pb):
        ia = np.flatnonzero(pa == panel)
        ib = np.flatnonzero(pb == panel)
        dist = np.hypot(a_fs[ia, None] - b_fs[None, ib], a_ss[ia, None] - b_ss[None, ib])
        ok = dist <= max_distance_px
        ok &= np.isfinite(dist)
        if not ok.any():
            continue
        # Too-far pairs cost more than every allowed pair together, so the optimum first
        # maximises the number of allowed pairs, then minimises their summed distance.
        big = max_distance_px * (min(ia.size, ib.size) + 1) + 1.0
        cost = np.where(ok, dist, big)
        # Only rows/columns with at least one allowed pair take part (smaller problem).
        rows = np.flatnonzero(ok.any(axis=1))
        cols = np.flatnonzero(ok.any(axis=0))
        r, c = linear_sum_assignment(cost[np.ix_(rows, cols)])
        r, c = rows[r], cols[c]
        keep = ok[r, c]
        out_a.append(ia[r[keep]])
        out_b.append(ib[c[keep]])
        out_d.append(dist[r[keep], c[keep]])
    if not out_a:
        return empty
    a_idx = np.concatenate(out_a)
    order = np.argsort(a_idx, kind="stable")
    return Match(a_idx[order], np.concatenate(out_b)[order], np.concatenate(out_d)[order], n_a, n_b)


def precision_recall(n_matched: int, n_found: int, n_predicted: int) -> tuple[float, float]:
    """Paper section 2.1.1: precision = matched/found, recall = matched/predicted (NaN if empty)."""
    precision = n_matched / n_found if n_found > 0 else math.nan
    recall = n_matched / n_predicted if n_predicted > 0 else math.nan
    return precision, recall


@dataclass
class FrameStats:
    """One frame's PeakDiff statistics: a row of the selection TSV."""

    file: str
    event: int
    n_found: int
    n_predicted: int
    n_matched: int
    indexed: bool = True
    error: str | None = None
    precision: float = field(init=False)
    recall: float = field(init=False)
    selected: bool = field(default=False, init=False)
    reason: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.precision, self.recall = precision_recall(
            self.n_matched, self.n_found, self.n_predicted
        )


def selection_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The peakdiff config section with defaults filled (for standalone use without the schema)."""
    out = dict(DEFAULTS)
    out.update({k: v for k, v in (params or {}).items() if v is not None})
    return out


def select_reason(stats: FrameStats, params: Mapping[str, Any]) -> str:
    """Why a frame is kept or rejected: the first threshold it fails, else ``selected``."""
    p = selection_params(params)
    if stats.error:
        return REASON_BAD_FRAME
    if not stats.indexed:
        return REASON_NOT_INDEXED
    if stats.n_found < p["min_found"]:
        return REASON_FEW_FOUND
    if stats.n_predicted < p["min_predicted"]:
        return REASON_FEW_PREDICTED
    if not (stats.precision >= p["min_precision"]):  # NaN fails
        return REASON_LOW_PRECISION
    if not (stats.recall >= p["min_recall"]):
        return REASON_LOW_RECALL
    return REASON_SELECTED


def apply_selection(stats: list[FrameStats], params: Mapping[str, Any]) -> list[FrameStats]:
    """Fill ``selected`` and ``reason`` of every frame in place; returns the same list."""
    for row in stats:
        row.reason = select_reason(row, params)
        row.selected = row.reason == REASON_SELECTED
    return stats


def frame_stats(
    file: str,
    event: int,
    found: tuple[np.ndarray, np.ndarray, np.ndarray],
    predicted: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    max_distance_px: float,
) -> tuple[FrameStats, Match]:
    """Match one frame's found peaks ``(fs, ss, panel)`` to its predicted reflections.

    ``predicted`` is None for a frame that was not indexed (no crystal).
    """
    f_fs, f_ss, f_panel = found
    if predicted is None:
        p_fs = p_ss = np.empty(0)
        p_panel = np.empty(0, int)
    else:
        p_fs, p_ss, p_panel = predicted
    match = match_peaks(f_fs, f_ss, p_fs, p_ss, max_distance_px, f_panel, p_panel)
    stats = FrameStats(
        file=file,
        event=int(event),
        n_found=match.n_a,
        n_predicted=match.n_b,
        n_matched=match.n_matched,
        indexed=predicted is not None and match.n_b > 0,
    )
    return stats, match


# --- selection TSV (DESIGN.md "Selection") -------------------------------------------------

TSV_COLUMNS = (
    "file",
    "event",
    "n_found",
    "n_predicted",
    "n_matched",
    "precision",
    "recall",
    "selected",
    "reason",
)


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4f}"


def format_selection_tsv(stats: Sequence[FrameStats]) -> str:
    lines = ["\t".join(TSV_COLUMNS)]
    for s in stats:
        lines.append(
            "\t".join(
                [
                    s.file,
                    str(s.event),
                    str(s.n_found),
                    str(s.n_predicted),
                    str(s.n_matched),
                    _fmt(s.precision),
                    _fmt(s.recall),
                    "1" if s.selected else "0",
                    s.reason,
                ]
            )
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SelectionRow:
    file: str
    event: int
    n_found: int
    n_predicted: int
    n_matched: int
    precision: float
    recall: float
    selected: bool
    reason: str


def parse_selection_tsv(text: str, where: str = "<selection>") -> list[SelectionRow]:
    """Read a selection TSV written by :func:`format_selection_tsv`."""
    from braggflow.errors import InputError

    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise InputError(where, "empty selection file", "rerun the peakdiff stage")
    header = lines[0].split("\t")
    missing = [c for c in TSV_COLUMNS if c not in header]
    if missing:
        raise InputError(where, f"missing columns {missing}", "write it with 'braggflow peakdiff'")
    col = {name: header.index(name) for name in TSV_COLUMNS}
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        try:
            rows.append(
                SelectionRow(
                    file=f[col["file"]],
                    event=int(f[col["event"]]),
                    n_found=int(f[col["n_found"]]),
                    n_predicted=int(f[col["n_predicted"]]),
                    n_matched=int(f[col["n_matched"]]),
                    precision=float(f[col["precision"]]),
                    recall=float(f[col["recall"]]),
                    selected=f[col["selected"]].strip().lower() in ("1", "true", "yes"),
                    reason=f[col["reason"]],
                )
            )
        except (IndexError, ValueError):
            raise InputError(
                f"{where}:{lineno}", "malformed selection row", "rerun the peakdiff stage"
            ) from None
    return rows


# --- figures (Figs 2 and 3) ------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_counts(stats: Sequence[FrameStats], path: str, title: str = "") -> None:
    """Found vs predicted peak counts per frame, coloured by selection."""
    from braggflow.atomic import atomic_path

    plt = _pyplot()
    found = np.array([s.n_found for s in stats], float)
    pred = np.array([s.n_predicted for s in stats], float)
    sel = np.array([s.selected for s in stats], bool)
    fig, ax = plt.subplots(figsize=(5.0, 4.5), dpi=100)
    ax.scatter(pred[~sel], found[~sel], s=14, c="0.6", label=f"rejected ({(~sel).sum()})")
    ax.scatter(pred[sel], found[sel], s=14, c="tab:blue", label=f"selected ({sel.sum()})")
    top = max(1.0, float(np.nanmax(np.r_[found, pred, 1.0])))
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="found = predicted")
    ax.set_xlabel("predicted reflections per frame")
    ax.set_ylabel("found peaks per frame")
    ax.set_title(title or "PeakDiff: found vs predicted")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_precision_recall(
    stats: Sequence[FrameStats], params: Mapping[str, Any], path: str, title: str = ""
) -> None:
    """Per-frame precision vs recall with the selection box (paper Fig 3)."""
    from matplotlib.patches import Rectangle

    from braggflow.atomic import atomic_path

    p = selection_params(params)
    plt = _pyplot()
    prec = np.array([s.precision for s in stats], float)
    rec = np.array([s.recall for s in stats], float)
    sel = np.array([s.selected for s in stats], bool)
    ok = np.isfinite(prec) & np.isfinite(rec)
    fig, ax = plt.subplots(figsize=(5.0, 4.5), dpi=100)
    ax.add_patch(
        Rectangle(
            (p["min_recall"], p["min_precision"]),
            1.02 - p["min_recall"],
            1.02 - p["min_precision"],
            fill=True,
            alpha=0.12,
            color="tab:green",
            label=f"selection box (P>={p['min_precision']}, R>={p['min_recall']})",
        )
    )
    ax.scatter(rec[ok & ~sel], prec[ok & ~sel], s=14, c="0.6", label="rejected")
    ax.scatter(rec[ok & sel], prec[ok & sel], s=14, c="tab:blue", label="selected")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall = matched / predicted")
    ax.set_ylabel("precision = matched / found")
    n_undef = int((~ok).sum())
    ax.set_title(title or f"PeakDiff precision-recall ({n_undef} frames undefined)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@dataclass
class OverlayFrame:
    """What the matching overlay draws for one frame (assembled-image pixel coordinates)."""

    title: str
    image: np.ndarray
    found_xy: np.ndarray  # (n, 2)
    predicted_xy: np.ndarray  # (m, 2)
    matched_found: np.ndarray  # bool (n,)
    matched_predicted: np.ndarray  # bool (m,)


def plot_overlay(frames: Sequence[OverlayFrame], path: str) -> None:
    """Found peaks and predicted reflections on example frames, matches highlighted (Fig 2)."""
    from braggflow.atomic import atomic_path

    plt = _pyplot()
    n = max(1, len(frames))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 5.2), dpi=100, squeeze=False)
    for ax, fr in zip(axes[0], frames, strict=False):
        img = np.nan_to_num(fr.image.astype(float), nan=0.0)
        lo, hi = np.percentile(img, [1.0, 99.7]) if img.size else (0.0, 1.0)
        ax.imshow(img, cmap="gray_r", vmin=lo, vmax=max(hi, lo + 1e-6), origin="upper")
        fxy, pxy = fr.found_xy.reshape(-1, 2), fr.predicted_xy.reshape(-1, 2)
        mf, mp = fr.matched_found.astype(bool), fr.matched_predicted.astype(bool)
        ax.scatter(
            *pxy[~mp].T,
            s=40,
            facecolors="none",
            edgecolors="tab:orange",
            lw=0.7,
            label="predicted, unmatched",
        )
        ax.scatter(
            *pxy[mp].T,
            s=40,
            facecolors="none",
            edgecolors="tab:green",
            lw=0.9,
            label="predicted, matched",
        )
        ax.scatter(*fxy[mf].T, s=10, marker="+", c="tab:green", lw=0.9, label="found, matched")
        ax.scatter(*fxy[~mf].T, s=14, marker="x", c="tab:red", lw=0.9, label="found, unmatched")
        ax.set_title(fr.title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[0][len(frames) :]:
        ax.axis("off")
        ax.text(0.5, 0.5, "no frame to show", ha="center", va="center")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 0.98))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def pick_overlay_events(stats: Sequence[FrameStats], n: int) -> list[int]:
    """Example frames for Fig 2: the best selected frame, a borderline one, a rejected one."""
    if n <= 0 or not stats:
        return []
    sel = [s for s in stats if s.selected]
    rej = [s for s in stats if not s.selected and s.n_found > 0 and s.n_predicted > 0]
    picks: list[FrameStats] = []
    if sel:
        picks.append(max(sel, key=lambda s: (s.n_matched, s.event)))
        picks.append(min(sel, key=lambda s: (s.precision, s.event)))
    if rej:
        picks.append(max(rej, key=lambda s: (s.n_found, s.event)))
    picks += list(stats)
    out: list[int] = []
    for s in picks:
        if s.event not in out:
            out.append(s.event)
    return out[:n]


# --- peak sets of a stream chunk ---------------------------------------------------------------


def panel_indices(
    names: np.ndarray | None, fs: np.ndarray, ss: np.ndarray, geometry: Any
) -> np.ndarray:
    """Panel index of each peak: by panel name where the stream gives one, else by position."""
    fs = np.asarray(fs, float).reshape(-1)
    ss = np.asarray(ss, float).reshape(-1)
    out = np.full(fs.size, -1, int)
    lookup = {p.name: i for i, p in enumerate(geometry.panels)}
    if names is not None and len(names) == fs.size:
        for k, name in enumerate(names):
            out[k] = lookup.get(str(name), -1)
    missing = out < 0
    if missing.any():
        pmap = geometry.panel_index_map()
        n_ss, n_fs = pmap.shape
        ifs = np.rint(fs[missing]).astype(int)
        iss = np.rint(ss[missing]).astype(int)
        ok = (ifs >= 0) & (ifs < n_fs) & (iss >= 0) & (iss < n_ss)
        vals = np.full(ifs.size, -1, int)
        vals[ok] = pmap[iss[ok], ifs[ok]]
        out[missing] = vals
    return out


def chunk_found(chunk: Any, geometry: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fs, ss, panel) of a stream chunk's found peaks (empty arrays when it has none)."""
    peaks = getattr(chunk, "peaks", None)
    if peaks is None or len(peaks) == 0:
        return np.empty(0), np.empty(0), np.empty(0, int)
    fs, ss = np.asarray(peaks.fs, float), np.asarray(peaks.ss, float)
    return fs, ss, panel_indices(peaks.panel, fs, ss, geometry)


def chunk_predicted(
    chunk: Any, geometry: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(fs, ss, panel, I/sigma) of all crystals' predicted reflections; None if not indexed."""
    crystals = [c for c in getattr(chunk, "crystals", []) if c.reflections is not None]
    if not crystals:
        return None
    fs = np.concatenate([np.asarray(c.reflections.fs, float) for c in crystals])
    ss = np.concatenate([np.asarray(c.reflections.ss, float) for c in crystals])
    names = np.concatenate([np.asarray(c.reflections.panel, object) for c in crystals])
    inten = np.concatenate([np.asarray(c.reflections.intensity, float) for c in crystals])
    sigma = np.concatenate([np.asarray(c.reflections.sigma, float) for c in crystals])
    with np.errstate(divide="ignore", invalid="ignore"):
        i_over_sigma = np.where(sigma > 0, inten / sigma, np.nan)
    return fs, ss, panel_indices(names, fs, ss, geometry), i_over_sigma


# --- agreement with ground truth (simulated data) -----------------------------------------------


def crystals_correct(
    crystals: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    lattices: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    lattice_needed: Sequence[bool],
    max_distance_px: float,
    min_fraction: float = 0.5,
) -> bool:
    """Whether a frame is correctly indexed: every needed true lattice has an indexed crystal
    whose predicted reflections land on that lattice's true reflections (at least
    ``min_fraction`` of them within ``max_distance_px``), and no crystal matches none."""
    if not crystals:
        return False
    found = np.zeros(len(lattices), bool)
    for c_fs, c_ss, c_panel in crystals:
        ok = False
        for k, (t_fs, t_ss, t_panel) in enumerate(lattices):
            m = match_peaks(c_fs, c_ss, t_fs, t_ss, max_distance_px, c_panel, t_panel)
            if c_fs.size and m.n_matched >= min_fraction * c_fs.size:
                found[k] = ok = True
        if not ok:
            return False
    return bool(np.all(found | ~np.asarray(lattice_needed, bool)))


def selection_truth_summary(
    stats: Sequence[FrameStats],
    blank: Sequence[bool],
    correct: Sequence[bool],
    eligible: Sequence[bool],
) -> dict[str, Any]:
    """Selection vs ground truth: share of correctly indexed hits kept, blanks kept."""
    sel = np.array([s.selected for s in stats], bool)
    blank = np.asarray(blank, bool)
    good = np.asarray(correct, bool) & np.asarray(eligible, bool)
    n_good = int(good.sum())
    return {
        "frames": len(stats),
        "selected": int(sel.sum()),
        "blank_frames": int(blank.sum()),
        "blank_selected": int((sel & blank).sum()),
        "correct_hits_eligible": n_good,
        "correct_hits_selected": int((sel & good).sum()),
        "kept_fraction_of_correct_hits": float((sel & good).sum() / n_good) if n_good else None,
        "selected_correct_fraction": float((sel & np.asarray(correct, bool)).sum() / sel.sum())
        if sel.any()
        else None,
    }
