"""``braggflow simulate``: the embedded synthetic SFX experiment (frames, geometry, cell, ground truth).

Two forms (the Snakemake rules call both):

    braggflow simulate --geometry G --cell C                  # write the detector .geom and .cell
    braggflow simulate --run R --geometry G --cell C --frames F --truth T   # simulate one run

The second form reads the detector from G (any CrystFEL geometry) and the cell from C.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import InputError

NAME = "simulate"
HELP = "Stage 0: simulate SFX frames with ground truth (CXI frames, .geom, .cell, truth HDF5)"

log = logging.getLogger("braggflow.simulate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument(
        "--seed", type=int, default=None, help="experiment seed (default: the config's seed)"
    )
    parser.add_argument(
        "--geometry", required=True, help="detector .geom: written without --run, read with --run"
    )
    parser.add_argument(
        "--cell", required=True, help="unit cell .cell: written without --run, read with --run"
    )
    parser.add_argument("--run", help="simulate this run (needs --frames and --truth)")
    parser.add_argument("--frames", help="output CXI frame file of the run")
    parser.add_argument("--truth", help="output ground-truth HDF5 of the run")
    parser.add_argument(
        "--n-frames",
        type=int,
        default=None,
        help="frames in the run (default: simulate.frames_per_run)",
    )


def _seed(args: argparse.Namespace) -> int:
    if args.seed is not None:
        return int(args.seed)
    from braggflow.config import load_config, validate_config

    return int((load_config(args.config) if args.config else validate_config({}))["seed"])


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "simulate")
    seed = _seed(args)
    from braggflow.simulate import write_detector

    if args.run is None:
        if args.frames or args.truth:
            raise InputError(
                "--frames/--truth", "given without --run", "add --run NAME to simulate a run"
            )
        write_detector(args.geometry, args.cell, params, seed)
        log.info("wrote %s and %s", args.geometry, args.cell)
        return 0
    if not (args.frames and args.truth):
        raise InputError(
            f"--run {args.run}", "needs --frames and --truth", "give both output paths"
        )
    for path, what in ((args.geometry, "geometry"), (args.cell, "cell")):
        if not Path(path).is_file():
            raise InputError(
                path,
                f"{what} file not found",
                "write it first: braggflow simulate --geometry G --cell C",
            )
    from braggflow.simulate.experiment import Experiment

    n_frames = args.n_frames if args.n_frames is not None else int(params["frames_per_run"])
    if n_frames < 1:
        raise InputError("--n-frames", f"bad value {n_frames}", "give at least 1")
    experiment = Experiment.from_files(args.geometry, args.cell, params, seed)
    stats = experiment.simulate_run(
        args.run,
        n_frames,
        args.frames,
        args.truth,
        config={"simulate": params, "seed": seed},
        inputs=[args.geometry, args.cell],
    )
    log.info("run %s: %s", args.run, json.dumps(stats, sort_keys=True))
    return 0
