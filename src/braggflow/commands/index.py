"""``braggflow index``: Stage 2/9: index CXI peak lists (CrystFEL indexamajig or built-in DPS) -> CrystFEL stream."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of
from braggflow.errors import BraggflowError

NAME = "index"
HELP = "Stage 2/9: index CXI peak lists (CrystFEL indexamajig or built-in DPS) -> CrystFEL stream"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)


def main(args: argparse.Namespace) -> int:
    params_of(args, "index")
    raise BraggflowError("'index' is not implemented yet (issue #3)")
