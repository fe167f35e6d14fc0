"""A whole find_peaks run: frames file -> one CXI peak list + a statistics JSON.

Frames are split into contiguous blocks over MPI ranks (mpi4py, when started by ``mpiexec`` or
``srun``); every frame's peaks depend on that frame only, rank 0 gathers and writes, so the
output is identical for any number of ranks. Without MPI the same code runs in one process.

A bad frame (unreadable, mostly NaN/inf, constant such as an all-zero dropout) is skipped AND
counted with its reason; it keeps an empty row in the peak list so frame numbers stay aligned.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError
from braggflow.formats.cxi import PeakTable
from braggflow.formats.geometry import Geometry
from braggflow.peakfinder8.algorithm import Peakfinder8, Peakfinder8Params

log = logging.getLogger("braggflow.find_peaks")

_MPI_ENV = (
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
    "SLURM_PROCID",
)


@dataclass
class FrameOutcome:
    """One frame's result: its peaks, or why it was skipped."""

    index: int
    table: PeakTable
    skipped: str | None = None
    nonfinite: int = 0


@dataclass
class RunStats:
    frames: int = 0
    outcomes: list[FrameOutcome] = field(default_factory=list)

    def summary(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The per-run statistics written beside the peak list."""
        peaks = [len(o.table) for o in self.outcomes]
        skipped = [o for o in self.outcomes if o.skipped]
        processed = [o for o in self.outcomes if not o.skipped]
        per = np.array([len(o.table) for o in processed]) if processed else np.zeros(0)
        return {
            "frames": self.frames,
            "frames_processed": len(processed),
            "frames_skipped": len(skipped),
            "skipped_by_reason": dict(Counter(_reason_kind(o.skipped) for o in skipped)),
            "skipped_frames": [{"frame": o.index, "reason": o.skipped} for o in skipped],
            "peaks_total": int(sum(peaks)),
            "peaks_per_frame": peaks,
            "peaks_per_frame_mean": float(per.mean()) if per.size else 0.0,
            "peaks_per_frame_median": float(np.median(per)) if per.size else 0.0,
            "frames_without_peaks": int(sum(1 for o in processed if len(o.table) == 0)),
            "nonfinite_pixels": int(sum(o.nonfinite for o in self.outcomes)),
            **dict(extra or {}),
        }


def _reason_kind(reason: str | None) -> str:
    return (reason or "").split(":", 1)[0]


def frame_problem(
    frame: np.ndarray, good: np.ndarray, max_nonfinite_fraction: float
) -> tuple[str | None, int]:
    """Why a frame cannot be searched (None if it can), and its count of NaN/inf pixels."""
    lo, hi = float(np.min(frame)), float(np.max(frame))
    nonfinite = 0
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = ~np.isfinite(frame) & good
        nonfinite = int(bad.sum())
        n_good = max(int(good.sum()), 1)
        if nonfinite / n_good > max_nonfinite_fraction:
            return f"nonfinite: {nonfinite} of {n_good} usable pixels are NaN/inf", nonfinite
        finite = frame[np.isfinite(frame)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if lo == hi:
        return f"constant: every pixel is {lo:g} (detector dropout or empty frame)", nonfinite
    return None, nonfinite


def mpi_world() -> tuple[Any, int, int]:
    """(comm, rank, size) under an MPI launcher, else (None, 0, 1) without importing mpi4py."""
    if not any(k in os.environ for k in _MPI_ENV):
        return None, 0, 1
    try:
        from mpi4py import MPI
    except ImportError:
        return None, 0, 1
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return None, 0, 1
    return comm, comm.Get_rank(), comm.Get_size()


def my_frames(n_frames: int, rank: int, size: int) -> range:
    """The contiguous block of frames this rank searches."""
    edges = np.linspace(0, n_frames, size + 1).round().astype(int)
    return range(int(edges[rank]), int(edges[rank + 1]))


def search_frames(
    source: Any,
    indices: Iterable[int],
    finder: Peakfinder8,
    good: np.ndarray,
    max_nonfinite_fraction: float,
    batch: int,
) -> list[FrameOutcome]:
    """Search the frames ``indices`` of ``source`` (a FrameSource-like reader) in batches."""
    n_ss, n_fs = finder.shape
    out: list[FrameOutcome] = []
    pending: list[tuple[int, np.ndarray, int]] = []

    def flush() -> None:
        if not pending:
            return
        stack = np.stack([f for _, f, _ in pending])
        tables = finder.find_many(stack, batch=len(pending))
        for (i, _, bad), table in zip(pending, tables, strict=True):
            out.append(FrameOutcome(i, table, None, bad))
        pending.clear()

    for i in indices:
        try:
            frame = source.read(i)[:n_ss, :n_fs]
        except InputError as exc:
            out.append(FrameOutcome(i, PeakTable(), f"unreadable: {exc.problem}"))
            continue
        problem, bad = frame_problem(frame, good, max_nonfinite_fraction)
        if problem is not None:
            out.append(FrameOutcome(i, PeakTable(), problem, bad))
            continue
        pending.append((i, frame, bad))
        if len(pending) >= batch:
            flush()
    flush()
    return sorted(out, key=lambda o: o.index)


def run_builtin(
    frames_path: Path,
    geom: Geometry,
    params: Peakfinder8Params,
    settings: Mapping[str, Any],
    open_frames: Any,
) -> tuple[RunStats | None, int]:
    """Search every frame (MPI-parallel); rank 0 returns the stats, other ranks None."""
    comm, rank, size = mpi_world()
    t0 = time.perf_counter()
    source = open_frames(frames_path, geom)
    try:
        n_frames = len(source)
        good = ~source.bad_pixels()[: geom.slab_shape[0], : geom.slab_shape[1]]
        finder = Peakfinder8.from_geometry(geom, params, good)
        block = my_frames(n_frames, rank, size)
        mine = search_frames(
            source,
            block,
            finder,
            good,
            float(settings.get("max_nonfinite_fraction", 0.5)),
            int(settings.get("batch_frames", 16)),
        )
    finally:
        source.close()
    log.info("rank %d/%d: %d frames in %.2f s", rank, size, len(mine), time.perf_counter() - t0)
    if comm is not None:
        gathered = comm.gather(mine, root=0)
        if rank != 0:
            return None, size
        mine = [o for part in gathered for o in part]
    stats = RunStats(frames=n_frames, outcomes=sorted(mine, key=lambda o: o.index))
    return stats, size


def stats_for_tables(tables: list[PeakTable]) -> RunStats:
    """Statistics for an external engine's tables (no frame was skipped by braggflow)."""
    return RunStats(frames=len(tables), outcomes=[FrameOutcome(i, t) for i, t in enumerate(tables)])
