"""``braggflow peakdiff``: Stage 3: PeakDiff - match found vs predicted peaks, select frames -> selection TSV + plots."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from braggflow.commands._common import add_params_args, params_of

NAME = "peakdiff"
HELP = "Stage 3: PeakDiff - match found vs predicted peaks, select frames -> selection TSV + plots"

log = logging.getLogger("braggflow.peakdiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument(
        "--peaks", required=True, help="CXI peak list of the run (find-peaks output)"
    )
    parser.add_argument("--stream", required=True, help="CrystFEL stream of the run (index output)")
    parser.add_argument("--frames", required=True, help="the run's frame file (for the overlay)")
    parser.add_argument("--geometry", required=True, help="CrystFEL .geom of the detector")
    parser.add_argument("--out", required=True, help="selection TSV to write")
    parser.add_argument("--plot-counts", help="PNG: found vs predicted counts")
    parser.add_argument(
        "--plot-scatter", help="PNG: precision-recall scatter with the selection box (Fig 3)"
    )
    parser.add_argument("--plot-overlay", help="PNG: matching overlay on example frames (Fig 2)")
    parser.add_argument(
        "--truth", help="ground truth of a simulated run (adds truth figures to --summary)"
    )
    parser.add_argument("--summary", help="JSON with counts (and truth figures with --truth)")


def main(args: argparse.Namespace) -> int:
    params = _with_defaults(params_of(args, "peakdiff"))
    t0 = time.perf_counter()
    import numpy as np

    from braggflow import peakdiff as pd
    from braggflow.atomic import atomic_write_json, atomic_write_text
    from braggflow.errors import InputError
    from braggflow.formats.cxi import read_cxi_peaks
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.stream import read_stream
    from braggflow.provenance import write_sidecar

    p = pd.selection_params(params)
    geom = read_geom(args.geometry)
    tables = read_cxi_peaks(args.peaks)
    stream = read_stream(args.stream)
    chunks = {}
    for chunk in stream.chunks:
        idx = chunk.frame_index
        if idx is None and chunk.serial is not None:
            idx = chunk.serial - 1
        if idx is not None:
            chunks[int(idx)] = chunk
    extra = sorted(set(chunks) - set(range(len(tables))))
    if extra:
        raise InputError(
            args.stream,
            f"stream has frames {extra[:5]} beyond the {len(tables)} frames of {args.peaks}",
            "pass the stream and peak list of the same run",
        )
    stats: list[pd.FrameStats] = []
    matches: dict[int, Any] = {}
    predicted_of: dict[int, Any] = {}
    found_of: dict[int, Any] = {}
    for i, table in enumerate(tables):
        fs = np.asarray(table.fs, float)
        ss = np.asarray(table.ss, float)
        found = (fs, ss, pd.panel_indices(None, fs, ss, geom))
        chunk = chunks.get(i)
        pred = pd.chunk_predicted(chunk, geom) if chunk is not None else None
        s, m = pd.frame_stats(
            args.frames, i, found, None if pred is None else pred[:3], p["max_distance_px"]
        )
        stats.append(s)
        matches[i], predicted_of[i], found_of[i] = m, pred, found
    pd.apply_selection(stats, p)
    atomic_write_text(args.out, pd.format_selection_tsv(stats))
    inputs = [args.peaks, args.stream, args.geometry]
    write_sidecar(args.out, {"peakdiff": params}, inputs)
    reasons: dict[str, int] = {}
    for s in stats:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    run = Path(args.out).stem
    if args.plot_counts:
        pd.plot_counts(stats, args.plot_counts, title=f"{run}: found vs predicted")
    if args.plot_scatter:
        pd.plot_precision_recall(
            stats, p, args.plot_scatter, title=f"{run}: PeakDiff precision-recall"
        )
    if args.plot_overlay:
        _overlay(args, geom, stats, matches, predicted_of, found_of, int(p["overlay_frames"]))
    summary: dict[str, Any] = {
        "run": run,
        "frames": len(stats),
        "selected": int(sum(s.selected for s in stats)),
        "reasons": reasons,
        "params": p,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if args.truth:
        summary["truth"] = _truth_summary(args.truth, geom, stats, chunks, p)
    log.info(
        "PeakDiff %s: %d of %d frames selected (%s)", run, summary["selected"], len(stats), reasons
    )
    if args.summary:
        atomic_write_json(args.summary, summary)
    else:
        log.info("summary: %s", json.dumps(summary, default=str))
    return 0


def _overlay(args, geom, stats, matches, predicted_of, found_of, n) -> None:
    import numpy as np

    from braggflow import peakdiff as pd
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.pixelmap import PixelMap

    events = pd.pick_overlay_events(stats, n)
    pixmap = PixelMap.from_geometry(geom)
    frames = []
    with FrameSource(args.frames, geom) as src:
        for ev in events:
            s = stats[ev]
            try:
                slab = src.read(ev)[: pixmap.slab_shape[0], : pixmap.slab_shape[1]]
            except Exception as exc:  # noqa: BLE001 - a bad frame only loses its panel in the plot
                log.warning("overlay: frame %d unreadable (%s)", ev, exc)
                continue
            f_fs, f_ss, _ = found_of[ev]
            pred = predicted_of[ev]
            p_fs, p_ss = (pred[0], pred[1]) if pred is not None else (np.empty(0), np.empty(0))
            m = matches[ev]
            mf = np.zeros(f_fs.size, bool)
            mf[m.a_index] = True
            mp = np.zeros(p_fs.size, bool)
            mp[m.b_index] = True
            fx, fy = pixmap.raw_to_assembled(f_fs, f_ss)
            px, py = pixmap.raw_to_assembled(p_fs, p_ss)
            title = (
                f"event {ev}: {s.reason}\nfound {s.n_found}, predicted {s.n_predicted}, "
                f"matched {s.n_matched}\nP={s.precision:.2f} R={s.recall:.2f}"
            )
            frames.append(
                pd.OverlayFrame(title, pixmap.assemble(slab), np.c_[fx, fy], np.c_[px, py], mf, mp)
            )
    pd.plot_overlay(frames, args.plot_overlay)


def _truth_summary(path, geom, stats, chunks, p) -> dict[str, Any]:
    import numpy as np

    from braggflow import peakdiff as pd
    from braggflow.simulate.truth import read_truth

    truth = read_truth(path)
    refl = truth.reflections
    blank, correct, eligible = [], [], []
    for s in stats:
        i = s.event
        is_blank = i >= truth.n_frames or not bool(truth.has_crystal[i])
        blank.append(is_blank)
        chunk = chunks.get(i)
        crystals = []
        if chunk is not None:
            for c in chunk.crystals:
                if c.reflections is None:
                    continue
                fs, ss = np.asarray(c.reflections.fs, float), np.asarray(c.reflections.ss, float)
                crystals.append((fs, ss, pd.panel_indices(c.reflections.panel, fs, ss, geom)))
        lattices, needed = [], []
        if not is_blank:
            in_frame = refl["frame"] == i
            for lat in np.unique(refl["lattice"][in_frame]):
                sel = in_frame & (refl["lattice"] == lat)
                lattices.append((refl["fs"][sel], refl["ss"][sel], refl["panel"][sel]))
                needed.append(int((sel & refl["visible"]).sum()) >= p["min_found"])
        ok = (
            not is_blank
            and any(needed)
            and pd.crystals_correct(crystals, lattices, needed, p["max_distance_px"])
        )
        correct.append(ok)
        n_vis = int(truth.n_visible[i]) if i < truth.n_frames else 0
        eligible.append(n_vis >= p["min_found"] and s.n_predicted >= p["min_predicted"])
    return pd.selection_truth_summary(stats, blank, correct, eligible)


def _with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """The section checked against the schema with every default filled (``--params`` may be partial)."""
    from braggflow.config import validate_config

    return validate_config({"peakdiff": dict(params)})["peakdiff"]
