"""``braggflow find-peaks``: Stage 1: peakfinder8 peak finding (built-in, CrystFEL or Cheetah) -> CXI peak lists.

    braggflow find-peaks --frames RUN.cxi --geometry DET.geom --out PEAKS.cxi [--params JSON]

Writes ``PEAKS.cxi`` (Cheetah's CXI layout, external links to the frames so that
``indexamajig --peaks=cxi`` reads it directly) and ``PEAKS.stats.json`` (frames, skipped bad frames
with reasons, peaks per frame). The built-in engine runs MPI-parallel under
``braggflow-launch mpi -n N -- braggflow find-peaks ...`` with identical output for any N.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import InputError

NAME = "find-peaks"
HELP = "Stage 1: peakfinder8 peak finding (built-in, CrystFEL or Cheetah) -> CXI peak lists"

log = logging.getLogger("braggflow.find_peaks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument("--frames", required=True, help="CXI/HDF5 frame file of one run")
    parser.add_argument("--geometry", required=True, help="CrystFEL .geom of the detector")
    parser.add_argument("--out", required=True, help="output CXI peak list")
    parser.add_argument(
        "--stats", help="statistics JSON (default: the output path with .stats.json)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads for an external engine (indexamajig -j)"
    )


def stats_path(out: Path) -> Path:
    return out.with_suffix(".stats.json")


def main(args: argparse.Namespace) -> int:
    params_section = params_of(args, "find_peaks")
    from braggflow.atomic import atomic_write_json
    from braggflow.formats.cxi import write_cxi_peaks
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.peakfinder8 import Peakfinder8Params, engines
    from braggflow.peakfinder8.run import run_builtin, stats_for_tables
    from braggflow.provenance import provenance

    t0 = time.perf_counter()
    frames, out = Path(args.frames), Path(args.out)
    geom = read_geom(args.geometry)
    try:
        params = Peakfinder8Params.from_config(params_section)
    except ValueError as exc:
        raise InputError("config find_peaks", str(exc), "fix the find_peaks section") from None
    engine = params_section.get("engine", "builtin")
    size = 1
    if engine == "builtin":
        stats, size = run_builtin(frames, geom, params, params_section, FrameSource)
        if stats is None:  # an MPI rank other than 0: rank 0 writes
            return 0
        tables = [o.table for o in stats.outcomes]
    else:
        # external engines: check the tool before any work, then one run on all frames (one MPI
        # rank runs it; the tool has its own parallelism, e.g. indexamajig -j)
        from braggflow.peakfinder8.run import mpi_world

        _comm, rank, _size = mpi_world()
        if rank != 0:
            return 0
        with FrameSource(frames, geom) as source:
            n_frames = len(source)
        workdir = out.parent / f".{out.stem}.{engine}"
        if engine == "crystfel":
            settings = params_section.get("crystfel", {})
            engines.require_tool(
                str(settings.get("executable", "indexamajig")), "find_peaks.crystfel.executable"
            )
            tables = engines.run_crystfel(
                frames, Path(args.geometry), n_frames, params, settings, workdir, args.threads
            )
        elif engine == "cheetah":
            tables = engines.run_cheetah(
                frames,
                Path(args.geometry),
                n_frames,
                params,
                params_section.get("cheetah", {}),
                workdir,
            )
        else:
            raise InputError(
                "config find_peaks.engine",
                f"unknown engine {engine!r}",
                "use builtin, crystfel or cheetah",
            )
        stats = stats_for_tables(tables)
    seconds = time.perf_counter() - t0
    config = {"find_peaks": dict(params_section)}
    write_cxi_peaks(
        out,
        tables,
        frames_path=frames,
        max_peaks=int(params_section.get("max_peaks_per_frame", 2048)),
        config=config,
        inputs=[frames, args.geometry],
        attrs={"engine": engine},
    )
    summary = stats.summary(
        {
            "engine": engine,
            "parameters": params.as_dict(),
            "ranks": size,
            "seconds": round(seconds, 3),
            "frames_per_s": round(stats.frames / seconds, 2) if seconds > 0 else None,
            "peaks": str(out),
            "provenance": provenance(config, [frames, args.geometry]),
        }
    )
    atomic_write_json(Path(args.stats) if args.stats else stats_path(out), summary)
    log.info(
        "%s: %d frames (%d skipped), %d peaks, %.2f s with %d rank(s)",
        out,
        summary["frames"],
        summary["frames_skipped"],
        summary["peaks_total"],
        seconds,
        size,
    )
    return 0
