"""``braggflow peakdiff``: Stage 3: PeakDiff - match found vs predicted peaks, select frames -> selection TSV + plots."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "peakdiff"
HELP = "Stage 3: PeakDiff - match found vs predicted peaks, select frames -> selection TSV + plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "peakdiff")
    raise BraggflowError("'peakdiff' is not implemented yet (issue #4)")
