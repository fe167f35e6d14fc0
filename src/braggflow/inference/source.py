"""Frame sources and model-input preparation (the producer side of the pipeline).

A source yields raw slab frames: CXI/HDF5 files through :class:`braggflow.formats.frames.FrameSource`,
or LCLS psana when it is importable (``psana:exp=...:run=...:dir=...`` with the detector named in
the geometry's ``data`` line or ``psana_detector``). :class:`Preparer` assembles a batch with the
pixel map and applies the model package's preprocessing (centred pad/crop to the model's square,
per-image z-scores over valid pixels; section 2.2.2), so that training and inference agree by
construction. Unreadable frames are flagged bad (zeros to the model, nPeaks = 0 in the output)
and counted, never dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from braggflow.errors import InputError
from braggflow.formats.geometry import Geometry
from braggflow.formats.pixelmap import PixelMap

log = logging.getLogger(__name__)
PSANA_PREFIX = "psana:"


class Source(Protocol):
    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...

    def bad_pixels(self) -> np.ndarray: ...

    def close(self) -> None: ...


class PsanaSource:
    """LCLS psana (psana1 ``DataSource``) frames in the geometry's slab layout (optional).

    ``spec`` is ``psana:exp=<exp>:run=<run>[:dir=<xtc dir>]``; the detector name comes from the
    geometry (global ``psana_detector``). Calibrated frames (``det.calib``) are reshaped to the
    geometry's slab (stacked panels), as CrystFEL's psana geometries do.
    """

    def __init__(self, spec: str, geometry: Geometry) -> None:
        try:
            import psana  # type: ignore[import-not-found]
        except ImportError:
            raise InputError(
                spec,
                "psana is not importable here",
                "run inside the LCLS psana environment or give CXI files",
            ) from None
        detector = geometry.globals.get("psana_detector")
        if not detector:
            raise InputError(
                spec,
                "the geometry names no psana detector",
                "add 'psana_detector = <name>' to the .geom",
            )
        ds = psana.DataSource(spec[len(PSANA_PREFIX) :] + ":idx")
        run = next(ds.runs())
        self._run = run
        self._times = run.times()
        self._det = psana.Detector(detector)
        self._shape = geometry.slab_shape

    def __len__(self) -> int:
        return len(self._times)

    def read(self, index: int) -> np.ndarray:
        evt = self._run.event(self._times[index])
        calib = self._det.calib(evt)
        if calib is None:
            raise InputError(
                f"psana event {index}", "no calibrated data", "check the detector name and run"
            )
        return np.asarray(calib, dtype=np.float32).reshape(self._shape)

    def bad_pixels(self) -> np.ndarray:
        return np.zeros(self._shape, dtype=bool)

    def close(self) -> None:
        return None


def open_source(path: str | Path, geometry: Geometry) -> Source:
    """A CXI/HDF5 frame file, or a ``psana:`` spec when psana is installed."""
    if str(path).startswith(PSANA_PREFIX):
        return PsanaSource(str(path), geometry)
    from braggflow.formats.frames import FrameSource

    return FrameSource(path, geometry)


def slab_bad_pixels(source: Source, geometry: Geometry) -> np.ndarray:
    """The (n_ss, n_fs) bad-pixel map of the geometry's slab: file mask, bad regions, no panel."""
    n_ss, n_fs = geometry.slab_shape
    return np.asarray(source.bad_pixels())[:n_ss, :n_fs].copy()


@dataclass
class Preparer:
    """Raw slabs (B, n_ss, n_fs) -> model input (B, 1, S, S) float32, C-contiguous.

    Assembly is ``PixelMap.assemble`` with its index arrays computed once (gaps 0).
    """

    pixel_map: PixelMap
    input_size: int

    def __post_init__(self) -> None:
        pm = self.pixel_map
        inside = (pm.panel >= 0).ravel()
        self._dst = np.flatnonzero(inside)
        self._src = (pm.ss.astype(np.int64) * pm.slab_shape[1] + pm.fs).ravel()[inside]

    def assemble(self, slabs: np.ndarray) -> np.ndarray:
        h, w = self.pixel_map.shape
        images = np.zeros((slabs.shape[0], h * w), np.float32)
        images[:, self._dst] = slabs.reshape(slabs.shape[0], -1)[:, self._src]
        return images.reshape(slabs.shape[0], h, w)

    def __call__(self, slabs: np.ndarray) -> np.ndarray:
        from braggflow.model.preprocess import preprocess

        x, _ = preprocess(self.assemble(slabs), self.pixel_map.valid, self.input_size)
        return np.ascontiguousarray(x[:, None])


def read_batch(
    source: Source, frames: list[int], slab_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Frames -> (slabs (B, n_ss, n_fs) float32, bad (B,) bool); an unreadable frame is zeros + bad."""
    n_ss, n_fs = slab_shape
    slabs = np.zeros((len(frames), n_ss, n_fs), dtype=np.float32)
    bad = np.zeros(len(frames), dtype=bool)
    for k, index in enumerate(frames):
        try:
            frame = source.read(int(index))
        except (InputError, OSError, ValueError) as exc:
            log.warning("frame %d unreadable, written with no peaks: %s", index, exc)
            bad[k] = True
            continue
        frame = frame[:n_ss, :n_fs]
        if frame.shape != (n_ss, n_fs) or not np.isfinite(frame).any():
            log.warning(
                "frame %d has shape %s or no finite pixel: written with no peaks",
                index,
                frame.shape,
            )
            bad[k] = True
            continue
        slabs[k] = frame
    return slabs, bad
