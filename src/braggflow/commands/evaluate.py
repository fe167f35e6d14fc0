"""``braggflow evaluate``: Stage 9: hit rate, indexing rate, indexing yield, cells; scores against ground truth."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "evaluate"
HELP = "Stage 9: hit rate, indexing rate, indexing yield, cells; scores against ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "evaluate")
    raise BraggflowError("'evaluate' is not implemented yet (issue #8)")
