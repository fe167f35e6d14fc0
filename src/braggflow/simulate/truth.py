"""The ground-truth file ``<run>.truth.h5`` (layout: docs/conventions.md), writer and reader.

::

    /frames/has_crystal (n,) bool, n_lattices (n,) int, photon_energy_ev (n,),
           crystal_size_um (n,) (largest lattice; 0 for blanks), n_visible (n,) int
    /lattices/frame (m,) int, astar, bstar, cstar (m, 3) nm^-1 lab frame, size_um (m,)
    /reflections/frame, lattice, h, k, l, panel (k,) int; fs, ss (k,) raw slab (centre at
           integers); photons (k,) expected photons recorded on the panel; snr (k,);
           visible (k,) bool; partiality (k,)
    /footprint (n, ss, fs) uint8: 1 where a visible reflection's noiseless signal is at least
           ``spot.footprint_fraction`` of its own peak (gzip)

Reflections are every predicted reflection that lands on a panel with partiality >=
``spot.min_partiality``; ``visible`` marks those a peak finder can see (recorded SNR >=
``spot.visible_snr`` and centre pixel not masked). A lattice's ``lattice`` index counts within
its frame (0, 1, ...).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError

REFLECTION_FIELDS = {
    "frame": np.int32,
    "lattice": np.int32,
    "h": np.int32,
    "k": np.int32,
    "l": np.int32,
    "panel": np.int32,
    "fs": np.float64,
    "ss": np.float64,
    "photons": np.float64,
    "snr": np.float64,
    "visible": np.bool_,
    "partiality": np.float64,
}
LATTICE_FIELDS = {
    "frame": np.int32,
    "astar": np.float64,
    "bstar": np.float64,
    "cstar": np.float64,
    "size_um": np.float64,
}
FRAME_FIELDS = {
    "has_crystal": np.bool_,
    "n_lattices": np.int32,
    "photon_energy_ev": np.float64,
    "crystal_size_um": np.float64,
    "n_visible": np.int32,
}


@dataclass
class Truth:
    """A whole truth file in memory: per-frame arrays plus the lattice and reflection tables."""

    has_crystal: np.ndarray
    n_lattices: np.ndarray
    photon_energy_ev: np.ndarray
    crystal_size_um: np.ndarray
    n_visible: np.ndarray
    lattices: dict[str, np.ndarray]
    reflections: dict[str, np.ndarray]
    footprint: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.has_crystal.shape[0])

    def reflections_in(self, frame: int, visible_only: bool = False) -> dict[str, np.ndarray]:
        """The reflection table rows of one frame (optionally only the visible ones)."""
        sel = self.reflections["frame"] == frame
        if visible_only:
            sel &= self.reflections["visible"]
        return {k: v[sel] for k, v in self.reflections.items()}

    def lattices_in(self, frame: int) -> np.ndarray:
        """(k, 3, 3): per lattice of the frame, rows a*, b*, c* in nm^-1 (lab frame)."""
        sel = self.lattices["frame"] == frame
        return np.stack(
            [self.lattices["astar"][sel], self.lattices["bstar"][sel], self.lattices["cstar"][sel]],
            axis=1,
        )


class TruthWriter:
    """Collect per-frame truth and write the file atomically on :meth:`close`."""

    def __init__(
        self,
        path: str | Path,
        n_frames: int,
        slab_shape: tuple[int, int],
        config: Mapping[str, Any] | None = None,
        inputs: Iterable[str | Path] = (),
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        import h5py

        from braggflow.atomic import atomic_path
        from braggflow.provenance import stamp_h5

        self.path = Path(path)
        self.n_frames = int(n_frames)
        self._frames = {k: np.zeros(self.n_frames, dtype=t) for k, t in FRAME_FIELDS.items()}
        self._lattices: list[dict[str, Any]] = []
        self._refl: list[dict[str, np.ndarray]] = []
        self._written = np.zeros(self.n_frames, dtype=bool)
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._h5 = h5py.File(tmp, "w")
            self._footprint = self._h5.create_dataset(
                "footprint",
                shape=(self.n_frames, *slab_shape),
                dtype=np.uint8,
                chunks=(1, *slab_shape),
                compression="gzip",
                compression_opts=4,
                track_times=False,
            )
            stamp_h5(self._h5, config, inputs)
            for key, value in (attrs or {}).items():
                self._h5.attrs[key] = (
                    value if not isinstance(value, dict) else json.dumps(value, sort_keys=True)
                )
        except BaseException:
            self._abort()
            raise

    def add_frame(
        self,
        index: int,
        photon_energy_ev: float,
        lattices: list[dict[str, Any]],
        reflections: Mapping[str, np.ndarray],
        footprint: np.ndarray,
    ) -> None:
        """``lattices``: dicts with astar/bstar/cstar (nm^-1) and size_um; ``reflections``: REFLECTION_FIELDS but frame."""
        self._frames["has_crystal"][index] = bool(lattices)
        self._frames["n_lattices"][index] = len(lattices)
        self._frames["photon_energy_ev"][index] = photon_energy_ev
        self._frames["crystal_size_um"][index] = max(
            (lat["size_um"] for lat in lattices), default=0.0
        )
        self._frames["n_visible"][index] = int(np.count_nonzero(reflections["visible"]))
        for lat in lattices:
            self._lattices.append({"frame": index, **lat})
        n = len(reflections["h"])
        self._refl.append(
            {
                "frame": np.full(n, index, dtype=np.int32),
                **{k: np.asarray(v) for k, v in reflections.items()},
            }
        )
        self._footprint[index] = footprint.astype(np.uint8)
        self._written[index] = True

    def close(self) -> Path:
        if not self._written.all():
            self._abort()
            raise ValueError(
                f"truth for frames {np.flatnonzero(~self._written)[:5].tolist()} never added"
            )
        f = self._h5
        for key, dtype in FRAME_FIELDS.items():
            f.create_dataset(
                f"frames/{key}", data=self._frames[key].astype(dtype), track_times=False
            )
        for key, dtype in LATTICE_FIELDS.items():
            shape = (0, 3) if key.endswith("star") else (0,)
            values = np.asarray([lat[key] for lat in self._lattices], dtype=dtype).reshape(
                -1, *shape[1:]
            )
            f.create_dataset(f"lattices/{key}", data=values, track_times=False)
        for key, dtype in REFLECTION_FIELDS.items():
            values = np.concatenate([r[key] for r in self._refl]) if self._refl else np.zeros(0)
            f.create_dataset(f"reflections/{key}", data=values.astype(dtype), track_times=False)
        f.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self._h5.close()
        with contextlib.suppress(Exception):
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


def read_truth(path: str | Path, footprint: bool = True) -> Truth:
    """Read a truth file (``footprint=False`` skips the per-pixel footprint)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "truth file not found", "run 'braggflow simulate' for this run first"
        )
    try:
        with h5py.File(path, "r") as f:
            frames = {k: f[f"frames/{k}"][()] for k in FRAME_FIELDS}
            lattices = {k: f[f"lattices/{k}"][()] for k in LATTICE_FIELDS}
            reflections = {k: f[f"reflections/{k}"][()] for k in REFLECTION_FIELDS}
            fp = f["footprint"][()] if footprint else None
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError) as exc:
        raise InputError(
            path,
            f"not a braggflow truth file ({' '.join(str(exc).split())[:120]})",
            "regenerate it with 'braggflow simulate'",
        ) from None
    return Truth(**frames, lattices=lattices, reflections=reflections, footprint=fp, attrs=attrs)
