"""The teacher's held-out pixel scores, read from the cache (the student's yardstick).

The cache holds the teacher's logits for every trainset frame, held-out ones included, so the
teacher's precision/recall/F1 on the held-out split come from the same argmax rule and the same
counting code (``braggflow.training.validation``) as the student's, without a teacher forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from braggflow.distill.cache import TeacherCache
from braggflow.training.data import TrainSet
from braggflow.training.validation import pixel_counts, scores


def teacher_scores(cache: TeacherCache, val_set: TrainSet, batch_size: int = 8) -> dict[str, Any]:
    """Pixel precision/recall/F1 (peak class) of the cached teacher on ``val_set``'s frames."""
    counts = np.zeros(3, dtype=np.int64)
    for lo in range(0, len(val_set), batch_size):
        batch = val_set.batch(np.arange(lo, min(lo + batch_size, len(val_set))))
        pred = cache.read(batch["frame"]).astype(np.float32).argmax(1)
        counts += pixel_counts(pred, batch["label"])
    return {"frames": len(val_set), **scores(counts)}
