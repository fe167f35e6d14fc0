"""Teacher-logit cache (section 2.2.3.1): the teacher's pre-activation logits, computed once.

Layout of ``cache/teacher_logits.h5``:

- ``/logits`` (n, C, S, S) float16: the teacher's logits for trainset frame ``i`` at row ``i``
  (same frame order as the training set, held-out frames included), in the model's input
  geometry (the S x S square that preprocessing pads/crops to);
- ``/frames/run``, ``/frames/event``: copied from the training set (alignment check);
- root attributes: ``teacher_sha256`` (``sha256_file`` of the exported teacher), ``n_frames``,
  ``n_done`` (frames written so far), ``complete``, ``frames_digest`` (sha256 of the trainset's
  run/event columns) and braggflow provenance.

Writing is resumable: rows are written per batch into ``<out>.partial`` and ``n_done`` is
advanced after each batch is flushed; a restarted job reopens the partial file, checks that it
was made by the same teacher for the same frames, and continues at ``n_done``. The complete file
is renamed onto ``<out>`` in one step, so ``<out>`` never exists half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from braggflow.errors import InputError
from braggflow.provenance import sha256_file, stamp_h5

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# forward(images (b, H, W) float32, valid (H, W) bool) -> logits (b, C, S, S)
Forward = Callable[[np.ndarray, np.ndarray], np.ndarray]


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def frames_digest(runs: np.ndarray, events: np.ndarray) -> str:
    """sha256 of the trainset's frame identities (run, event): the cache's alignment key."""
    digest = hashlib.sha256()
    for run, event in zip(runs, events, strict=True):
        run = run.decode() if isinstance(run, bytes) else str(run)
        digest.update(f"{run}\t{int(event)}\n".encode())
    return digest.hexdigest()


def read_frame_ids(trainset: h5py.File) -> tuple[np.ndarray, np.ndarray]:
    n = trainset["images"].shape[0]
    if "frames" in trainset and "run" in trainset["frames"]:
        return trainset["frames/run"][...], trainset["frames/event"][...]
    return np.array([b""] * n), np.arange(n)


def _open_partial(
    path: Path, teacher_sha256: str, n: int, digest: str, logits_shape: tuple[int, ...]
) -> h5py.File | None:
    """Reopen a partial cache if it belongs to this teacher and trainset, else None."""
    try:
        fh = h5py.File(path, "r+")
    except OSError as err:  # killed while HDF5 metadata was being written: start over
        log.warning("partial cache %s unreadable (%s): starting over", path, err)
        return None
    same = (
        fh.attrs.get("format_version") == FORMAT_VERSION
        and fh.attrs.get("teacher_sha256") == teacher_sha256
        and fh.attrs.get("frames_digest") == digest
        and "logits" in fh
        and fh["logits"].shape == (n, *logits_shape)
    )
    if not same:
        fh.close()
        log.warning("partial cache %s is from another teacher or trainset: starting over", path)
        return None
    return fh


def write_cache(
    out: str | Path,
    trainset_path: str | Path,
    forward: Forward,
    logits_shape: tuple[int, ...],
    teacher_sha256: str,
    batch_size: int = 8,
    config: Mapping[str, Any] | None = None,
    inputs: tuple[str | Path, ...] = (),
    extra_attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``forward`` over every trainset frame in batches and store the logits as float16.

    Resumes a ``<out>.partial`` left by a killed run. Returns counts for the log/JSON.
    """
    out, part = Path(out), partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(trainset_path, "r") as ts:
        images = ts["images"]
        n = images.shape[0]
        valid = ts["valid"][...].astype(bool) if "valid" in ts else np.ones(images.shape[1:], bool)
        runs, events = read_frame_ids(ts)
        digest = frames_digest(runs, events)
        fh = _open_partial(part, teacher_sha256, n, digest, logits_shape) if part.exists() else None
        if fh is None:
            fh = h5py.File(part, "w")
            fh.create_dataset(
                "logits", shape=(n, *logits_shape), dtype="float16", chunks=(1, *logits_shape)
            )
            fh.create_dataset("frames/run", data=runs)
            fh.create_dataset("frames/event", data=events)
            fh.attrs.update(
                {
                    "format_version": FORMAT_VERSION,
                    "teacher_sha256": teacher_sha256,
                    "frames_digest": digest,
                    "n_frames": n,
                    "n_done": 0,
                    "complete": False,
                    **(extra_attrs or {}),
                }
            )
            fh.flush()
        start = int(fh.attrs["n_done"])
        if start:
            log.info("resuming teacher cache at frame %d of %d", start, n)
        try:
            for lo in range(start, n, batch_size):
                hi = min(lo + batch_size, n)
                logits = np.asarray(forward(images[lo:hi].astype(np.float32), valid))
                if logits.shape != (hi - lo, *logits_shape):
                    raise ValueError(
                        f"teacher returned logits {logits.shape}, expected {(hi - lo, *logits_shape)}"
                    )
                fh["logits"][lo:hi] = logits.astype(np.float16)
                fh.flush()
                fh.attrs["n_done"] = hi  # only after the rows are on disk
                fh.flush()
                log.info("teacher cache: %d / %d frames", hi, n)
            fh.attrs["complete"] = True
            stamp_h5(fh, config, inputs)
        finally:
            fh.close()
    os.replace(part, out)  # atomic finalise
    return {"frames": n, "resumed_at": start, "computed": n - start}


class TeacherCache:
    """Read access to a finished cache, verified against the teacher it must come from.

    Opens the HDF5 file lazily (and again in each DataLoader worker after pickling).
    """

    def __init__(
        self,
        path: str | Path,
        teacher_path: str | Path | None = None,
        teacher_sha256: str | None = None,
        trainset_path: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(
                self.path, "teacher cache not found", "run 'braggflow cache-teacher' first"
            )
        self._fh: h5py.File | None = None
        self._memory: np.ndarray | None = None
        with h5py.File(self.path, "r") as fh:
            attrs = dict(fh.attrs)
            self.shape = fh["logits"].shape
        if not attrs.get("complete", False):
            raise InputError(
                self.path, "teacher cache is incomplete", "rerun 'braggflow cache-teacher'"
            )
        self.teacher_sha256 = str(attrs["teacher_sha256"])
        self.frames_digest = str(attrs["frames_digest"])
        self.attrs = attrs
        if teacher_path is not None and teacher_sha256 is None:
            teacher_sha256 = sha256_file(teacher_path)
        if teacher_sha256 is not None and teacher_sha256 != self.teacher_sha256:
            raise InputError(
                self.path,
                f"stale teacher cache: made from a teacher with sha256 {self.teacher_sha256[:16]}..., "
                f"but the teacher given ({teacher_path or 'checksum'}) has sha256 "
                f"{teacher_sha256[:16]}...",
                "rerun 'braggflow cache-teacher' with this teacher (or delete the cache and let "
                "Snakemake rebuild it)",
            )
        if trainset_path is not None:
            with h5py.File(trainset_path, "r") as ts:
                digest = frames_digest(*read_frame_ids(ts))
            if digest != self.frames_digest:
                raise InputError(
                    self.path,
                    f"teacher cache is not aligned with {trainset_path} (different frames)",
                    "rerun 'braggflow cache-teacher' on this training set",
                )

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fh"] = None
        return state

    def _file(self) -> h5py.File:
        if self._fh is None:
            self._fh = h5py.File(self.path, "r")
        return self._fh

    def logits(self, index: int | slice | np.ndarray) -> np.ndarray:
        """float16 logits of trainset frame(s) ``index`` (rows in trainset order)."""
        if self._memory is not None:
            return self._memory[index]
        return self._file()["logits"][index]

    def read(self, frames: np.ndarray) -> np.ndarray:
        """Logits (B, C, S, S) float16 of trainset rows ``frames`` in any order (a batch field)."""
        frames = np.asarray(frames, dtype=np.int64)
        if self._memory is not None:
            return self._memory[frames]
        uniq, inverse = np.unique(frames, return_inverse=True)  # h5py wants increasing indices
        return self._file()["logits"][uniq][inverse]

    def load_into_memory(self, max_gb: float) -> bool:
        """Keep the whole cache in RAM when it is at most ``max_gb`` (the demo's is ~20 MB)."""
        nbytes = int(np.prod(self.shape)) * 2
        if nbytes > max_gb * 2**30:
            return False
        self._memory = self._file()["logits"][()]
        self.close()
        return True

    def arch(self) -> dict[str, Any] | None:
        text = self.attrs.get("teacher_arch")
        return json.loads(text) if text else None

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(Exception):
                self._fh.close()
            self._fh = None


def teacher_forward(model: Any, input_size: int, device: Any) -> Forward:
    """The exported teacher as a cache ``Forward``: preprocess (section 2.2.2), then a no-grad
    forward, bf16 autocast on GPU, fp32 on CPU; returns float32 pre-activation logits."""
    import torch

    from braggflow.model.preprocess import preprocess

    device = torch.device(device)

    def forward(images: np.ndarray, valid: np.ndarray) -> np.ndarray:
        x, _ = preprocess(images, valid, input_size)
        xt = torch.from_numpy(np.ascontiguousarray(x[:, None])).to(device)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"),
        ):
            z = model(xt)
        return z.float().cpu().numpy()

    return forward


def cache_teacher(
    teacher_path: str | Path,
    trainset_path: str | Path,
    out: str | Path,
    batch_size: int = 8,
    device: str = "auto",
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Stage 6: the exported teacher's logits for every trainset frame -> ``out`` (resumable)."""
    import torch

    from braggflow.model.export import load_exported

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sha = sha256_file(teacher_path)
    model, arch = load_exported(teacher_path, device)
    size, classes = int(arch["input_size"]), int(arch["num_classes"])
    log.info("teacher %s (sha256 %s), %s, input %d px", teacher_path, sha[:16], device, size)
    counts = write_cache(
        out,
        trainset_path,
        teacher_forward(model, size, device),
        (classes, size, size),
        sha,
        batch_size=batch_size,
        config=config,
        inputs=(teacher_path, trainset_path),
        extra_attrs={
            "teacher_path": str(teacher_path),
            "teacher_arch": json.dumps(arch, sort_keys=True),
            "input_size": size,
        },
    )
    return {**counts, "teacher_sha256": sha, "device": str(device)}
