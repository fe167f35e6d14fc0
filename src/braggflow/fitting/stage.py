"""The work of the fit_labels stage, independent of how it is scheduled (Ray or in-process).

A *frame job* names one frame (run, file, event) and its candidate peak positions. A batch of
frame jobs is fitted in one vectorised call: every candidate window of every frame in the batch
goes to the solver together (section 2.1.2); the result per frame is its fit table and its
uint8 label slab. A frame that cannot be read is returned with its error (counted, never lost).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from braggflow.fitting.fit import fit_windows, label_windows, paint_labels
from braggflow.fitting.windows import FitSettings, Windows, extract_windows

log = logging.getLogger(__name__)


@dataclass
class FrameJob:
    """One frame to label: where it is and its candidate peaks (raw slab coordinates)."""

    run: str
    frames_path: str
    event: int
    cand_fs: np.ndarray
    cand_ss: np.ndarray
    cand_source: np.ndarray | None = None  # per candidate: 0 matched found peak, 1 prediction


@dataclass
class DetectorContext:
    """Per-detector constants every task needs (shipped once to the Ray object store)."""

    geometry: object  # braggflow.formats.geometry.Geometry
    panel_map: np.ndarray  # (n_ss, n_fs) int, -1 outside panels
    usable: np.ndarray  # (n_ss, n_fs) bool: on a panel and not masked
    photons_per_adu: np.ndarray  # (n_ss, n_fs) float32
    saturation_photons: np.ndarray | None  # (n_ss, n_fs) float32 or None

    @property
    def slab_shape(self) -> tuple[int, int]:
        return tuple(self.panel_map.shape)  # type: ignore[return-value]


@dataclass
class FrameOutput:
    """What a task returns for one frame."""

    run: str
    event: int
    labels: np.ndarray | None  # (n_ss, n_fs) uint8, None when the frame failed
    fits: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None


def detector_context(
    geometry,
    bad_pixels: np.ndarray | None = None,
    saturation_adu: float | None = None,
    photon_energy_ev: float | None = None,
) -> DetectorContext:
    """Panel map, usable pixels, ADU -> photon factors and saturation levels of a geometry.

    Photon scale (section 2.1.2's weights assume photon counts): ADU / ``adu_per_photon``, or
    ADU / (``adu_per_eV`` x photon energy); 1 when the geometry gives neither. Saturation: the
    config's ``saturation_adu`` if set, else each panel's ``max_adu``.
    """
    panel_map = geometry.panel_index_map().astype(np.int32)
    usable = panel_map >= 0
    if bad_pixels is not None:
        n_ss, n_fs = panel_map.shape
        usable &= ~np.asarray(bad_pixels, bool)[:n_ss, :n_fs]
    scale = np.ones(panel_map.shape, np.float32)
    sat = np.full(panel_map.shape, np.inf, np.float32)
    for i, panel in enumerate(geometry.panels):
        on = panel_map == i
        if panel.adu_per_photon:
            scale[on] = 1.0 / float(panel.adu_per_photon)
        elif panel.adu_per_ev and photon_energy_ev:
            scale[on] = 1.0 / (float(panel.adu_per_ev) * float(photon_energy_ev))
        if panel.max_adu is not None:
            sat[on] = float(panel.max_adu)
    if saturation_adu is not None:
        sat[:] = float(saturation_adu)
    has_sat = bool(np.isfinite(sat).any())
    sat_photons = (sat * scale).astype(np.float32) if has_sat else None
    return DetectorContext(geometry, panel_map, usable, scale, sat_photons)


def dedupe_candidates(fs: np.ndarray, ss: np.ndarray, min_separation_px: float) -> np.ndarray:
    """Indices of candidates to keep: the first of any group closer than ``min_separation_px``."""
    n = fs.size
    keep = np.ones(n, bool)
    if n < 2 or min_separation_px <= 0:
        return np.flatnonzero(keep)
    d = np.hypot(fs[:, None] - fs[None, :], ss[:, None] - ss[None, :])
    for i in range(n):
        if keep[i]:
            close = d[i] < min_separation_px
            close[: i + 1] = False
            keep &= ~close
    return np.flatnonzero(keep)


def fit_frames(
    ctx: DetectorContext, jobs: Sequence[FrameJob], settings: FitSettings
) -> list[FrameOutput]:
    """Fit every candidate of a batch of frames in one solver call; labels and fit tables."""
    from braggflow.formats.frames import FrameSource

    sources: dict[str, FrameSource] = {}
    outputs: list[FrameOutput] = []
    windows: list[Windows] = []
    owners: list[int] = []
    sources_of: list[np.ndarray] = []
    try:
        for job in jobs:
            try:
                src = sources.get(job.frames_path)
                if src is None:
                    src = sources[job.frames_path] = FrameSource(job.frames_path, ctx.geometry)
                raw = src.read(int(job.event))
            except Exception as exc:  # noqa: BLE001 - a bad frame is counted, not fatal
                log.warning("%s event %s: %s", job.run, job.event, exc)
                outputs.append(FrameOutput(job.run, int(job.event), None, error=str(exc)))
                continue
            n_ss, n_fs = ctx.slab_shape
            raw = raw[:n_ss, :n_fs]
            photons = raw * ctx.photons_per_adu
            win = extract_windows(
                photons,
                ctx.panel_map,
                ctx.usable,
                job.cand_fs,
                job.cand_ss,
                settings.window,
                ctx.saturation_photons,
            )
            windows.append(win)
            sources_of.append(
                np.zeros(win.n, np.int64)
                if job.cand_source is None
                else np.asarray(job.cand_source, np.int64).reshape(-1)
            )
            owners.append(len(outputs))
            outputs.append(FrameOutput(job.run, int(job.event), np.zeros((n_ss, n_fs), np.uint8)))
    finally:
        for src in sources.values():
            src.close()
    if not windows:
        return outputs
    allwin = Windows.concat(windows, settings.window)
    table = fit_windows(allwin, settings)
    table["label_pixels"] = np.zeros(allwin.n, np.int64)
    wl = label_windows(table, allwin, settings.label_fraction)
    table["label_pixels"][:] = wl.sum(axis=(1, 2))
    table["source"] = np.concatenate(sources_of)
    start = 0
    for win, owner in zip(windows, owners, strict=True):
        sl = slice(start, start + win.n)
        start += win.n
        out = outputs[owner]
        out.fits = {k: v[sl] for k, v in table.items()}
        paint_labels(out.labels, win, wl[sl])
    return outputs


def split_batches(jobs: Sequence[FrameJob], batch_size: int) -> list[list[FrameJob]]:
    """Frames in consecutive batches of ``batch_size`` (the paper's Ray batching, default 40)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    return [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]
