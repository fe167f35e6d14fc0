"""CXI peak lists in Cheetah's layout, as read by CrystFEL's ``indexamajig --peaks=cxi``.

``/entry_1/result_1``: ``nPeaks`` (n_frames,) int32; ``peakXPosRaw``, ``peakYPosRaw``,
``peakTotalIntensity``, ``peakMaxIntensity``, ``peakNPixels``, ``peakSNR`` (n_frames, max_peaks)
float32, zero-padded. X = fast scan, Y = slow scan, raw slab pixel coordinates with the pixel
centre at an integer (indexamajig adds 0.5). Every frame has a row, also frames with no peak.

indexamajig needs the frames in the same file with an event dimension (``dim0 = %``), so when the
frames file is known the writer adds HDF5 external links ``/entry_1/data_1`` (and ``/LCLS`` where
present) to it; the geometry then needs :data:`PEAK_LIST_LINES` (see :func:`cxi_peak_geometry`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError
from braggflow.formats.geometry import Geometry

RESULT = "/entry_1/result_1"
MAX_PEAKS = 2048
PEAK_LIST_LINES = {"peak_list": RESULT, "peak_list_type": "cxi"}
_COLUMNS = {
    "fs": "peakXPosRaw",
    "ss": "peakYPosRaw",
    "intensity": "peakTotalIntensity",
    "max_intensity": "peakMaxIntensity",
    "npix": "peakNPixels",
    "snr": "peakSNR",
}


def _f32(values: Any = ()) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1)


@dataclass
class PeakTable:
    """The peaks of one frame: raw slab positions (centre at integers) and their measures."""

    fs: np.ndarray = field(default_factory=_f32)
    ss: np.ndarray = field(default_factory=_f32)
    intensity: np.ndarray = field(default_factory=_f32)
    max_intensity: np.ndarray = field(default_factory=_f32)
    npix: np.ndarray = field(default_factory=_f32)
    snr: np.ndarray = field(default_factory=_f32)

    def __post_init__(self) -> None:
        for name in _COLUMNS:
            setattr(self, name, _f32(getattr(self, name)))
        n = self.fs.size
        for name in _COLUMNS:
            column = getattr(self, name)
            if column.size == 0 and n and name not in ("fs", "ss"):
                setattr(self, name, np.zeros(n, dtype=np.float32))
            elif column.size != n:
                raise ValueError(f"PeakTable column {name!r} has {column.size} values, fs has {n}")
        if self.ss.size != n:
            raise ValueError(f"PeakTable fs and ss differ in length ({n} vs {self.ss.size})")

    def __len__(self) -> int:
        return int(self.fs.size)

    def take(self, index: np.ndarray) -> PeakTable:
        """A new table with the rows ``index`` (an int or bool array)."""
        return PeakTable(**{name: getattr(self, name)[index] for name in _COLUMNS})

    def strongest(self, n: int) -> PeakTable:
        """The ``n`` peaks of highest total intensity, in their original order."""
        if len(self) <= n:
            return self
        keep = np.sort(np.argsort(-self.intensity, kind="stable")[:n])
        return self.take(keep)


def write_cxi_peaks(
    path: str | Path,
    tables: Sequence[PeakTable],
    frames_path: str | Path | None = None,
    max_peaks: int = MAX_PEAKS,
    config: Mapping[str, Any] | None = None,
    inputs: Iterable[str | Path] = (),
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write one row per frame (atomically, with provenance); more than ``max_peaks`` keeps the strongest.

    ``frames_path`` adds external links so that indexamajig reads frames and peaks from this file.
    """
    import h5py

    from braggflow.atomic import atomic_path
    from braggflow.provenance import stamp_h5

    n = len(tables)
    kept = [t.strongest(max_peaks) for t in tables]
    n_truncated = sum(len(t) > max_peaks for t in tables)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        res = h5.require_group(RESULT)
        res.create_dataset("nPeaks", data=np.array([len(t) for t in kept], dtype=np.int32))
        for name, dset in _COLUMNS.items():
            block = np.zeros((n, max_peaks), dtype=np.float32)
            for i, t in enumerate(kept):
                block[i, : len(t)] = getattr(t, name)
            res.create_dataset(
                dset, data=block, compression="gzip", compression_opts=1, shuffle=True
            )
        res.attrs["max_peaks"] = max_peaks
        res.attrs["n_frames_truncated"] = n_truncated
        res.attrs["coordinates"] = "raw slab, X = fs, Y = ss, pixel centre at integer"
        for key, value in (attrs or {}).items():
            res.attrs[key] = value
        if frames_path is not None:
            _link_frames(h5, Path(frames_path), Path(path))
        stamp_h5(h5, config, inputs)


def _link_frames(h5: Any, frames_path: Path, out_path: Path) -> None:
    """External links to the frames (relative to the peaks file's folder, as HDF5 resolves them)."""
    import h5py

    target = os.path.relpath(frames_path.resolve(), out_path.resolve().parent)
    with h5py.File(frames_path, "r") as src:
        groups = [g for g in ("/entry_1/data_1", "/LCLS", "/instrument") if g in src]
    for group in groups:
        h5[group] = h5py.ExternalLink(target, group)


def read_cxi_peaks(path: str | Path) -> list[PeakTable]:
    """Read every frame's peaks (a CXI file written by Cheetah, braggflow or OM)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "CXI peak file not found", "run 'braggflow find-peaks' or check the path"
        )
    try:
        with h5py.File(path, "r") as h5:
            if f"{RESULT}/nPeaks" not in h5:
                raise InputError(
                    path, f"no {RESULT}/nPeaks", "give a CXI peak list (Cheetah layout)"
                )
            n_peaks = np.asarray(h5[f"{RESULT}/nPeaks"][()]).reshape(-1).astype(np.int64)
            columns = {}
            for name, dset in _COLUMNS.items():
                key = f"{RESULT}/{dset}"
                if key in h5:
                    columns[name] = np.asarray(h5[key][()], dtype=np.float32)
                elif name in ("fs", "ss", "intensity"):
                    raise InputError(path, f"no {key}", "give a CXI peak list (Cheetah layout)")
    except OSError as exc:
        raise InputError(path, f"unreadable HDF5 ({exc})", "regenerate the peak file") from None
    width = columns["fs"].shape[1] if columns["fs"].ndim == 2 else 0
    if columns["fs"].shape[0] != n_peaks.size or (n_peaks > width).any():
        raise InputError(path, "nPeaks does not match the peak arrays", "regenerate the peak file")
    return [
        PeakTable(**{name: col[i, :k] for name, col in columns.items()})
        for i, k in enumerate(n_peaks)
    ]


def cxi_peak_geometry(geom: Geometry) -> Geometry:
    """A copy of ``geom`` whose global lines tell indexamajig to read this module's peak lists."""
    return replace(geom, globals={**geom.globals, **PEAK_LIST_LINES})


def peak_list_geometry_lines() -> str:
    """The geometry lines (text) for CXI peak lists, to append to a hand-written .geom file."""
    return "".join(f"{key} = {value}\n" for key, value in PEAK_LIST_LINES.items())
