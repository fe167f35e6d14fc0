"""``braggflow fit-labels``: Stage 4: Ray-distributed pseudo-Voigt fits -> pixel labels and training set."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "fit-labels"
HELP = "Stage 4: Ray-distributed pseudo-Voigt fits -> pixel labels and training set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "fit_labels")
    raise BraggflowError("'fit-labels' is not implemented yet (issue #4)")
