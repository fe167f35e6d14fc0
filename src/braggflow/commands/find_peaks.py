"""``braggflow find-peaks``: Stage 1: peakfinder8 peak finding (built-in, CrystFEL or Cheetah) -> CXI peak lists."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "find-peaks"
HELP = "Stage 1: peakfinder8 peak finding (built-in, CrystFEL or Cheetah) -> CXI peak lists"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "find_peaks")
    raise BraggflowError("'find-peaks' is not implemented yet (issue #3)")
