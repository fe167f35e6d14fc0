"""``braggflow simulate``: the embedded synthetic SFX experiment (frames, geometry, cell, ground truth)."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "simulate"
HELP = "Stage 0: simulate SFX frames with ground truth (CXI frames, .geom, .cell, truth HDF5)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "simulate")
    raise BraggflowError("'simulate' is not implemented yet (issue #2)")
