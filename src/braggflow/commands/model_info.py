"""``braggflow model-info``: Print parameter counts per part for each model preset."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "model-info"
HELP = "Print parameter counts per part for each model preset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "model")
    raise BraggflowError("'model-info' is not implemented yet (issue #5)")
