"""Writer side: masks -> peaks -> aggregated chunk files -> one CXI peak list per run.

Writers turn each batch of masks into peak tables (:mod:`braggflow.inference.peaks`) and keep
them in memory until ``chunk_frames`` frames have gathered; the chunk then goes to disk as one
small HDF5 *part* file, written atomically. The parts on disk are the pipeline's ledger: a frame
is done exactly when a part holds it. A writer that dies loses only its unflushed frames, which
the driver sees missing from the parts and sends round again. :func:`merge_parts` keeps the first
copy of each frame (a frame done twice gives identical rows: same batch, same model) and
:func:`write_outputs` writes the CXI peak list (Cheetah layout, every frame exactly once, frames
without peaks as nPeaks = 0) and optionally the masks in the raw slab layout.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.formats.cxi import PeakTable
from braggflow.formats.pixelmap import PixelMap
from braggflow.inference.peaks import PanelLayout, PeakParams, peaks_from_mask

_COLUMNS = ("fs", "ss", "intensity", "max_intensity", "npix", "snr")
MASKS_PATH = "/entry_1/result_1/segmentation"


@dataclass
class FramePeaks:
    """One frame's result as a writer holds it."""

    frame: int
    table: PeakTable
    panel: np.ndarray
    bad: bool = False
    mask: np.ndarray | None = None  # raw slab uint8, when masks are written


@dataclass
class ChunkWriter:
    """Peaks from mask batches, flushed to part files of ``chunk_frames`` frames."""

    parts_dir: Path
    pixel_map: PixelMap
    bad_pixels: np.ndarray  # raw slab, True = ignore
    params: PeakParams = field(default_factory=PeakParams)
    chunk_frames: int = 64
    keep_masks: bool = False
    name: str = "w0"

    def __post_init__(self) -> None:
        self.parts_dir = Path(self.parts_dir)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.layout = PanelLayout.from_raw_panel(self.pixel_map.raw_panel)
        self._to_slab = assembled_to_slab_index(self.pixel_map)
        self._pending: list[FramePeaks] = []
        self._lock = threading.Lock()
        self.parts: list[str] = []
        self.frames_flushed = 0

    def add_batch(
        self, frames: Iterable[int], bad: np.ndarray, slabs: np.ndarray, masks: np.ndarray
    ) -> list[FramePeaks]:
        """Measure the peaks of one batch (masks in the assembled layout); flush full chunks."""
        results = []
        for k, frame in enumerate(frames):
            slab_mask = np.zeros(self.layout.shape, np.uint8)
            if bad[k]:
                table, panel = PeakTable(), np.zeros(0, np.int32)
            else:  # sparse PixelMap.to_slab: only the segmented pixels move
                index = self._to_slab[np.flatnonzero(masks[k])]
                slab_mask.ravel()[index[index >= 0]] = 1
                table, panel = peaks_from_mask(
                    slabs[k], slab_mask.view(bool), self.layout, self.bad_pixels, self.params
                )
            mask = slab_mask if self.keep_masks else None
            results.append(FramePeaks(int(frame), table, panel, bool(bad[k]), mask))
        with self._lock:
            self._pending.extend(results)
            if len(self._pending) >= self.chunk_frames:
                self._flush_locked()
        return results

    def flush(self) -> list[str]:
        """Write every pending frame; -> all part files this writer has written."""
        with self._lock:
            self._flush_locked()
            return list(self.parts)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        path = self.parts_dir / f"part-{self.name}-{uuid.uuid4().hex[:12]}.h5"
        write_part(path, self._pending)
        self.parts.append(str(path))
        self.frames_flushed += len(self._pending)
        self._pending = []


def assembled_to_slab_index(pixel_map: PixelMap) -> np.ndarray:
    """Flat raw-slab index of every assembled pixel, -1 in gaps: a sparse ``PixelMap.to_slab``."""
    n_fs = pixel_map.slab_shape[1]
    index = (pixel_map.ss.astype(np.int64) * n_fs + pixel_map.fs).ravel()
    return np.where(pixel_map.panel.ravel() >= 0, index, -1)


def write_part(path: Path, results: list[FramePeaks]) -> None:
    """One chunk: frame indices, peak counts, flat peak columns (+ panel), bad flags, masks."""
    import h5py

    from braggflow.atomic import atomic_path

    counts = np.array([len(r.table) for r in results], np.int64)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["frames"] = np.array([r.frame for r in results], np.int64)
        h5["n_peaks"] = counts
        h5["bad"] = np.array([r.bad for r in results], np.uint8)
        for name in _COLUMNS:
            h5[f"peaks/{name}"] = np.concatenate(
                [getattr(r.table, name) for r in results] or [np.zeros(0)]
            ).astype(np.float32)
        h5["peaks/panel"] = np.concatenate([r.panel for r in results] or [np.zeros(0)]).astype(
            np.int32
        )
        if all(r.mask is not None for r in results):
            h5.create_dataset(
                "masks",
                data=np.stack([r.mask for r in results]),
                compression="gzip",
                compression_opts=1,
            )


def read_part(path: str | Path, masks: bool = False) -> list[FramePeaks]:
    import h5py

    with h5py.File(path, "r") as h5:
        frames = h5["frames"][()]
        counts = h5["n_peaks"][()]
        bad = h5["bad"][()].astype(bool)
        cols = {name: h5[f"peaks/{name}"][()] for name in _COLUMNS}
        panel = h5["peaks/panel"][()]
        masks = h5["masks"][()] if masks and "masks" in h5 else None
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for k, frame in enumerate(frames):
        sl = slice(starts[k], starts[k + 1])
        table = PeakTable(**{name: cols[name][sl] for name in _COLUMNS})
        out.append(
            FramePeaks(
                int(frame), table, panel[sl], bool(bad[k]), None if masks is None else masks[k]
            )
        )
    return out


def part_frames(path: str | Path) -> np.ndarray:
    """Just the frame indices of a part (the ledger scan)."""
    import h5py

    with h5py.File(path, "r") as h5:
        return h5["frames"][()]


def list_parts(parts_dir: str | Path) -> list[Path]:
    """Finished part files (atomic writes keep temporaries under hidden names)."""
    return sorted(p for p in Path(parts_dir).glob("part-*.h5") if not p.name.startswith("."))


@dataclass
class Merged:
    results: list[FramePeaks]
    duplicates: int
    missing: list[int]


def merge_parts(parts: Iterable[str | Path], n_frames: int) -> Merged:
    """Every frame's first copy, in frame order; counts duplicates and lists missing frames."""
    slots: list[FramePeaks | None] = [None] * n_frames
    duplicates = 0
    for path in sorted(parts, key=str):
        for result in read_part(path):
            if not 0 <= result.frame < n_frames:
                raise ValueError(f"{path}: frame {result.frame} outside 0..{n_frames - 1}")
            if slots[result.frame] is None:
                slots[result.frame] = result
            else:
                duplicates += 1
    missing = [i for i, r in enumerate(slots) if r is None]
    return Merged([r for r in slots if r is not None], duplicates, missing)


def write_outputs(
    out: str | Path,
    results: list[FramePeaks],
    frames_path: str | Path | None,
    max_peaks: int,
    config: Mapping[str, Any] | None = None,
    inputs: Iterable[str | Path] = (),
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """The CXI peak list: one row per frame, in frame order (``results`` from :func:`merge_parts`)."""
    from braggflow.formats.cxi import write_cxi_peaks

    link = frames_path if frames_path is not None and Path(frames_path).is_file() else None
    tables = [r.table for r in results]
    write_cxi_peaks(
        out,
        tables,
        frames_path=link,
        max_peaks=max_peaks,
        config=config,
        inputs=inputs,
        attrs=attrs,
    )


def write_masks(
    path: str | Path,
    parts: Iterable[str | Path],
    n_frames: int,
    slab_shape: tuple[int, int],
    config: Mapping[str, Any] | None = None,
    inputs: Iterable[str | Path] = (),
) -> None:
    """Masks (n_frames, ss, fs) uint8, raw slab layout, streamed part by part (first copy wins)."""
    import h5py

    from braggflow.atomic import atomic_path
    from braggflow.provenance import stamp_h5

    done = np.zeros(n_frames, bool)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        dset = h5.create_dataset(
            MASKS_PATH,
            shape=(n_frames, *slab_shape),
            dtype=np.uint8,
            chunks=(1, *slab_shape),
            compression="gzip",
            compression_opts=1,
        )
        dset.attrs["layout"] = "raw slab (n_frames, ss, fs), 1 = Bragg peak"
        for part in sorted(parts, key=str):
            for r in read_part(part, masks=True):
                if r.mask is None:
                    raise ValueError(f"{part}: no masks (the writers did not keep them)")
                if not done[r.frame]:
                    dset[r.frame] = r.mask
                    done[r.frame] = True
        if not done.all():
            raise ValueError(f"masks missing for frames {np.flatnonzero(~done)[:5].tolist()}")
        stamp_h5(h5, config, inputs)
