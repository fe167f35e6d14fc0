"""``braggflow infer``: Stage 8: Ray producer-consumer inference -> CrystFEL-compatible CXI peak lists."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "infer"
HELP = "Stage 8: Ray producer-consumer inference -> CrystFEL-compatible CXI peak lists"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "infer")
    raise BraggflowError("'infer' is not implemented yet (issue #7)")
