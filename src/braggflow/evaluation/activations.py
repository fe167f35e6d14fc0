"""Raw image, class activation maps and segmentation per model (Figs 5, 7, 8 of Wang et al. 2025)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from braggflow.atomic import atomic_path


def pick_frames(n_peaks_hint: Sequence[float], n: int) -> list[int]:
    """The ``n`` frames with the most signal (brightest first): the informative examples."""
    order = np.argsort(-np.asarray(n_peaks_hint, float), kind="stable")
    return sorted(order[:n].tolist())


def class_maps(model_path: str | Path, images: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Softmax probabilities (B, 2, H, W) of one exported model on assembled images (B, H, W)."""
    import torch

    from braggflow.model import load_exported
    from braggflow.model.preprocess import preprocess, restore_logits

    model, arch = load_exported(model_path, "cpu")
    x, _ = preprocess(images, valid, int(arch["input_size"]))
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[:, None]).float().numpy()
    logits = restore_logits(logits, images.shape[-2:])
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def plot_activations(
    model_paths: Sequence[str], frames_path: str, geometry_path: str, n_frames: int, out: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap

    pmap = PixelMap.from_geometry(read_geom(geometry_path))
    with FrameSource(frames_path) as source:
        slabs = [source.read(i) for i in range(len(source))]
    brightness = [np.nanpercentile(s, 99.9) for s in slabs]
    chosen = pick_frames(brightness, n_frames)
    images = np.stack([pmap.assemble(slabs[i]) for i in chosen]).astype(np.float32)
    valid = pmap.valid
    names = [Path(p).stem for p in model_paths]
    probs = [class_maps(p, images, valid) for p in model_paths]
    cols = 1 + 3 * len(model_paths)
    fig, axes = plt.subplots(
        len(chosen), cols, figsize=(2.1 * cols, 2.3 * len(chosen)), squeeze=False
    )
    for row, frame in enumerate(chosen):
        img = np.where(valid, images[row], np.nan)
        lo, hi = np.nanpercentile(img, [1, 99.7])
        axes[row, 0].imshow(img, cmap="gray", vmin=lo, vmax=hi)
        axes[row, 0].set_title(f"frame {frame}", fontsize=8)
        for m, (name, p) in enumerate(zip(names, probs, strict=True)):
            panels = (p[row, 0], p[row, 1], p[row].argmax(axis=0))
            titles = ("background map", "peak map", "segmentation")
            for k, (panel, title) in enumerate(zip(panels, titles, strict=True)):
                ax = axes[row, 1 + 3 * m + k]
                ax.imshow(np.where(valid, panel, np.nan), cmap="magma", vmin=0, vmax=1)
                ax.set_title(f"{name}\n{title}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
