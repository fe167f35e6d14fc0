"""Evaluate one method on one run: its CXI peak lists, the stream of their indexing, the truth."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError
from braggflow.evaluation.rates import frame_rates, hit_mask
from braggflow.evaluation.scoring import (
    FramePeaks,
    false_hits,
    orientation_errors,
    peak_counts,
)


def found_per_frame(chunks: list, n_frames: int, where: str) -> list[list[np.ndarray]]:
    """Reciprocal bases (nm^-1, rows a*, b*, c*) of the crystals found in each frame."""
    found: list[list[np.ndarray]] = [[] for _ in range(n_frames)]
    for chunk in chunks:
        index = chunk.frame_index if chunk.frame_index is not None else chunk.serial
        if index is None or not 0 <= index < n_frames:
            raise InputError(
                where,
                f"chunk event {chunk.event!r} is not a frame of the peak file ({n_frames} frames)",
                "index the same CXI peak file that is evaluated",
            )
        found[index].extend(c.reciprocal_matrix_nm for c in chunk.crystals)
    return found


def evaluate_run(
    method: str,
    run: str,
    peaks_path: str | Path,
    stream_path: str | Path,
    params: Mapping[str, Any],
    geometry_path: str | Path,
    truth_path: str | Path | None = None,
) -> dict[str, Any]:
    from braggflow.formats.cxi import read_cxi_peaks
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.stream import read_stream

    tables = read_cxi_peaks(peaks_path)
    stream = read_stream(stream_path)
    n_frames = len(tables)
    n_peaks = np.array([len(t) for t in tables], dtype=int)
    found = found_per_frame(stream.chunks, n_frames, str(stream_path))
    indexed = np.array([bool(f) for f in found], dtype=bool)
    min_peaks = int(params.get("min_peaks_for_hit", 10))
    rates = frame_rates(n_peaks, indexed, min_peaks)
    hits = hit_mask(n_peaks, min_peaks)
    cells = [
        list(c.cell)
        for chunk in stream.chunks
        for c in chunk.crystals[:1]
        if hits[chunk.frame_index if chunk.frame_index is not None else chunk.serial]
    ]
    result: dict[str, Any] = {
        "method": method,
        "run": run,
        **rates.as_dict(),
        "min_peaks_for_hit": min_peaks,
        "cells": cells,
        "skipped_stream_chunks": len(stream.skipped),
    }
    if truth_path:
        geom = read_geom(geometry_path)
        result["truth"] = truth_scores(
            tables,
            found,
            hits,
            indexed,
            truth_path,
            geom,
            float(params.get("match_distance_px", 2.0)),
            float(params.get("max_orientation_error_deg", 1.0)),
        )
    return result


def truth_scores(
    tables, found, hits, indexed, truth_path, geom, max_distance_px, max_angle
) -> dict[str, Any]:
    """Peak precision/recall vs visible reflections, orientation correctness, false hits."""
    from braggflow.simulate.truth import read_truth

    truth = read_truth(truth_path, footprint=False)
    if truth.n_frames != len(tables):
        raise InputError(
            truth_path,
            f"truth has {truth.n_frames} frames, the peak file {len(tables)}",
            "evaluate the peak file made from this run's frames",
        )
    panel_map = geom.panel_index_map()
    n_ss, n_fs = panel_map.shape
    found_peaks, true_peaks = [], []
    for i, t in enumerate(tables):
        ss_i = np.clip(np.rint(t.ss).astype(int), 0, n_ss - 1)
        fs_i = np.clip(np.rint(t.fs).astype(int), 0, n_fs - 1)
        found_peaks.append(FramePeaks(t.fs, t.ss, panel_map[ss_i, fs_i]))
        r = truth.reflections_in(i, visible_only=True)
        true_peaks.append(FramePeaks(r["fs"], r["ss"], r["panel"]))
    n_found, n_true, n_matched = peak_counts(found_peaks, true_peaks, max_distance_px)
    true_bases = [list(truth.lattices_in(i)) for i in range(truth.n_frames)]
    checked = [found[i] if (hits[i] and indexed[i]) else [] for i in range(truth.n_frames)]
    errors = orientation_errors(checked, true_bases)
    blank = ~truth.has_crystal.astype(bool)
    return {
        "n_found": n_found,
        "n_true_visible": n_true,
        "n_matched": n_matched,
        "peak_precision": n_matched / n_found if n_found else 0.0,
        "peak_recall": n_matched / n_true if n_true else 0.0,
        "n_orientation_checked": int(len(errors)),
        "n_orientation_correct": int((errors <= max_angle).sum()),
        "median_orientation_error_deg": float(np.median(errors[np.isfinite(errors)]))
        if np.isfinite(errors).any()
        else None,
        "blank_frames": int(blank.sum()),
        "false_hits": false_hits(hits, truth.has_crystal),
        "indexed_blank_frames": int((blank & indexed & hits).sum()),
    }
