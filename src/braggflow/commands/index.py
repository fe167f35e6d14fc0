"""``braggflow index``: Stage 2/9: index CXI peak lists (CrystFEL indexamajig or built-in DPS) -> CrystFEL stream.

    braggflow index --params JSON --peaks P.cxi --frames F.cxi --geometry G.geom --cell C.cell \\
        --out RUN.stream [--summary RUN.stream.json] [--threads N]

Engines (config ``index.engine``): ``builtin`` (always available: DPS indexing with cctbx rstbx,
checked against the target cell) and ``crystfel`` (``indexamajig --peaks=cxi``; a missing
indexamajig is an error before any work starts). Both write a CrystFEL stream (format 2.3), a
summary JSON (frames, hits, indexed, not indexed / skipped by reason) and a provenance sidecar.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import InputError

NAME = "index"
HELP = "Stage 2/9: index CXI peak lists (CrystFEL indexamajig or built-in DPS) -> CrystFEL stream"

log = logging.getLogger("braggflow.index")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument("--peaks", required=True, help="CXI peak lists (Cheetah layout) of the run")
    parser.add_argument(
        "--frames",
        required=True,
        help="CXI frames of the run (photon energy, camera length, pixels)",
    )
    parser.add_argument("--geometry", required=True, help="CrystFEL .geom of the detector")
    parser.add_argument("--cell", required=True, help="CrystFEL .cell of the target")
    parser.add_argument("--out", required=True, help="output CrystFEL stream")
    parser.add_argument("--summary", help="output summary JSON (default: <out>.json)")
    parser.add_argument(
        "--threads", type=int, default=1, help="worker processes (builtin) or indexamajig -j"
    )


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "index")
    engine = params.get("engine", "builtin")
    builtin_cfg = params.get("builtin", {})
    if engine == "builtin" and builtin_cfg.get("search", "auto") in ("auto", "dps"):
        # cctbx ships its own libstdc++: import it before anything pulls in scipy.special/torch
        from braggflow.indexing.dps import import_cctbx

        import_cctbx()
    for path, what in (
        (args.peaks, "peak file"),
        (args.geometry, "geometry"),
        (args.cell, "cell file"),
    ):
        if not Path(path).is_file():
            raise InputError(path, f"{what} not found", "run the previous stage or fix the path")
    summary_path = Path(args.summary) if args.summary else Path(str(args.out) + ".json")
    start = time.perf_counter()
    if engine == "crystfel":
        summary = _run_crystfel(args, params)
    elif engine == "builtin":
        summary = _run_builtin(args, params)
    else:
        raise InputError(
            "config index.engine", f"unknown engine {engine!r}", "use builtin or crystfel"
        )
    summary["wall_seconds"] = time.perf_counter() - start
    from braggflow.atomic import atomic_write_json
    from braggflow.provenance import write_sidecar

    atomic_write_json(summary_path, summary)
    write_sidecar(args.out, params, [args.peaks, args.frames, args.geometry, args.cell])
    log.info(
        "%s: %d frames, %d hits, %d indexed (%.0f%%), %s",
        args.out,
        summary["frames"],
        summary["hits"],
        summary["indexed"],
        100 * summary["index_rate"],
        {**summary.get("not_indexed", {}), **summary.get("skipped", {})},
    )
    return 0


def _tolerance(params: dict[str, Any]) -> tuple[float, float]:
    return float(params.get("length_tolerance_pct", 5.0)), float(
        params.get("angle_tolerance_deg", 1.5)
    )


def _run_builtin(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from braggflow import __version__
    from braggflow.formats.cell import read_cell
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.stream import Stream, write_stream
    from braggflow.indexing.builtin import BuiltinParams
    from braggflow.indexing.peaks import read_peak_tables
    from braggflow.indexing.run import (
        BUILTIN_ENGINE_TEXT,
        BUILTIN_INDEXED_BY,
        FrameTask,
        IntegrationSettings,
        index_frames,
        outcome_chunk,
        summarize,
    )

    geom = read_geom(args.geometry)
    cell = read_cell(args.cell)
    length_pct, angle_deg = _tolerance(params)
    try:
        bparams = BuiltinParams.from_config(
            {
                **params.get("builtin", {}),
                "min_peaks": int(params.get("min_peaks", 10)),
                "length_tolerance_pct": length_pct,
                "angle_tolerance_deg": angle_deg,
            }
        )
    except ValueError as exc:
        raise InputError("config index.builtin", str(exc), "see config/README.md (index)") from None
    tables = read_peak_tables(args.peaks)
    with FrameSource(args.frames, geom) as src:
        if len(src) != len(tables):
            raise InputError(
                args.peaks,
                f"{len(tables)} peak rows but {len(src)} frames in {args.frames}",
                "index the peak file made from these frames",
            )
        energies = [src.photon_energy_ev(i) for i in range(len(src))]
        clens = [src.clen_m(i) for i in range(len(src))]
    fallback_energy = geom.photon_energy if isinstance(geom.photon_energy, int | float) else None
    tasks = [
        FrameTask(
            i,
            np.asarray(t.fs, float),
            np.asarray(t.ss, float),
            np.asarray(t.intensity, float),
            energies[i] if energies[i] is not None else fallback_energy,
            clens[i],
        )
        for i, t in enumerate(tables)
    ]
    integ = params.get("integration", {})
    integration = IntegrationSettings(
        method=str(integ.get("method", "rings")),
        radii=tuple(float(r) for r in integ.get("radii", (3.0, 4.0, 5.0))),  # type: ignore[arg-type]
    )
    start = time.perf_counter()
    outcomes = index_frames(
        tasks, geom, cell, bparams, max(1, args.threads), args.frames, integration
    )
    wall = time.perf_counter() - start
    bandwidth = _bandwidth(geom)
    stream = Stream(
        # a frame that could not be processed gets no chunk (it is counted in the summary)
        chunks=[outcome_chunk(o, str(args.peaks), bandwidth) for o in outcomes if not o.skipped],
        audit=[
            f"Generated by braggflow {__version__}: {BUILTIN_ENGINE_TEXT}",
            " ".join(["braggflow", *sys.argv[1:]]) if sys.argv[1:] else "braggflow index",
            f"Indexing methods selected: {BUILTIN_INDEXED_BY}",
        ],
        geometry_text=Path(args.geometry).read_text(),
        cell_text=Path(args.cell).read_text(),
    )
    write_stream(args.out, stream)
    return summarize(outcomes, wall, max(1, args.threads))


def _bandwidth(geom: Any) -> float:
    """The geometry's ``bandwidth`` (fraction) for the stream, else indexamajig's default 1e-8."""
    try:
        return float(geom.globals.get("bandwidth", 1e-8))
    except ValueError:
        return 1e-8


def _run_crystfel(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    import os
    import tempfile

    from braggflow.formats.stream import read_stream
    from braggflow.indexing.crystfel import (
        CrystfelParams,
        check_stream_written,
        geometry_for_cxi_peaks,
        indexamajig_command,
        require_indexamajig,
        run_indexamajig,
        write_list_file,
    )
    from braggflow.indexing.peaks import count_frames
    from braggflow.indexing.run import summarize_stream

    cparams = CrystfelParams.from_config(params.get("crystfel"))
    exe = require_indexamajig(cparams.executable)  # before any work
    n_frames = count_frames(args.peaks)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        work = Path(tmp)
        list_path = work / "frames.lst"
        geom_path = work / "indexamajig.geom"
        stream_tmp = work / "indexamajig.stream"
        write_list_file(list_path, Path(args.peaks), n_frames)
        geom_path.write_text(geometry_for_cxi_peaks(Path(args.geometry).read_text()))
        cmd = indexamajig_command(
            exe,
            list_path,
            stream_tmp,
            geom_path,
            Path(args.cell),
            cparams,
            max(1, args.threads),
            int(params.get("min_peaks", 10)),
            _tolerance(params),
        )
        start = time.perf_counter()
        run_indexamajig(cmd, work)
        wall = time.perf_counter() - start
        check_stream_written(stream_tmp)
        stream = read_stream(
            stream_tmp
        )  # the one parser: refuses a non-stream before we publish it
        os.replace(stream_tmp, out)
    summary = summarize_stream(
        stream.chunks, len(stream.skipped), "crystfel", wall, max(1, args.threads)
    )
    summary["command"] = cmd
    return summary
