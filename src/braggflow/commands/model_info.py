"""``braggflow model-info``: Print parameter counts per part for each model preset."""

from __future__ import annotations

import argparse
import json

from braggflow.commands._common import add_params_args, params_of

NAME = "model-info"
HELP = "Print parameter counts per part for each model preset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument(
        "--preset",
        action="append",
        help="only these presets (repeatable); default: all, plus the configured model",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def parameter_table(names: list[str], extra: dict | None = None) -> list[dict]:
    """Counts per part, built on the meta device (no memory, seconds even for 673M)."""
    from braggflow.model.arch import get_preset
    from braggflow.model.peaknet import build_model, count_parameters

    archs = [get_preset(n) for n in names]
    if extra is not None:
        archs.append(extra)
    rows = []
    for arch in archs:
        counts = count_parameters(build_model(arch, device="meta"))
        rows.append(
            {
                "preset": arch.name,
                "backbone_name": arch.backbone,
                "bifpn_blocks": arch.bifpn_blocks,
                "bifpn_width": arch.bifpn_width,
                "input_size": arch.input_size,
                **counts,
            }
        )
    return rows


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "model")
    from braggflow.model.arch import PRESETS, arch_from_params

    names = args.preset or list(PRESETS)
    configured = arch_from_params(params)
    extra = None
    if not args.preset and configured != PRESETS.get(configured.name):
        extra = configured.replace(name=f"{configured.name} (configured)")
    rows = parameter_table(names, extra)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = f"{'preset':<26} {'backbone':<16} {'blocks':>6} {'width':>5} {'input':>5} {'backbone':>10} {'BiFPN':>9} {'head':>8} {'total':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['preset']:<26} {r['backbone_name']:<16} {r['bifpn_blocks']:>6} {r['bifpn_width']:>5} {r['input_size']:>5} "
            f"{r['backbone'] / 1e6:>9.2f}M {r['bifpn'] / 1e6:>8.2f}M {r['head'] / 1e6:>7.3f}M {r['total'] / 1e6:>9.2f}M"
        )
    return 0
