"""``braggflow report``: Stage 10: figures and tables for the Snakemake report."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "report"
HELP = "Stage 10: figures and tables for the Snakemake report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "report")
    raise BraggflowError("'report' is not implemented yet (issue #8)")
