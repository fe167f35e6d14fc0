"""``braggflow report``: provenance tables and figures for the Snakemake report (stage 10)."""

from __future__ import annotations

import argparse
import json

from braggflow.commands._common import setup_logging

NAME = "report"
HELP = "Stage 10: report items (config, versions, performance table, activation-map figures)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="item", required=True, metavar="ITEM")
    cfg = sub.add_parser("config", help="write the run's validated config as YAML")
    cfg.add_argument("--config-json", required=True, help="the validated config as JSON")
    cfg.add_argument("--out", required=True)
    ver = sub.add_parser("versions", help="write package and external tool versions as TSV")
    ver.add_argument("--out", required=True)
    perf = sub.add_parser("performance", help="the Table 2 analogue from metrics and benchmarks")
    perf.add_argument("--infer-metrics", nargs="*", default=[])
    perf.add_argument("--benchmarks", nargs="*", default=[])
    perf.add_argument("--out", required=True)
    act = sub.add_parser("activations", help="raw image, class activation maps, segmentation")
    act.add_argument("--models", nargs="+", required=True, help="exported models (.pt)")
    act.add_argument("--frames", required=True)
    act.add_argument("--geometry", required=True)
    act.add_argument("--n-frames", type=int, default=2)
    act.add_argument("--out", required=True)
    for p in (cfg, ver, perf, act):
        p.add_argument("--log-level", default="INFO")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    from braggflow.atomic import atomic_write_text

    if args.item == "config":
        import yaml

        text = yaml.safe_dump(json.loads(args.config_json), sort_keys=False)
        atomic_write_text(args.out, text)
    elif args.item == "versions":
        from braggflow.evaluation.versions import package_versions, tool_versions

        lines = ["kind\tname\tversion"]
        lines += [f"package\t{k}\t{v}" for k, v in package_versions().items()]
        lines += [f"tool\t{k}\t{v}" for k, v in tool_versions().items()]
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    elif args.item == "performance":
        from braggflow.evaluation.performance import (
            rows_from_benchmarks,
            rows_from_infer_metrics,
            to_tsv,
        )

        rows = rows_from_infer_metrics(args.infer_metrics) + rows_from_benchmarks(args.benchmarks)
        atomic_write_text(args.out, to_tsv(rows))
    else:
        from braggflow.evaluation.activations import plot_activations

        plot_activations(args.models, args.frames, args.geometry, args.n_frames, args.out)
    return 0
