"""``braggflow train``: Stage 5: train the teacher (run under torchrun; FSDP2) -> checkpoints + exported model."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "train"
HELP = "Stage 5: train the teacher (run under torchrun; FSDP2) -> checkpoints + exported model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "train")
    raise BraggflowError("'train' is not implemented yet (issue #5)")
