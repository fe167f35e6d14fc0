"""``braggflow validate-config``: check an experiment config and print it with defaults filled."""

from __future__ import annotations

import argparse

import yaml

from braggflow.config import load_config

NAME = "validate-config"
HELP = "Validate an experiment config against the schema; print it with every default filled in"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config YAML (e.g. config/experiments/X.yaml)")
    parser.add_argument("--quiet", action="store_true", help="print nothing when valid")


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not args.quiet:
        print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
