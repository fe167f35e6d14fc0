"""Training-set loading (docs/conventions.md "Training set") and a checkpointable sampler.

``TrainSet`` reads frames of one split from the fit stage's HDF5 and returns model-ready numpy
batches (pad-and-crop + z-score, section 2.2.2). ``GlobalBatchSampler`` walks one deterministic
stream of frame positions (a fresh permutation per epoch, seeded) shared by all ranks: global
micro-batch ``g`` covers stream positions ``[g*B*W, (g+1)*B*W)`` and rank ``r`` takes its
``B``-sized slice, so a run on W ranks with batch B sees exactly the frames of a 1-rank run with
batch B*W. Its whole state is one integer (micro-batches consumed). Optional augmentation draws
one of the 8 symmetries of the square per sample from a hash of (seed, stream position), so it
too is identical for any number of ranks and after a resume, with no RNG state to carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError
from braggflow.model.preprocess import prepare_labels, preprocess

ExtraField = Callable[[np.ndarray], np.ndarray]


def dihedral(a: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes (bit 2: transpose, bit 0:
    flip columns, bit 1: flip rows); code 0 is the identity."""
    if code & 4:
        a = np.swapaxes(a, -1, -2)
    if code & 1:
        a = a[..., ::-1]
    if code & 2:
        a = a[..., ::-1, :]
    return a


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread hash of uint64 values."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class TrainSet:
    """Frames of split ``split`` (0 train, 1 held-out) of a training-set HDF5.

    ``extra_fields`` maps a batch key to ``fn(frame_indices) -> array (B, ...)`` (e.g. cached
    teacher logits for distillation); frame indices are rows of ``/images``.
    """

    def __init__(
        self,
        path: str | Path,
        input_size: int,
        split: int | None = 0,
        extra_fields: Mapping[str, ExtraField] | None = None,
        in_memory_max_gb: float = 4.0,
    ) -> None:
        import h5py

        self.path = Path(path)
        self.input_size = int(input_size)
        self.extra_fields = dict(extra_fields or {})
        if not self.path.is_file():
            raise InputError(self.path, "training set not found", "run the fit_labels stage first")
        with h5py.File(self.path, "r") as h5:
            for key in ("images", "labels", "valid"):
                if key not in h5:
                    raise InputError(
                        self.path, f"no /{key} dataset", "regenerate it with fit-labels"
                    )
            n, h, w = h5["images"].shape
            if h5["labels"].shape != (n, h, w) or h5["valid"].shape != (h, w):
                raise InputError(
                    self.path, "/images, /labels, /valid shapes disagree", "regenerate it"
                )
            self.shape = (int(h), int(w))
            self.valid_map = h5["valid"][()].astype(bool)
            splits = h5["frames/split"][()] if "frames/split" in h5 else np.zeros(n, np.uint8)
            self.indices = np.flatnonzero(splits == split) if split is not None else np.arange(n)
            self._images = self._labels = None
            if n * h * w * 5 <= in_memory_max_gb * 2**30:
                self._images = h5["images"][()]
                self._labels = h5["labels"][()]
        self._h5 = None

    def __len__(self) -> int:
        return int(self.indices.size)

    def _read(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._images is not None:
            return self._images[frames], self._labels[frames]
        import h5py

        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        order = np.argsort(frames)
        uniq, inverse = np.unique(frames[order], return_inverse=True)
        imgs = self._h5["images"][uniq][inverse]
        labs = self._h5["labels"][uniq][inverse]
        back = np.empty_like(order)
        back[order] = np.arange(order.size)
        return imgs[back], labs[back]

    def batch(
        self, positions: Sequence[int], augment: Sequence[int] | None = None
    ) -> dict[str, np.ndarray]:
        """Positions into this split -> ``image`` (B,1,S,S) float32, ``label`` (B,S,S) int64
        (``IGNORE`` where invalid), ``valid`` (B,S,S) bool, ``frame`` (B,) int64, extras.

        ``augment``: a symmetry code per sample (:func:`dihedral`), applied to the image, label,
        valid mask and every extra field whose last two axes are the (S, S) square."""
        frames = self.indices[np.asarray(positions, dtype=np.int64)]
        images, labels = self._read(frames)
        x, valid = preprocess(images, self.valid_map, self.input_size)
        out: dict[str, np.ndarray] = {
            "image": x[:, None],
            "label": prepare_labels(labels, valid, self.input_size).astype(np.int64),
            "valid": valid,
            "frame": frames.astype(np.int64),
        }
        for key, fn in self.extra_fields.items():
            out[key] = np.asarray(fn(frames))
        if augment is not None:
            square = (self.input_size, self.input_size)
            for key, arr in out.items():
                if arr.ndim >= 3 and arr.shape[-2:] == square:
                    out[key] = np.stack(
                        [
                            np.ascontiguousarray(dihedral(a, int(c)))
                            for a, c in zip(arr, augment, strict=True)
                        ]
                    )
        return out

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def trainset_identity(path: str | Path, full_hash_max_bytes: int = 1 << 30) -> dict[str, Any]:
    """What a checkpoint remembers about its training set: the checksum for small files; size
    plus the file's provenance record (which holds its inputs' checksums) for large ones."""
    import hashlib

    import h5py

    from braggflow.provenance import sha256_file

    path = Path(path)
    size = path.stat().st_size
    if size <= full_hash_max_bytes:
        return {"trainset_sha256": sha256_file(path)}
    with h5py.File(path, "r") as h5:
        prov = str(h5.attrs.get("braggflow_provenance", ""))
    return {
        "trainset_bytes": size,
        "trainset_provenance_sha256": hashlib.sha256(prov.encode()).hexdigest(),
    }


class GlobalBatchSampler:
    """Deterministic, distributed, resumable: see the module docstring."""

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, seed: int) -> None:
        if n < 1:
            raise ValueError("no frames to sample from")
        self.n, self.batch_size, self.world_size, self.rank, self.seed = (
            n,
            batch_size,
            world_size,
            rank,
            seed,
        )
        self.position = 0  # global micro-batches consumed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def stream(self, start: int, count: int) -> np.ndarray:
        pos = np.arange(start, start + count)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(pos // self.n):
            sel = pos // self.n == epoch
            out[sel] = self._perm(int(epoch))[pos[sel] % self.n]
        return out

    def next(self) -> np.ndarray:
        """This rank's positions for the next micro-batch."""
        return self.next_with_codes()[0]

    def next_with_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's positions for the next micro-batch and a symmetry code (0-7) for each."""
        g = self.batch_size * self.world_size
        start = self.position * g + self.rank * self.batch_size
        self.position += 1
        index = np.arange(start, start + self.batch_size, dtype=np.uint64)
        codes = (_mix(index + _mix(np.array([self.seed], np.uint64))) % np.uint64(8)).astype(
            np.int64
        )
        return self.stream(start, self.batch_size), codes

    @property
    def epoch(self) -> float:
        return self.position * self.batch_size * self.world_size / self.n

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "n": self.n,
            "seed": self.seed,
            "global_batch": self.batch_size * self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.position = int(state["position"])
