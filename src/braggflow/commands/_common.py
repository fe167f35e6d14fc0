"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from braggflow.config import stage_params


def add_params_args(parser: argparse.ArgumentParser) -> None:
    """``--params JSON`` (what rules pass) or ``--config FILE`` (standalone use)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--params", help="JSON of this stage's validated config section (rules pass this)"
    )
    group.add_argument("--config", help="an experiment config YAML; this stage's section is used")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def params_of(args: argparse.Namespace, section: str) -> dict[str, Any]:
    setup_logging(args.log_level)
    return stage_params(args.params, args.config, section)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
