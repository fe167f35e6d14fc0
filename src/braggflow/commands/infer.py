"""``braggflow infer``: Stage 8: Ray producer-consumer inference -> CrystFEL-compatible CXI peak lists."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from braggflow.commands._common import add_params_args, params_of

NAME = "infer"
HELP = "Stage 8: Ray producer-consumer inference -> CrystFEL-compatible CXI peak lists"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument("--model", required=True, help="exported model (.pt, with its .json)")
    parser.add_argument(
        "--frames", required=True, help="CXI/HDF5 frames file (or psana:exp=...:run=...)"
    )
    parser.add_argument("--geometry", required=True, help="CrystFEL .geom of the detector")
    parser.add_argument("--out", required=True, help="CXI peak list to write (Cheetah layout)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plot", help="monitoring plot PNG (default: the metrics path with .png)")
    parser.add_argument(
        "--truth", help="simulator ground truth (.truth.h5): adds precision/recall to the metrics"
    )
    parser.add_argument(
        "--masks", help="also write the segmentation masks (raw slab layout) to this HDF5"
    )


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "infer")
    from braggflow.inference.pipeline import run_inference

    plot = Path(args.plot) if args.plot else Path(args.metrics).with_suffix(".png")
    metrics = run_inference(
        args.model,
        args.frames,
        args.geometry,
        args.out,
        params=params,
        metrics_path=args.metrics,
        plot_path=plot,
        masks_out=args.masks,
        truth=args.truth,
        config_for_provenance={"infer": params},
    )
    line = (
        f"infer: {metrics['frames']} frames ({metrics['bad_frames']} bad), {metrics['peaks_total']} peaks, "
        f"{metrics['images_per_s']:.2f} images/s on {metrics['n_workers']} {metrics['device']} worker(s), "
        f"wall {metrics['wall_s']:.1f} s"
    )
    if "truth" in metrics:
        line += f"; vs truth precision {metrics['truth']['precision']:.3f} recall {metrics['truth']['recall']:.3f}"
    log.info(line)
    return 0
