"""Labels vs the simulator's ground truth: spot coverage and pixel-level precision/recall."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LabelTruthCounts:
    """Counts summed over frames (add them up, then read the ratios)."""

    visible_spots: int = 0
    covered_spots: int = 0
    label_pixels: int = 0
    footprint_pixels: int = 0
    overlap_pixels: int = 0

    def add(self, other: LabelTruthCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, float | int | None]:
        def ratio(a: int, b: int) -> float | None:
            return float(a / b) if b else None

        return {
            "visible_spots": self.visible_spots,
            "covered_spots": self.covered_spots,
            "spot_coverage": ratio(self.covered_spots, self.visible_spots),
            "label_pixels": self.label_pixels,
            "footprint_pixels": self.footprint_pixels,
            "overlap_pixels": self.overlap_pixels,
            "pixel_precision": ratio(self.overlap_pixels, self.label_pixels),
            "pixel_recall": ratio(self.overlap_pixels, self.footprint_pixels),
        }


def label_truth_counts(
    labels: np.ndarray, footprint: np.ndarray | None, vis_fs: np.ndarray, vis_ss: np.ndarray
) -> LabelTruthCounts:
    """One frame: a visible true spot is covered when the label slab is 1 at its centre pixel;
    pixel precision/recall compare the labels with the noiseless footprint (raw slab)."""
    n_ss, n_fs = labels.shape
    ifs = np.rint(np.asarray(vis_fs, float)).astype(int)
    iss = np.rint(np.asarray(vis_ss, float)).astype(int)
    ok = (ifs >= 0) & (ifs < n_fs) & (iss >= 0) & (iss < n_ss)
    covered = int(labels[iss[ok], ifs[ok]].astype(bool).sum())
    lab = labels.astype(bool)
    out = LabelTruthCounts(
        visible_spots=int(ifs.size), covered_spots=covered, label_pixels=int(lab.sum())
    )
    if footprint is not None:
        fp = np.asarray(footprint)[:n_ss, :n_fs].astype(bool)
        out.footprint_pixels = int(fp.sum())
        out.overlap_pixels = int((fp & lab).sum())
    return out
