"""Pixel-level validation against held-out labels: precision, recall, F1 (peak class)."""

from __future__ import annotations

import math

import numpy as np
import torch

from braggflow.model.preprocess import IGNORE
from braggflow.training.data import TrainSet
from braggflow.training.distributed import DistEnv, all_reduce_


def pixel_counts(pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> np.ndarray:
    """(tp, fp, fn) of class 1 over pixels whose label is not ``IGNORE``."""
    pred, label = torch.as_tensor(pred), torch.as_tensor(label)
    ok = label != IGNORE
    p, t = (pred == 1) & ok, (label == 1) & ok
    return np.array([int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())], dtype=np.int64)


def scores(counts: np.ndarray) -> dict[str, float | int | None]:
    tp, fp, fn = (int(c) for c in counts)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan

    def clean(v: float) -> float | None:
        return None if math.isnan(v) else round(v, 6)

    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": clean(precision),
        "recall": clean(recall),
        "f1": clean(f1),
    }


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: TrainSet, env: DistEnv, batch_size: int = 4) -> dict:
    """Collective: each rank predicts a strided share of the frames; counts are summed.

    Ranks run the same number of forwards (FSDP needs every rank in each one); a rank whose
    share is exhausted repeats a frame and discards the result.
    """
    model.eval()
    n = len(dataset)
    per_round = batch_size * env.world_size
    rounds = math.ceil(n / per_round) if n else 0
    counts = np.zeros(3, dtype=np.int64)
    for r in range(rounds):
        start = r * per_round + env.rank * batch_size
        pos = np.arange(start, start + batch_size)
        real = pos < n
        batch = dataset.batch(np.where(real, pos, 0))
        x = torch.from_numpy(batch["image"]).to(env.device)
        logits = model(x).float()
        pred = logits.argmax(1).cpu()
        label = torch.from_numpy(batch["label"])
        label[torch.from_numpy(~real)] = IGNORE
        counts += pixel_counts(pred, label)
    total = all_reduce_(torch.from_numpy(counts).to(env.device), "sum").cpu().numpy()
    model.train()
    return {"frames": n, **scores(total), "prediction": "argmax of the 2-class logits"}
