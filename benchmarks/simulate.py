"""Benchmark of ``braggflow simulate`` on the default (embedded) experiment, single-threaded.

Figures: ``frames_per_s_per_core`` (frames simulated in memory per second of one core, target
>= 20), ``frames_per_s_with_io`` (whole runs written to CXI + truth files), ``demo_seconds``
(the demo's 3 runs x 40 frames, budget < 15 s), and the experiment's spot statistics.

    uv run python benchmarks/simulate.py --out benchmarks/results/simulate.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # single core: set before numpy loads its BLAS

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import parse_args, write_result  # noqa: E402
from braggflow.simulate import default_params, write_detector  # noqa: E402
from braggflow.simulate.experiment import Experiment, run_statistics  # noqa: E402


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import numpy as np

    params = default_params()
    seed = 2025
    n_frames = 40 if args.quick else int(params["frames_per_run"])
    runs = params["runs"][:1] if args.quick else params["runs"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        write_detector(tmp / "detector.geom", tmp / "crystal.cell", params, seed)
        experiment = Experiment.from_files(
            tmp / "detector.geom", tmp / "crystal.cell", params, seed
        )
        setup_s = time.perf_counter() - start

        # in-memory frames: the simulator itself (CPU time of this single-threaded process)
        plan = experiment.run_plan("bench", n_frames)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        n_visible = []
        for i in range(n_frames):
            n_visible.append(
                int(
                    experiment.simulate_frame("bench", i, int(plan[i])).reflections["visible"].sum()
                )
            )
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0

        # whole runs with file output, as the workflow does
        io0 = time.perf_counter()
        stats = []
        for run in runs:
            stats.append(
                experiment.simulate_run(run, n_frames, tmp / f"{run}.cxi", tmp / f"{run}.truth.h5")
            )
        io_s = time.perf_counter() - io0
        frame_bytes = (tmp / f"{runs[0]}.cxi").stat().st_size

    hits = sum(s["hits"] for s in stats)
    figures = {
        "frames_per_s_per_core": n_frames / cpu_s,
        "frames_per_s_wall_single_thread": n_frames / wall_s,
        "frames_per_s_with_io": len(runs) * n_frames / io_s,
        "demo_seconds": setup_s + io_s,
        "setup_seconds": setup_s,
        "slab_pixels": float(np.prod(experiment.detector.slab_shape)),
        "reflections_in_table": float(len(experiment.table)),
        "frames": float(sum(s["frames"] for s in stats)),
        "hits": float(hits),
        "blank": float(sum(s["blank"] for s in stats)),
        "multi_lattice": float(sum(s["multi_lattice"] for s in stats)),
        "mean_visible_spots_per_hit": sum(s["mean_visible_per_hit"] * s["hits"] for s in stats)
        / max(hits, 1),
        "hits_ge_20_visible": float(sum(s["hits_ge_20_visible"] for s in stats)),
        "hits_5_to_19_visible": float(sum(s["hits_5_to_19_visible"] for s in stats)),
        "hits_lt_5_visible": float(sum(s["hits_lt_5_visible"] for s in stats)),
        "cxi_megabytes_per_run": frame_bytes / 1e6,
    }
    check = run_statistics(plan, np.asarray(n_visible), cpu_s)
    write_result(args.out, "simulate", figures, in_memory_run=check)
    for key, value in figures.items():
        print(f"{key:32s} {value:.3f}")


if __name__ == "__main__":
    main()
