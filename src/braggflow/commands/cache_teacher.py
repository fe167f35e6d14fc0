"""``braggflow cache-teacher``: Stage 6: cache the teacher's pre-activation logits (float16)."""

from __future__ import annotations

import argparse
import json
import logging

from braggflow.commands._common import add_params_args, params_of

NAME = "cache-teacher"
HELP = "Stage 6: cache the teacher's pre-activation logits (float16)"

log = logging.getLogger("braggflow.cache_teacher")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_params_args(parser)
    parser.add_argument("--model", required=True, help="exported teacher (.pt) from 'train'")
    parser.add_argument("--trainset", required=True, help="training-set HDF5 from fit-labels")
    parser.add_argument("--out", required=True, help="cache HDF5 to write (resumes <out>.partial)")
    parser.add_argument("--batch-size", type=int, help="override distill.cache_batch_size")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")


def main(args: argparse.Namespace) -> int:
    params = params_of(args, "distill")
    from braggflow.distill.cache import cache_teacher

    batch = args.batch_size or int(params.get("cache_batch_size", 8))
    summary = cache_teacher(args.model, args.trainset, args.out, batch, args.device, params)
    log.info("teacher cache %s: %s", args.out, json.dumps(summary, sort_keys=True))
    return 0
