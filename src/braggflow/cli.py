"""The ``braggflow`` command line: one subcommand per pipeline stage.

Every Snakemake rule calls exactly one of these, so each stage also runs without Snakemake.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from braggflow import __version__
from braggflow.commands import COMMANDS
from braggflow.errors import BraggflowError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="braggflow",
        description="XFEL diffraction frames -> a deployed neural Bragg-peak finder (Wang et al. 2025).",
    )
    parser.add_argument("--version", action="version", version=f"braggflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        module = importlib.import_module(f"braggflow.commands.{module_name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except BraggflowError as err:
        print(f"braggflow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
