"""A tiny training set in the documented layout, for tests and benchmarks (not the science path).

Gaussian spots on a Poisson background; a detector gap strip and a few masked pixels; labels are
the pixels where the noiseless spot exceeds a fraction of its maximum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from braggflow.atomic import atomic_path


def synthetic_frames(
    n: int,
    shape: tuple[int, int],
    seed: int = 0,
    spots: tuple[int, int] = (4, 12),
    sigma_px: float = 1.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> images (n, H, W) float32, labels (n, H, W) uint8, valid (H, W) uint8."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    images = np.empty((n, h, w), np.float32)
    labels = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        clean = np.zeros((h, w))
        for _ in range(rng.integers(*spots)):
            cy, cx = rng.uniform(3, h - 3), rng.uniform(3, w - 3)
            amp = rng.uniform(20, 80)
            g = amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma_px**2))
            labels[i][g > 0.2 * amp] = 1
            clean += g
        background = 5.0 + 3.0 * np.hypot(yy - h / 2, xx - w / 2) / max(h, w)
        images[i] = rng.poisson(clean + background).astype(np.float32)
    valid = np.ones((h, w), np.uint8)
    valid[:, w // 2 - 1 : w // 2 + 1] = 0  # a gap between panels
    valid[rng.integers(0, h, 5), rng.integers(0, w, 5)] = 0  # hot pixels
    images[:, valid == 0] = 0.0
    labels[:, valid == 0] = 0
    return images, labels, valid


def write_synthetic_trainset(
    path: str | Path,
    n: int = 12,
    shape: tuple[int, int] = (60, 64),
    held_out: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``/images``, ``/labels``, ``/valid``, ``/pixel_map/*``, ``/frames/*`` (split 1 = last ``held_out``)."""
    import h5py

    images, labels, valid = synthetic_frames(n, shape, seed)
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5["images"] = images
        h5["labels"] = labels
        h5["valid"] = valid
        h, w = shape
        h5["pixel_map/panel"] = np.where(valid > 0, 0, -1).astype(np.int32)
        h5["pixel_map/fs"] = np.broadcast_to(np.arange(w, dtype=np.int32), shape).copy()
        h5["pixel_map/ss"] = np.broadcast_to(np.arange(h, dtype=np.int32)[:, None], shape).copy()
        h5["frames/run"] = np.array(["synthetic"] * n, dtype=object).astype("S")
        h5["frames/event"] = np.arange(n, dtype=np.int64)
        split = np.zeros(n, np.uint8)
        split[n - held_out :] = 1
        h5["frames/split"] = split
    return path
