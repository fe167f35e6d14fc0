"""The training set file written by fit_labels (layout: docs/conventions.md "Training set").

``/images`` (n, H, W) float32 assembled photon-scale images, ``/labels`` (n, H, W) uint8,
``/valid`` (H, W) uint8, ``/pixel_map/{panel,fs,ss}`` (H, W) int32, ``/frames/{run,event,split}``,
``/fits/*`` (one row per candidate peak, ``frame`` indexes ``/images``), provenance on the root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.fitting.fit import STATUS_NAMES

SPLIT_TRAIN, SPLIT_HELD_OUT = 0, 1


def frame_hash(seed: int, run: str, event: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, run, event) alone."""
    digest = hashlib.sha256(f"{seed}:{run}:{event}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(keys: Sequence[tuple[str, int]], val_fraction: float, seed: int) -> np.ndarray:
    """Held-out split (1) for the ``round(val_fraction * n)`` frames of lowest seeded hash.

    Deterministic, independent of the order of ``keys``, and a frame keeps its side when other
    frames are added or removed unless it sits at the boundary. At least one held-out frame
    when there are two or more frames and ``val_fraction > 0``.
    """
    n = len(keys)
    split = np.zeros(n, np.uint8)
    if n == 0 or val_fraction <= 0:
        return split
    n_val = int(round(val_fraction * n))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    h = np.array([frame_hash(seed, run, int(ev)) for run, ev in keys])
    order = np.lexsort((np.arange(n), h))
    split[order[:n_val]] = SPLIT_HELD_OUT
    return split


class TrainsetWriter:
    """Write frames one at a time (resizable datasets), the tables and provenance on close."""

    def __init__(self, path: str | Path, pixmap: Any, valid: np.ndarray) -> None:
        import h5py

        from braggflow.atomic import atomic_path

        self.path = Path(path)
        self.shape = tuple(pixmap.shape)
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._h5 = h5py.File(tmp, "w")
            h, w = self.shape
            self._images = self._h5.create_dataset(
                "images",
                shape=(0, h, w),
                maxshape=(None, h, w),
                dtype=np.float32,
                chunks=(1, h, w),
                compression="gzip",
                compression_opts=1,
                shuffle=True,
            )
            self._labels = self._h5.create_dataset(
                "labels",
                shape=(0, h, w),
                maxshape=(None, h, w),
                dtype=np.uint8,
                chunks=(1, h, w),
                compression="gzip",
                compression_opts=4,
            )
            self.valid = np.asarray(valid, bool)
            self._h5.create_dataset("valid", data=self.valid.astype(np.uint8))
            grp = self._h5.create_group("pixel_map")
            for name in ("panel", "fs", "ss"):
                grp.create_dataset(name, data=np.asarray(getattr(pixmap, name), np.int32))
        except BaseException:
            self._abort()
            raise
        self.n = 0

    def add(self, image: np.ndarray, labels: np.ndarray) -> int:
        """Append one assembled frame (labels only on valid pixels); returns its index."""
        i = self.n
        self._images.resize(i + 1, axis=0)
        self._labels.resize(i + 1, axis=0)
        self._images[i] = np.nan_to_num(
            np.asarray(image, np.float32), nan=0.0, posinf=0.0, neginf=0.0
        )
        self._labels[i] = np.where(self.valid, np.asarray(labels, np.uint8), 0).astype(np.uint8)
        self.n += 1
        return i

    def close(
        self,
        runs: Sequence[str],
        events: Sequence[int],
        split: np.ndarray,
        fits: Mapping[str, np.ndarray],
        config: Mapping[str, Any] | None = None,
        inputs: Iterable[str | Path] = (),
        attrs: Mapping[str, Any] | None = None,
    ) -> Path:
        import h5py

        from braggflow.provenance import stamp_h5

        try:
            if len(runs) != self.n or len(events) != self.n or len(split) != self.n:
                raise ValueError("frame tables do not match the number of frames written")
            grp = self._h5.create_group("frames")
            grp.create_dataset(
                "run", data=np.array(list(runs), dtype=object), dtype=h5py.string_dtype()
            )
            grp.create_dataset("event", data=np.asarray(events, np.int64))
            grp.create_dataset("split", data=np.asarray(split, np.uint8))
            grp.attrs["split_values"] = "0 train, 1 held-out"
            fg = self._h5.create_group("fits")
            for name, col in fits.items():
                fg.create_dataset(name, data=np.asarray(col))
            fg.attrs["status_names"] = ",".join(f"{k}={v}" for k, v in STATUS_NAMES.items())
            fg.attrs["coordinates"] = "fs, ss: fitted centre, raw slab (pixel centre at integer)"
            for key, value in (attrs or {}).items():
                self._h5.attrs[key] = value
            stamp_h5(self._h5, config, inputs)
            self._h5.close()
        except BaseException:
            self._abort()
            raise
        self._atomic.__exit__(None, None, None)
        return self.path

    def _abort(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self._h5.close()
        with contextlib.suppress(BaseException):
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def read_trainset(path: str | Path) -> dict[str, Any]:
    """The whole training set in memory (tests and small sets)."""
    import h5py

    with h5py.File(path, "r") as h5:
        out: dict[str, Any] = {
            "images": h5["images"][()],
            "labels": h5["labels"][()],
            "valid": h5["valid"][()],
            "pixel_map": {k: h5["pixel_map"][k][()] for k in h5["pixel_map"]},
            "frames": {
                "run": [
                    r.decode() if isinstance(r, bytes) else str(r) for r in h5["frames/run"][()]
                ],
                "event": h5["frames/event"][()],
                "split": h5["frames/split"][()],
            },
            "fits": {k: h5["fits"][k][()] for k in h5["fits"]},
            "attrs": dict(h5.attrs),
        }
    return out
