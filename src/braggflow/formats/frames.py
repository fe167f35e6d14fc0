"""CXI frame files (DESIGN.md "Frames"): writing (:class:`FrameWriter`) and reading (:class:`FrameSource`).

Layout (Cheetah/LCLS CXI, what CrystFEL's geometry points to)::

    /entry_1/data_1/data            (n, ss, fs) float32   raw slab, ADU
    /entry_1/data_1/mask            (ss, fs) uint16       0 = good, any bit set = bad (optional)
    /LCLS/photon_energy_eV          (n,) float64          per-frame photon energy, eV
    /LCLS/detector_1/EncoderValue   (n,) float64          per-frame camera length, **mm**

The geometry reads the metadata with ``photon_energy = /LCLS/photon_energy_eV`` and
``clen = /LCLS/detector_1/EncoderValue``: CrystFEL takes a header clen without units as
millimetres (crystfel_geometry(5)), and places each panel at z = clen + coffset. The mask is a
static 2-D map (``mask = /entry_1/data_1/mask``, ``mask_good = 0x0000``, ``mask_bad = 0xffff``);
CrystFEL applies a mask with fewer placeholder dimensions than the data to every frame.
Mask bits written by the simulator: :data:`MASK_BITS`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError
from braggflow.formats.geometry import Geometry

DATA_PATH = "/entry_1/data_1/data"
MASK_PATH = "/entry_1/data_1/mask"
PHOTON_ENERGY_PATH = "/LCLS/photon_energy_eV"
CLEN_PATH = "/LCLS/detector_1/EncoderValue"
CLEN_FILE_UNIT_M = 1e-3  # header camera lengths are millimetres (CrystFEL convention)
MASK_BITS = {"dead": 1, "hot": 2, "edge": 4, "bad_region": 8, "no_panel": 16}


class FrameWriter:
    """Write frames one at a time into a CXI file; the file appears atomically on ``close``.

    >>> with FrameWriter(path, n_frames=3, slab_shape=(480, 120), mask=mask) as w:
    ...     w.write(0, frame, photon_energy_ev=9500.0, clen_m=0.035)
    """

    def __init__(
        self,
        path: str | Path,
        n_frames: int,
        slab_shape: tuple[int, int],
        mask: np.ndarray | None = None,
        config: Mapping[str, Any] | None = None,
        inputs: Iterable[str | Path] = (),
        compression: str | None = None,
    ) -> None:
        import h5py

        from braggflow.atomic import atomic_path
        from braggflow.provenance import stamp_h5

        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.slab_shape = (int(slab_shape[0]), int(slab_shape[1]))
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._written = np.zeros(self.n_frames, dtype=bool)
        try:
            self._h5 = h5py.File(tmp, "w")
            f = self._h5
            f.create_dataset("cxi_version", data=np.int32(150), track_times=False)
            self._data = f.create_dataset(
                DATA_PATH,
                shape=(self.n_frames, *self.slab_shape),
                dtype=np.float32,
                chunks=(1, *self.slab_shape),
                compression=compression,
                track_times=False,
                fillvalue=0.0,
            )
            self._data.attrs["axes"] = "experiment_identifier:y:x"
            if mask is not None:
                mask = np.asarray(mask)
                if mask.shape != self.slab_shape:
                    raise ValueError(f"mask shape {mask.shape} != slab shape {self.slab_shape}")
                f.create_dataset(
                    MASK_PATH, data=mask.astype(np.uint16), compression="gzip", track_times=False
                )
            self._energy = f.create_dataset(
                PHOTON_ENERGY_PATH, shape=(self.n_frames,), dtype=np.float64, track_times=False
            )
            self._clen = f.create_dataset(
                CLEN_PATH, shape=(self.n_frames,), dtype=np.float64, track_times=False
            )
            self._clen.attrs["units"] = "mm"
            self._energy.attrs["units"] = "eV"
            stamp_h5(f, config, inputs)
        except BaseException:
            self._abort()
            raise

    def write(self, index: int, frame: np.ndarray, photon_energy_ev: float, clen_m: float) -> None:
        frame = np.asarray(frame, dtype=np.float32)
        if frame.shape != self.slab_shape:
            raise ValueError(f"frame shape {frame.shape} != slab shape {self.slab_shape}")
        self._data[index] = frame
        self._energy[index] = float(photon_energy_ev)
        self._clen[index] = float(clen_m) / CLEN_FILE_UNIT_M
        self._written[index] = True

    def close(self) -> Path:
        """Finish the file; every frame must have been written."""
        if not self._written.all():
            missing = np.flatnonzero(~self._written)
            self._abort()
            raise ValueError(f"frames {missing[:5].tolist()}... were never written to {self.path}")
        self._h5.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self._h5.close()
        with contextlib.suppress(Exception):
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


def write_frames(
    path: str | Path,
    frames: np.ndarray,
    mask: np.ndarray | None,
    photon_energy_ev: float | Sequence[float] | np.ndarray,
    clen_m: float | Sequence[float] | np.ndarray,
    config: Mapping[str, Any] | None = None,
    inputs: Iterable[str | Path] = (),
    compression: str | None = None,
) -> Path:
    """Write a whole (n, ss, fs) stack at once (scalars broadcast to every frame)."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    n = frames.shape[0]
    energies = np.broadcast_to(np.asarray(photon_energy_ev, dtype=float), (n,))
    clens = np.broadcast_to(np.asarray(clen_m, dtype=float), (n,))
    with FrameWriter(path, n, frames.shape[1:], mask, config, inputs, compression) as writer:
        for i in range(n):
            writer.write(i, frames[i], energies[i], clens[i])
    return Path(path)


class FrameSource:
    """Read frames of a CXI/HDF5 file as the geometry describes them.

    ``geometry`` (optional) supplies the data path (``data``), the photon energy and camera
    length (numbers or header paths) and the slab shape the frames must cover. Without it the
    layout above is assumed. ``clen_m(i)`` is the geometry's ``clen`` in metres; each panel sits
    at ``clen_m(i) + panel.coffset_m``. Errors (missing file, not HDF5, truncated data, frames
    smaller than the geometry) are one-line :class:`InputError`.
    """

    def __init__(
        self, path: str | Path, geometry: Geometry | None = None, data_path: str | None = None
    ) -> None:
        import h5py

        self.path = Path(path)
        self.geometry = geometry
        if not self.path.is_file():
            raise InputError(
                self.path,
                "frame file not found",
                "check the run's path in the config (source.runs)",
            )
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(
                self.path,
                f"not a readable HDF5 file ({_short(exc)})",
                "the file is corrupt or truncated: re-copy or regenerate it",
            ) from None
        self.data_path = data_path or _geometry_data_path(geometry) or DATA_PATH
        if "%" in self.data_path:
            raise InputError(
                self.path,
                f"per-event data paths ({self.data_path}) are not supported",
                "store frames as one (n, ss, fs) dataset",
            )
        dset = self._h5.get(self.data_path)
        if dset is None or not hasattr(dset, "shape"):
            self.close()
            raise InputError(
                self.path,
                f"no dataset {self.data_path}",
                "write frames to /entry_1/data_1/data or set 'data' in the geometry",
            )
        if dset.ndim not in (2, 3):
            self.close()
            raise InputError(
                self.path,
                f"{self.data_path} has shape {dset.shape}",
                "frames must be (n, ss, fs) or one (ss, fs) frame",
            )
        self._data = dset
        self.frame_shape: tuple[int, int] = tuple(dset.shape[-2:])  # type: ignore[assignment]
        if geometry is not None:
            need = geometry.slab_shape
            if self.frame_shape[0] < need[0] or self.frame_shape[1] < need[1]:
                self.close()
                raise InputError(
                    self.path,
                    f"frames are {self.frame_shape} (ss, fs) but the geometry needs at least {need}",
                    "use the geometry file that belongs to this detector",
                )
        self._energies = self._per_frame(
            geometry.photon_energy if geometry else None, PHOTON_ENERGY_PATH, 1.0
        )
        clen = geometry.panels[0].clen if geometry else None
        self._clens = self._per_frame(clen, CLEN_PATH, CLEN_FILE_UNIT_M)

    def _per_frame(
        self, spec: float | str | None, default_path: str, file_unit: float
    ) -> np.ndarray | None:
        """A per-frame value: a number from the geometry, or a header dataset (scalar or (n,))."""
        if isinstance(spec, int | float):
            return np.full(len(self), float(spec))
        path = spec if isinstance(spec, str) else default_path
        path = path.split()[0]  # 'path mm' -> path
        node = self._h5.get(path)
        if node is None:
            if isinstance(spec, str):
                raise InputError(
                    self.path,
                    f"geometry points to {path}, which is missing",
                    "write it per frame or put a number in the geometry",
                )
            return None
        values = np.asarray(node[()], dtype=float).reshape(-1)
        if values.size == 1:
            values = np.full(len(self), values[0])
        if values.size != len(self):
            raise InputError(
                self.path,
                f"{path} has {values.size} values for {len(self)} frames",
                "write one value per frame",
            )
        return values * file_unit

    def __len__(self) -> int:
        return 1 if self._data.ndim == 2 else int(self._data.shape[0])

    @property
    def event_ids(self) -> list[str]:
        """CrystFEL event IDs of the frames (``//<index>`` for a ``dim0 = %`` file)."""
        return [f"//{i}" for i in range(len(self))]

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as a float32 (ss, fs) array; an unreadable frame raises :class:`InputError`."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} out of range 0..{len(self) - 1}")
        try:
            frame = self._data[()] if self._data.ndim == 2 else self._data[index]
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"{self.path} frame {index}",
                f"unreadable ({_short(exc)})",
                "the file is truncated or corrupt: regenerate it",
            ) from None
        return np.asarray(frame, dtype=np.float32)

    def photon_energy_ev(self, index: int) -> float | None:
        return None if self._energies is None else float(self._energies[index])

    def clen_m(self, index: int) -> float | None:
        return None if self._clens is None else float(self._clens[index])

    @property
    def mask(self) -> np.ndarray | None:
        """The file's static mask as stored (0 = good), or None when the file has none."""
        node = self._h5.get(MASK_PATH)
        if node is None:
            return None
        mask = np.asarray(node[()])
        return mask if mask.ndim == 2 else mask[0]

    def bad_pixels(self) -> np.ndarray:
        """(ss, fs) bool, True where a pixel is bad: file mask (CrystFEL mask_good/mask_bad), bad regions, no panel."""
        bad = np.zeros(self.frame_shape, dtype=bool)
        mask = self.mask
        if mask is not None:
            good_bits, bad_bits = 0, 0xFFFF
            if self.geometry is not None:
                good_bits = int(self.geometry.globals.get("mask_good", "0x0000"), 0)
                bad_bits = int(self.geometry.globals.get("mask_bad", "0xffff"), 0)
            m = mask.astype(np.int64)
            bad |= ((m & bad_bits) != 0) | ((m & good_bits) != good_bits)
        if self.geometry is not None:
            n_ss, n_fs = self.geometry.slab_shape
            region = self.geometry.bad_pixel_mask() | (self.geometry.panel_index_map() < 0)
            bad[:n_ss, :n_fs] |= region
            bad[n_ss:, :] = True
            bad[:, n_fs:] = True
        return bad

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._h5.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _geometry_data_path(geometry: Geometry | None) -> str | None:
    if geometry is None:
        return None
    return geometry.panels[0].data or geometry.globals.get("data")


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]
