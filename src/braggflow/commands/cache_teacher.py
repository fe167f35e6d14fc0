"""``braggflow cache-teacher``: Stage 6: cache the teacher's pre-activation logits (float16)."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "cache-teacher"
HELP = "Stage 6: cache the teacher's pre-activation logits (float16)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "distill")
    raise BraggflowError("'cache-teacher' is not implemented yet (issue #6)")
