"""Index a run with the built-in engine: frames in parallel, results as CrystFEL stream chunks.

Every frame of the peak file becomes one chunk (as indexamajig writes them): frames below the
hit threshold with ``hit = 0``, unindexed hits with ``indexed_by = none``, indexed frames with
their crystals and predicted (ring-integrated) reflections. Frames that cannot be processed (bad
photon energy, unreadable data, an error in the indexer) are skipped and counted by reason.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from braggflow.formats.cell import UnitCell
from braggflow.formats.geometry import Geometry
from braggflow.formats.stream import Chunk, Crystal, PeakList, ReflectionList
from braggflow.indexing.builtin import BuiltinIndexer, BuiltinParams, FrameResult
from braggflow.indexing.integrate import integrate_rings

log = logging.getLogger(__name__)

# CrystFEL's stream reader accepts only its own engine names in ``indexed_by`` (any other is
# reported as an error for every chunk). DPS is the autoindexing algorithm of MOSFLM, so the
# built-in results carry that family name; the stream header names the real engine.
BUILTIN_INDEXED_BY = "mosflm-latt-cell"
BUILTIN_ENGINE_TEXT = (
    "braggflow built-in DPS indexer (target-cell DPS transform + cctbx rstbx dps_core)"
)


@dataclass(frozen=True)
class FrameTask:
    index: int
    fs: np.ndarray
    ss: np.ndarray
    intensity: np.ndarray
    photon_energy_ev: float | None
    clen_m: float | None


@dataclass
class FrameOutcome:
    """What the stream and the summary need from one frame."""

    index: int
    n_peaks: int
    photon_energy_ev: float | None
    clen_m: float | None
    hit: bool = False
    peaks: PeakList | None = None
    crystals: list[Crystal] = field(default_factory=list)
    reason: str | None = None  # why not indexed
    skipped: str | None = None  # why the frame could not be processed at all
    seconds: float = 0.0


@dataclass(frozen=True)
class IntegrationSettings:
    method: str = "rings"
    radii: tuple[float, float, float] = (3.0, 4.0, 5.0)


# ----------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {}


def _init_worker(
    geom: Geometry,
    cell: UnitCell,
    params: BuiltinParams,
    frames_path: str | None,
    integration: IntegrationSettings,
) -> None:
    _STATE.clear()
    _STATE["indexer"] = BuiltinIndexer(geom, cell, params)
    _STATE["cell"] = cell
    _STATE["integration"] = integration
    _STATE["frames_path"] = frames_path
    _STATE["adu_per_photon"] = _adu_per_photon(geom)
    _STATE["panel_map"] = geom.panel_index_map()


def _adu_per_photon(geom: Geometry) -> float:
    for p in geom.panels:
        if p.adu_per_photon:
            return float(p.adu_per_photon)
    value = geom.globals.get("adu_per_photon")
    try:
        return float(value) if value is not None else 1.0
    except ValueError:
        return 1.0


def _frame_source():
    if "source" not in _STATE:
        from braggflow.formats.frames import FrameSource

        indexer: BuiltinIndexer = _STATE["indexer"]
        src = FrameSource(_STATE["frames_path"], indexer.geom)
        _STATE["source"] = src
        _STATE["bad"] = src.bad_pixels()
    return _STATE["source"], _STATE["bad"]


def index_one(task: FrameTask) -> FrameOutcome:
    """Index one frame in a worker (never raises: errors become a skipped-and-counted frame)."""
    t0 = time.perf_counter()
    out = FrameOutcome(task.index, len(task.fs), task.photon_energy_ev, task.clen_m)
    try:
        _index_into(task, out)
    except Exception as exc:  # one bad frame must not end the run
        log.warning("frame %d: %s: %s", task.index, type(exc).__name__, exc)
        out.crystals, out.skipped = [], f"error: {type(exc).__name__}"
    out.seconds = time.perf_counter() - t0
    return out


def _index_into(task: FrameTask, out: FrameOutcome) -> None:
    indexer: BuiltinIndexer = _STATE["indexer"]
    energy = task.photon_energy_ev
    if energy is None or not math.isfinite(energy) or energy <= 0:
        out.skipped = "bad_photon_energy"
        return
    finite = np.isfinite(task.fs) & np.isfinite(task.ss) & np.isfinite(task.intensity)
    fs, ss, inten = task.fs[finite], task.ss[finite], task.intensity[finite]
    det = indexer.detector(task.clen_m)
    wavelength = 12398.419843320026 / energy
    panel = det.panel_of(fs, ss)
    on = panel >= 0
    q = det.scattering_vectors(panel[on], fs[on], ss[on], wavelength)
    out.peaks = PeakList(
        fs=fs[on],
        ss=ss[on],
        one_over_d_nm=np.linalg.norm(q, axis=1) * 10.0,
        intensity=inten[on],
        panel=np.array([det.names[i] for i in panel[on]], dtype=object),
    )
    out.hit = len(fs) >= indexer.params.min_peaks
    result: FrameResult = indexer.index_frame(fs, ss, inten, energy, task.clen_m)
    out.reason = result.reason
    if result.crystals:
        out.crystals = [_stream_crystal(c, det.names, _STATE["cell"]) for c in result.crystals]
        _integrate(task.index, out.crystals)


def _stream_crystal(c: Any, names: tuple[str, ...], cell: UnitCell) -> Crystal:
    pred = c.prediction
    n = len(pred)
    rstar_nm = np.asarray(c.reciprocal, float) * 10.0
    refl = ReflectionList(
        h=pred.hkl[:, 0].astype(np.int32),
        k=pred.hkl[:, 1].astype(np.int32),
        l=pred.hkl[:, 2].astype(np.int32),
        intensity=np.zeros(n),
        sigma=np.zeros(n),
        peak=np.zeros(n),
        background=np.zeros(n),
        fs=pred.fs.astype(float),
        ss=pred.ss.astype(float),
        panel=np.array([names[i] for i in pred.panel], dtype=object),
    )
    return Crystal(
        astar=rstar_nm[0],
        bstar=rstar_nm[1],
        cstar=rstar_nm[2],
        lattice_type=cell.lattice_type,
        centering=cell.centering,
        unique_axis=cell.unique_axis,
        profile_radius_nm=float(c.profile_radius) * 10.0,
        resolution_limit_nm=float(c.resolution_limit) * 10.0,
        det_shift_mm=(0.0, 0.0),
        num_saturated=0,
        num_implausible=0,
        reflections=refl,
    )


def _integrate(index: int, crystals: list[Crystal]) -> None:
    settings: IntegrationSettings = _STATE["integration"]
    if settings.method == "none" or _STATE["frames_path"] is None:
        return
    src, bad = _frame_source()
    frame = src.read(index)
    indexer: BuiltinIndexer = _STATE["indexer"]
    pmap = _STATE["panel_map"]
    lookup = {p.name: i for i, p in enumerate(indexer.geom.panels)}
    for cr in crystals:
        r = cr.reflections
        panel = np.array([lookup[str(n)] for n in r.panel], dtype=np.int64)
        res = integrate_rings(
            frame,
            bad[: frame.shape[0], : frame.shape[1]] if bad is not None else None,
            pmap,
            panel,
            r.fs,
            r.ss,
            settings.radii,
            _STATE["adu_per_photon"],
        )
        r.intensity, r.sigma, r.peak, r.background = (
            res.intensity,
            res.sigma,
            res.peak,
            res.background,
        )


# ----------------------------------------------------------------------------- driver side


def index_frames(
    tasks: list[FrameTask],
    geom: Geometry,
    cell: UnitCell,
    params: BuiltinParams,
    threads: int = 1,
    frames_path: str | None = None,
    integration: IntegrationSettings | None = None,
) -> list[FrameOutcome]:
    """Index every task, in ``threads`` worker processes (fork) when more than one."""
    integration = integration or IntegrationSettings()
    init = (geom, cell, params, frames_path, integration)
    if threads <= 1 or len(tasks) <= 1:
        _init_worker(*init)
        return [index_one(t) for t in tasks]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes=int(threads), initializer=_init_worker, initargs=init) as pool:
        return list(pool.imap(index_one, tasks, chunksize=max(1, len(tasks) // (8 * threads))))


def outcome_chunk(out: FrameOutcome, filename: str, bandwidth: float) -> Chunk:
    """The stream chunk of one frame (CrystFEL 0.10+ layout)."""
    peaks = out.peaks if out.peaks is not None else PeakList.empty()
    res = float(peaks.one_over_d_nm.max()) if len(peaks) else 0.0
    chunk = Chunk(
        filename=filename,
        event=f"//{out.index}",
        serial=out.index + 1,
        hit=int(out.hit),
        indexed_by=BUILTIN_INDEXED_BY if out.crystals else "none",
        n_indexing_tries=1 if out.crystals else None,
        photon_energy_ev=out.photon_energy_ev,
        beam_divergence_rad=0.0,
        beam_bandwidth=bandwidth,
        average_camera_length_m=out.clen_m,
        num_peaks=len(peaks),
        peak_resolution_nm=res,
        peaks=peaks,
        crystals=list(out.crystals),
    )
    return chunk


def summarize(outcomes: list[FrameOutcome], wall_seconds: float, threads: int) -> dict[str, Any]:
    """Counts for the sidecar JSON: frames, hits considered, indexed, not indexed/skipped by reason."""
    skipped = Counter(o.skipped for o in outcomes if o.skipped)
    processed = [o for o in outcomes if not o.skipped]
    hits = [o for o in processed if o.hit]
    indexed = [o for o in hits if o.crystals]
    not_indexed = Counter(o.reason or "unknown" for o in hits if not o.crystals)
    seconds = [o.seconds for o in hits]
    return {
        "engine": "builtin",
        "frames": len(outcomes),
        "hits": len(hits),
        "indexed": len(indexed),
        "crystals": sum(len(o.crystals) for o in indexed),
        "index_rate": len(indexed) / len(hits) if hits else 0.0,
        "not_indexed": dict(sorted(not_indexed.items())),
        "skipped": dict(sorted(skipped.items())),
        "seconds_per_hit": float(np.mean(seconds)) if seconds else 0.0,
        "seconds_per_frame": wall_seconds / len(outcomes) if outcomes else 0.0,
        "wall_seconds": wall_seconds,
        "threads": threads,
    }


def summarize_stream(
    chunks: list[Chunk], skipped: int, engine: str, wall_seconds: float, threads: int
) -> dict[str, Any]:
    """The same summary from a parsed stream (indexamajig's)."""
    hits = [c for c in chunks if c.hit is None or c.hit]
    indexed = [c for c in hits if c.crystals]
    return {
        "engine": engine,
        "frames": len(chunks) + skipped,
        "hits": len(hits),
        "indexed": len(indexed),
        "crystals": sum(len(c.crystals) for c in indexed),
        "index_rate": len(indexed) / len(hits) if hits else 0.0,
        "not_indexed": {"not_indexed": len(hits) - len(indexed)}
        if len(hits) > len(indexed)
        else {},
        "skipped": {"truncated_or_corrupt_chunk": skipped} if skipped else {},
        "seconds_per_frame": wall_seconds / max(1, len(chunks)),
        "wall_seconds": wall_seconds,
        "threads": threads,
    }
