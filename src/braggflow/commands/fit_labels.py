"""``braggflow fit-labels``: Stage 4: Ray-distributed pseudo-Voigt fits -> pixel labels and training set."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from braggflow.commands._common import add_params_args, params_of

NAME = "fit-labels"
HELP = "Stage 4: Ray-distributed pseudo-Voigt fits -> pixel labels and training set"

log = logging.getLogger("braggflow.fit_labels")

CANDIDATE_MODES = ("matched", "predicted", "both")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument(
        "--selections",
        nargs="+",
        required=True,
        help="PeakDiff selection TSVs, one per run (<run>.tsv)",
    )
    parser.add_argument("--streams", nargs="+", required=True, help="CrystFEL streams, same order")
    parser.add_argument("--frames", nargs="+", required=True, help="frame files, same order")
    parser.add_argument("--geometry", required=True, help="CrystFEL .geom of the detector")
    parser.add_argument("--out", required=True, help="training set HDF5 to write")
    parser.add_argument("--summary", help="JSON summary (counts, timings, truth figures)")
    parser.add_argument(
        "--truth",
        nargs="*",
        default=[],
        help="ground-truth files of simulated runs, same order (optional)",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of a local Ray (ignored when joining RAY_ADDRESS)",
    )
    parser.add_argument("--seed", type=int, default=2025, help="seed of the held-out split")
    parser.add_argument(
        "--match-distance",
        type=float,
        default=3.0,
        help="found-predicted match distance in px (peakdiff.max_distance_px)",
    )


def main(args: argparse.Namespace) -> int:
    params = _with_defaults(params_of(args, "fit_labels"))
    t_start = time.perf_counter()
    import numpy as np

    from braggflow import peakdiff as pd
    from braggflow.atomic import atomic_write_json
    from braggflow.errors import InputError
    from braggflow.fitting import distributed
    from braggflow.fitting.fit import STATUS_NAMES
    from braggflow.fitting.stage import FrameJob, detector_context, split_batches
    from braggflow.fitting.trainset import TrainsetWriter, assign_split
    from braggflow.fitting.truthcheck import LabelTruthCounts
    from braggflow.fitting.windows import FitSettings
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.formats.stream import read_stream

    n_runs = len(args.selections)
    if len(args.streams) != n_runs or len(args.frames) != n_runs:
        raise InputError(
            "--selections/--streams/--frames",
            "need one of each per run",
            "pass them in the same run order",
        )
    if args.truth and len(args.truth) != n_runs:
        raise InputError(
            "--truth", "need one truth file per run or none", "pass them in the run order"
        )
    try:
        settings = FitSettings.from_params(params)
    except ValueError as exc:
        raise InputError("config fit_labels", str(exc), "see config/README.md") from None
    mode = params.get("candidates", "both")
    if mode not in CANDIDATE_MODES:
        raise InputError(
            "config fit_labels.candidates",
            f"unknown mode {mode!r}",
            f"use one of {CANDIDATE_MODES}",
        )
    geom = read_geom(args.geometry)

    # 1. frames to label and their candidate peaks
    runs: list[str] = []
    jobs_by_run: list[list[FrameJob]] = []
    contexts = []
    bad_all = None
    n_selected = 0
    for sel_path, stream_path, frames_path in zip(
        args.selections, args.streams, args.frames, strict=True
    ):
        run = Path(sel_path).stem
        runs.append(run)
        rows = pd.parse_selection_tsv(Path(sel_path).read_text(), str(sel_path))
        chunks = _chunks_by_frame(read_stream(stream_path))
        with FrameSource(frames_path, geom) as src:
            bad = src.bad_pixels()
            energy = src.photon_energy_ev(0) if len(src) else None
        bad_all = bad if bad_all is None else (bad_all | bad)
        contexts.append(detector_context(geom, bad, params.get("saturation_adu"), energy))
        jobs = []
        for row in rows:
            if not row.selected:
                continue
            n_selected += 1
            fs, ss, source = _candidates(
                chunks.get(row.event), geom, mode, params, args.match_distance
            )
            keep = _dedupe(fs, ss, float(params.get("min_separation_px", 1.5)))
            jobs.append(
                FrameJob(run, str(frames_path), row.event, fs[keep], ss[keep], source[keep])
            )
        jobs_by_run.append(jobs)
    n_candidates = sum(j.cand_fs.size for jobs in jobs_by_run for j in jobs)
    log.info("%d selected frames, %d candidate peaks (mode %s)", n_selected, n_candidates, mode)

    # 2. batches (never across runs: a batch shares one detector context)
    batch_size = int(params.get("batch_frames", 40))
    batches: list[tuple[int, list[FrameJob]]] = []
    for r, jobs in enumerate(jobs_by_run):
        batches += [(r, b) for b in split_batches(jobs, batch_size)]

    # 3. writer
    n_ss, n_fs = geom.slab_shape
    pixmap = PixelMap.from_geometry(geom, mask=None if bad_all is None else ~bad_all[:n_ss, :n_fs])
    writer = TrainsetWriter(args.out, pixmap, pixmap.valid)
    keys: list[tuple[str, int]] = []
    fit_parts: list[dict[str, np.ndarray]] = []
    failed_frames: list[dict[str, Any]] = []
    truth_counts = LabelTruthCounts()
    truths = [None] * n_runs
    if args.truth:
        from braggflow.simulate.truth import read_truth

        truths = [read_truth(t) for t in args.truth]
    run_index = {r: i for i, r in enumerate(runs)}
    sources: dict[str, Any] = {}

    executor = params.get("executor", "ray")
    t_ray = 0.0
    started = False
    ray_error = None
    try:
        if executor == "ray" and batches:
            t0 = time.perf_counter()
            try:
                started = distributed.start_ray(args.num_cpus)
            except Exception as exc:  # noqa: BLE001 - local Ray that cannot start
                if os.environ.get("RAY_ADDRESS"):
                    raise
                log.warning("local Ray failed to start (%s); fitting in this process", exc)
                ray_error, executor = str(exc), "serial"
            t_ray = time.perf_counter() - t0
        t_fit0 = time.perf_counter()
        results = _results(distributed, executor, contexts, batches, settings, params)
        for outputs in results:
            for out in outputs:
                if out.error is not None or out.labels is None:
                    failed_frames.append({"run": out.run, "event": out.event, "error": out.error})
                    continue
                r = run_index[out.run]
                src = sources.get(args.frames[r])
                if src is None:
                    src = sources[args.frames[r]] = FrameSource(args.frames[r], geom)
                try:
                    raw = src.read(out.event)[:n_ss, :n_fs]
                except Exception as exc:  # noqa: BLE001 - counted, never fatal
                    failed_frames.append({"run": out.run, "event": out.event, "error": str(exc)})
                    continue
                photons = raw * contexts[r].photons_per_adu
                i = writer.add(pixmap.assemble(photons), pixmap.assemble(out.labels))
                keys.append((out.run, out.event))
                fits = dict(out.fits)
                fits["frame"] = np.full(len(next(iter(fits.values()), [])), i, np.int64)
                fit_parts.append(fits)
                if truths[r] is not None:
                    truth_counts.add(_truth_counts(truths[r], out.event, out.labels))
        t_fit = time.perf_counter() - t_fit0
    except BaseException:
        writer._abort()
        raise
    finally:
        for s in sources.values():
            s.close()
        if started:
            import ray

            ray.shutdown()

    # 4. tables, split, provenance
    fits_table = _concat_fits(fit_parts)
    split = assign_split(keys, float(params.get("val_fraction", 0.2)), int(args.seed))
    inputs = [*args.selections, *args.streams, args.geometry]
    writer.close(
        [k[0] for k in keys],
        [k[1] for k in keys],
        split,
        fits_table,
        config={"fit_labels": params, "seed": args.seed},
        inputs=inputs,
        attrs={
            "label_rule": f"fitted profile without background > {settings.label_fraction} of its peak"
        },
    )
    status = fits_table.get("status", np.zeros(0, int))
    n_fitted = int(status.size)
    summary: dict[str, Any] = {
        "runs": runs,
        "frames_selected": n_selected,
        "frames_written": len(keys),
        "frames_failed": failed_frames,
        "frames_held_out": int(split.sum()),
        "frames_zero_candidates": int(
            sum(j.cand_fs.size == 0 for jobs in jobs_by_run for j in jobs)
        ),
        "candidates": n_candidates,
        "candidate_mode": mode,
        "peaks_accepted": int((status == 0).sum()),
        "accepted_fraction": float((status == 0).mean()) if n_fitted else None,
        "status_counts": {name: int((status == k).sum()) for k, name in STATUS_NAMES.items()},
        "solver": settings.solver,
        "executor": executor,
        "batches": len(batches),
        "ray_start_s": round(t_ray, 3),
        "ray_error": ray_error,
        "fit_s": round(t_fit, 3),
        "peaks_per_s": round(n_fitted / t_fit, 1) if n_fitted and t_fit > 0 else None,
        "total_s": round(time.perf_counter() - t_start, 3),
    }
    if args.truth:
        summary["truth"] = truth_counts.as_dict()
    log.info(
        "fit-labels: %s",
        {k: summary[k] for k in ("frames_written", "candidates", "peaks_accepted", "fit_s")},
    )
    if args.summary:
        atomic_write_json(args.summary, summary)
    return 0


def _results(distributed, executor, contexts, batches, settings, params):
    """Each batch's outputs in submission order (Ray, or in-process with executor=serial)."""
    if executor == "serial":
        return distributed.run_serial(contexts, batches, settings)
    return distributed.run_ray(
        contexts,
        batches,
        settings,
        max_in_flight=int(params.get("max_in_flight", 80)),
        max_retries=int(params.get("max_retries", 3)),
    )


def _chunks_by_frame(stream) -> dict[int, Any]:
    out = {}
    for chunk in stream.chunks:
        idx = chunk.frame_index
        if idx is None and chunk.serial is not None:
            idx = chunk.serial - 1
        if idx is not None:
            out[int(idx)] = chunk
    return out


def _candidates(chunk, geom, mode, params, match_distance):
    """Candidate positions of one frame: matched found peaks and/or predicted reflections."""
    import numpy as np

    from braggflow import peakdiff as pd

    empty = (np.empty(0), np.empty(0), np.empty(0, np.int64))
    if chunk is None:
        return empty
    f_fs, f_ss, f_panel = pd.chunk_found(chunk, geom)
    pred = pd.chunk_predicted(chunk, geom)
    if pred is None:
        return empty
    p_fs, p_ss, p_panel, i_sig = pred
    parts = []
    if mode in ("matched", "both"):
        m = pd.match_peaks(f_fs, f_ss, p_fs, p_ss, match_distance, f_panel, p_panel)
        parts.append((f_fs[m.a_index], f_ss[m.a_index], np.zeros(m.n_matched, np.int64)))
    if mode in ("predicted", "both"):
        cut = params.get("min_i_over_sigma")
        ok = np.ones(p_fs.size, bool) if cut is None else (i_sig >= float(cut))
        if mode == "both" and parts:
            m = pd.match_peaks(f_fs, f_ss, p_fs, p_ss, match_distance, f_panel, p_panel)
            ok[m.b_index] = False  # already a candidate through its found peak
        parts.append((p_fs[ok], p_ss[ok], np.ones(int(ok.sum()), np.int64)))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def _dedupe(fs, ss, min_sep):
    from braggflow.fitting.stage import dedupe_candidates

    return dedupe_candidates(fs, ss, min_sep)


def _truth_counts(truth, event, labels):
    import numpy as np

    from braggflow.fitting.truthcheck import LabelTruthCounts, label_truth_counts

    if event >= truth.n_frames:
        return LabelTruthCounts()
    vis = truth.reflections_in(event, visible_only=True)
    fp = None if truth.footprint is None else np.asarray(truth.footprint[event])
    return label_truth_counts(labels, fp, vis["fs"], vis["ss"])


def _concat_fits(parts):
    import numpy as np

    if not parts:
        return {"frame": np.zeros(0, np.int64), "status": np.zeros(0, np.int64)}
    names = list(parts[0])
    return {k: np.concatenate([p[k] for p in parts]) for k in names}


def _with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """The section checked against the schema with every default filled (``--params`` may be partial)."""
    from braggflow.config import validate_config

    return validate_config({"fit_labels": dict(params)})["fit_labels"]
