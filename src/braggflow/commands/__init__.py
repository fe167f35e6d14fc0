"""One module per CLI subcommand.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``main(args) -> int``.
Modules import only the standard library and light braggflow modules at top level; heavy
packages (torch, timm, ray, cctbx, numba, scipy) are imported inside ``main`` so that
``braggflow --help`` stays fast.
"""

COMMANDS = [
    "simulate",
    "find_peaks",
    "index",
    "peakdiff",
    "fit_labels",
    "train",
    "cache_teacher",
    "distill",
    "infer",
    "evaluate",
    "report",
    "model_info",
    "validate_config",
]
