"""Peak precision/recall of an inference run against the simulator's ground truth.

Found peaks are matched one-to-one to the visible reflections of the same frame and panel with
PeakDiff's matcher (``linear_sum_assignment`` on pixel distance, section 2.1.1); a pair farther
apart than ``max_distance_px`` does not count. The evaluation stage reports the same figures for
every method; here they come with the run's metrics so a deployment can be checked on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError


def read_truth_reflections(path: str | Path) -> dict[str, np.ndarray]:
    """``/reflections/{frame,fs,ss,panel,visible}`` and ``/frames/has_crystal`` (docs/conventions.md)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "ground-truth file not found", "drop --truth or give the run's .truth.h5"
        )
    with h5py.File(path, "r") as h5:
        if "reflections/fs" not in h5:
            raise InputError(
                path, "no /reflections/fs", "give a truth file written by 'braggflow simulate'"
            )
        out = {k: h5[f"reflections/{k}"][()] for k in ("frame", "fs", "ss", "panel")}
        out["visible"] = (
            h5["reflections/visible"][()].astype(bool)
            if "reflections/visible" in h5
            else np.ones(out["fs"].size, bool)
        )
        out["n_frames"] = np.asarray(
            h5["frames/has_crystal"].shape[0] if "frames/has_crystal" in h5 else -1
        )
    return out


def score_against_truth(
    results: Sequence[Any], truth_path: str | Path, max_distance_px: float
) -> dict[str, Any]:
    """Precision, recall and position error of ``results`` (per-frame ``table``/``panel``) vs truth."""
    from braggflow.peakdiff import match_peaks

    truth = read_truth_reflections(truth_path)
    vis = truth["visible"]
    t_frame, t_fs, t_ss, t_panel = (truth[k][vis] for k in ("frame", "fs", "ss", "panel"))
    n_found = n_true = n_matched = 0
    distances = []
    for r in results:
        sel = t_frame == r.frame
        m = match_peaks(
            r.table.fs,
            r.table.ss,
            t_fs[sel],
            t_ss[sel],
            max_distance_px,
            a_panel=r.panel,
            b_panel=t_panel[sel],
        )
        n_found += len(r.table)
        n_true += int(sel.sum())
        n_matched += m.n_matched
        distances.append(m.distance_px)
    d = np.concatenate(distances) if distances else np.zeros(0)
    return {
        "max_distance_px": max_distance_px,
        "n_found": n_found,
        "n_true": n_true,
        "n_matched": n_matched,
        "precision": n_matched / n_found if n_found else float("nan"),
        "recall": n_matched / n_true if n_true else float("nan"),
        "median_distance_px": float(np.median(d)) if d.size else float("nan"),
        "p90_distance_px": float(np.percentile(d, 90)) if d.size else float("nan"),
    }


def footprint_results(
    frames_path: str | Path, geometry_path: str | Path, truth_path: str | Path, params: Any
) -> list[Any] | None:
    """Peaks measured exactly as the pipeline does, but from the truth's noiseless spot footprint
    instead of a model's mask: the best any segmentation can do with this peak extraction."""
    import h5py

    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.inference.peaks import PanelLayout, peaks_from_mask
    from braggflow.inference.source import open_source, slab_bad_pixels
    from braggflow.inference.writer import FramePeaks

    with h5py.File(truth_path, "r") as h5:
        if "footprint" not in h5:
            return None
        footprint = h5["footprint"]
        geom = read_geom(geometry_path)
        n_ss, n_fs = geom.slab_shape
        source = open_source(frames_path, geom)
        try:
            bad = slab_bad_pixels(source, geom)
            layout = PanelLayout.from_raw_panel(PixelMap.from_geometry(geom, mask=~bad).raw_panel)
            out = []
            for i in range(min(len(source), footprint.shape[0])):
                try:
                    frame = source.read(i)[:n_ss, :n_fs]
                except (InputError, OSError, ValueError):
                    continue
                mask = np.asarray(footprint[i])[:n_ss, :n_fs] > 0
                table, panel = peaks_from_mask(frame, mask, layout, bad, params)
                out.append(FramePeaks(i, table, panel))
        finally:
            source.close()
    return out
