"""``braggflow evaluate``: stage 9, the paper's metrics per method (section 3.1, Table 1)."""

from __future__ import annotations

import argparse

from braggflow.commands._common import add_params_args, params_of

NAME = "evaluate"
HELP = "Stage 9: hit rate, indexing rate, indexing yield, cells; scores against ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    run = sub.add_parser("run", help="metrics of one method on one run -> JSON")
    add_params_args(run)
    run.add_argument("--method", required=True)
    run.add_argument("--run", help="run name (default: the peak file's stem)")
    run.add_argument("--peaks", required=True, help="the method's CXI peak list")
    run.add_argument("--stream", required=True, help="the stream of indexing those peaks")
    run.add_argument("--geometry", required=True)
    run.add_argument("--cell", help="target cell (recorded for provenance)")
    run.add_argument("--truth", help="ground truth of a simulated run")
    run.add_argument("--out", required=True)
    summary = sub.add_parser("summary", help="one row per method (Table 1) + cell histograms")
    add_params_args(summary)
    summary.add_argument("--metrics", nargs="+", required=True)
    summary.add_argument("--out", required=True, help="summary TSV (a JSON twin is written beside)")
    summary.add_argument("--plot-cells", required=True)


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "evaluate")
    from pathlib import Path

    from braggflow.atomic import atomic_write_json, atomic_write_text

    if args.step == "run":
        from braggflow.evaluation.run import evaluate_run

        run = args.run or Path(args.peaks).stem
        result = evaluate_run(
            args.method, run, args.peaks, args.stream, params, args.geometry, args.truth
        )
        inputs = [p for p in (args.peaks, args.stream, args.truth, args.cell) if p]
        from braggflow.provenance import provenance

        result["provenance"] = provenance(params, inputs)
        atomic_write_json(args.out, result)
        return 0

    import numpy as np

    from braggflow.evaluation.figures import plot_cell_histograms
    from braggflow.evaluation.summary import load_metrics, summarise, to_tsv

    per_run = load_metrics(args.metrics)
    rows = summarise(per_run)
    atomic_write_text(args.out, to_tsv(rows))
    atomic_write_json(Path(args.out).with_suffix(".json"), {"methods": rows})
    cells: dict[str, list] = {}
    for m in per_run:
        cells.setdefault(m["method"], []).extend(m.get("cells", []))
    plot_cell_histograms(
        {k: np.asarray(v, float).reshape(-1, 6) for k, v in cells.items()}, args.plot_cells
    )
    return 0
