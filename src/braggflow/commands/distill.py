"""``braggflow distill``: Stage 7: distil a student from cached teacher logits (run under torchrun)."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "distill"
HELP = "Stage 7: distil a student from cached teacher logits (run under torchrun)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "distill")
    raise BraggflowError("'distill' is not implemented yet (issue #6)")
