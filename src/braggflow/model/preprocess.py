"""Model-input preprocessing (section 2.2.2): pad-and-crop to a square, per-image z-scores.

Pure functions on numpy arrays; the inference stage and the training loader share them.
Placement is centred: an image smaller than the square is padded equally on both sides, a larger
one is centre-cropped. ``square_window`` gives the mapping; ``restore_shape`` inverts it for
model outputs. Invalid pixels (detector gaps, masked pixels, padding) are excluded from the
statistics, set to 0 in the model input and ignored by the loss (label ``IGNORE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255  # label value of invalid pixels (the loss skips them)


@dataclass(frozen=True)
class Window:
    """Where an (h, w) image sits inside the (size, size) square.

    ``src`` slices select the part of the image that is kept, ``dst`` slices where it lands.
    """

    size: int
    shape: tuple[int, int]
    src: tuple[slice, slice]
    dst: tuple[slice, slice]


def _axis(n: int, size: int) -> tuple[slice, slice]:
    if n <= size:
        off = (size - n) // 2
        return slice(0, n), slice(off, off + n)
    off = (n - size) // 2
    return slice(off, off + size), slice(0, size)


def square_window(shape: tuple[int, int], size: int) -> Window:
    (sy, dy), (sx, dx) = _axis(shape[0], size), _axis(shape[1], size)
    return Window(size, (int(shape[0]), int(shape[1])), (sy, sx), (dy, dx))


def pad_crop(array: np.ndarray, size: int, fill: float | int = 0) -> np.ndarray:
    """Centre-pad / centre-crop the last two axes of ``array`` to ``size`` x ``size``."""
    win = square_window(array.shape[-2:], size)
    out = np.full((*array.shape[:-2], size, size), fill, dtype=array.dtype)
    out[(..., *win.dst)] = array[(..., *win.src)]
    return out


def zscore(image: np.ndarray, valid: np.ndarray | None = None, eps: float = 1e-6) -> np.ndarray:
    """Per-image z-standardisation over valid pixels; invalid pixels become 0 (section 2.2.2).

    ``image`` is (..., H, W); statistics are taken per leading index. NaN/inf pixels count as invalid.
    """
    image = np.asarray(image, dtype=np.float32)
    ok = np.isfinite(image)
    if valid is not None:
        ok &= np.broadcast_to(np.asarray(valid, dtype=bool), image.shape)
    axes = (-2, -1)
    n = np.maximum(ok.sum(axis=axes, keepdims=True), 1)
    x = np.where(ok, image, 0.0)
    mean = x.sum(axis=axes, keepdims=True) / n
    var = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=axes, keepdims=True) / n
    out = np.where(ok, (x - mean) / np.sqrt(var + eps), 0.0)
    return out.astype(np.float32)


def preprocess(
    images: np.ndarray, valid: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Assembled images (B, H, W) or (H, W) -> (model input (..., size, size) float32, valid mask).

    The mask is False in padding, gaps and masked or non-finite pixels.
    """
    images = np.asarray(images, dtype=np.float32)
    ok = np.isfinite(images)
    if valid is not None:
        ok &= np.broadcast_to(np.asarray(valid, dtype=bool), images.shape)
    x = zscore(images, ok)
    return pad_crop(x, size, 0.0), pad_crop(ok, size, False)


def prepare_labels(labels: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Labels (..., H, W) -> (..., size, size) uint8 with ``IGNORE`` where the square is invalid;
    ``valid`` is the mask returned by :func:`preprocess` (already square)."""
    lab = pad_crop(np.asarray(labels, dtype=np.uint8), size, IGNORE)
    return np.where(valid, lab, IGNORE).astype(np.uint8)


def restore_shape(outputs: np.ndarray, shape: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """Inverse of :func:`pad_crop` for model outputs (..., size, size) -> (..., H, W).

    Parts of the original image that were cropped away get ``fill`` (for logits use
    :func:`background_logits` afterwards if they must read as background).
    """
    size = outputs.shape[-1]
    win = square_window(shape, size)
    out = np.full((*outputs.shape[:-2], *shape), fill, dtype=outputs.dtype)
    out[(..., *win.src)] = outputs[(..., *win.dst)]
    return out


def restore_logits(logits: np.ndarray, shape: tuple[int, int], margin: float = 30.0) -> np.ndarray:
    """Logits (..., C, size, size) -> (..., C, H, W); cropped-away pixels read as background
    (class 0 logit ``margin`` above the others)."""
    out = restore_shape(logits, shape, fill=0.0)
    win = square_window(shape, logits.shape[-1])
    covered = np.zeros(shape, dtype=bool)
    covered[win.src] = True
    out[..., 0, :, :] = np.where(covered, out[..., 0, :, :], margin)
    return out
