"""Benchmark of the fit_labels stage: lmfit vs the batched solver, and the Ray stage overhead.

Measured side by side in one run:

* ``lmfit_peaks_per_s_per_core``, ``batched_peaks_per_s_per_core``: peaks per CPU-second of the
  two solvers on the same windows (lmfit spread over the cores, each process timing its own CPU);
* ``decision_agreement`` (same accept/reject) and ``median_centre_diff_px`` between them on
  >= 5000 peaks: half synthetic windows (known parameters + Poisson noise), half windows cut from
  the embedded simulated run at its visible reflections (``*_simulated`` / ``*_synthetic`` split
  them);
* ``ray_stage_peaks_per_s``: the stage's Ray path (frame batches as tasks, at most max_in_flight,
  results in order) on frames of the simulated run, Ray already started (``ray_init_s`` apart);
  ``bare_batched_peaks_per_s``: the same batches through the same function in a process pool on
  the same cores; ``ray_stage_overhead`` = 1 - Ray rate / bare rate.

    uv run python benchmarks/fit.py --out benchmarks/results/fit.json [--quick]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import parse_args, write_result
from braggflow.fitting.fit import fit_windows
from braggflow.fitting.synthetic import make_windows, random_params
from braggflow.fitting.windows import FitSettings, Windows, extract_windows


def _lmfit_chunk(args: tuple[Windows, FitSettings]) -> tuple[dict, float]:
    win, settings = args
    t = time.process_time()
    table = fit_windows(win, settings, "lmfit")
    return table, time.process_time() - t


def lmfit_parallel(win: Windows, settings: FitSettings, n_proc: int) -> tuple[dict, float, float]:
    """lmfit over ``n_proc`` processes: (table, summed CPU seconds, wall seconds)."""
    chunks = np.array_split(np.arange(win.n), max(1, 4 * n_proc))
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(n_proc) as pool:
        parts = pool.map(_lmfit_chunk, [(win.subset(c), settings) for c in chunks])
    wall = time.perf_counter() - t0
    table = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
    return table, sum(p[1] for p in parts), wall


def simulated_run(folder: Path, n_frames: int):
    from braggflow.fitting.stage import FrameJob, detector_context
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.simulate import quick_experiment, read_truth

    exp = quick_experiment(folder, n_frames=n_frames, seed=7, blank_fraction=0.0)
    geom = read_geom(exp["geometry"])
    truth = read_truth(exp["truth"])
    with FrameSource(exp["frames"], geom) as src:
        ctx = detector_context(
            geom, src.bad_pixels(), saturation_adu=exp["params"]["detector"]["max_adu"]
        )
        frames = [src.read(i) for i in range(n_frames)]
    jobs = []
    for i in range(n_frames):
        vis = truth.reflections_in(i, visible_only=True)
        jobs.append(FrameJob("bench", str(exp["frames"]), i, vis["fs"], vis["ss"]))
    return ctx, frames, jobs


def windows_of_run(ctx, frames, jobs, size: int) -> Windows:
    n_ss, n_fs = ctx.slab_shape
    parts = [
        extract_windows(
            frames[j.event][:n_ss, :n_fs] * ctx.photons_per_adu,
            ctx.panel_map,
            ctx.usable,
            j.cand_fs,
            j.cand_ss,
            size,
            ctx.saturation_photons,
        )
        for j in jobs
    ]
    return Windows.concat(parts, size)


def _pool_batch(args):
    from braggflow.fitting.stage import fit_frames

    ctx, jobs, settings = args
    return fit_frames(ctx, jobs, settings)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quick = args.quick
    n_cpu = max(1, min(os.cpu_count() or 1, 2 if quick else os.cpu_count() or 1))
    settings = FitSettings()
    n_frames = 20 if quick else 100
    n_synth = 300 if quick else 2000
    figures: dict[str, float] = {}
    extra: dict[str, object] = {"load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        ctx, frames, jobs = simulated_run(Path(tmp), n_frames)
        sim = windows_of_run(ctx, frames, jobs, settings.window)
        rng = np.random.default_rng(2025)
        synth, _ = make_windows(random_params(n_synth, rng), rng, settings.window)
        both = Windows.concat([sim, synth], settings.window)
        is_sim = np.r_[np.ones(sim.n, bool), np.zeros(synth.n, bool)]
        figures["peaks_compared"] = both.n
        figures["peaks_simulated"] = sim.n

        # 1. the two solvers on the same windows
        fit_windows(both.subset(np.arange(50)), settings)  # warm-up (imports, caches)
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        fast = fit_windows(both, settings, "batched")
        batched_cpu, batched_wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
        ref, lm_cpu, lm_wall = lmfit_parallel(both, settings, n_cpu)
        figures["batched_peaks_per_s_per_core"] = both.n / batched_cpu
        figures["batched_peaks_per_s_wall_1proc"] = both.n / batched_wall
        figures["lmfit_peaks_per_s_per_core"] = both.n / lm_cpu
        figures["lmfit_peaks_per_s_wall"] = both.n / lm_wall
        figures["speedup_per_core"] = (
            figures["batched_peaks_per_s_per_core"] / figures["lmfit_peaks_per_s_per_core"]
        )
        same = fast["accepted"] == ref["accepted"]
        dist = np.hypot(fast["fs"] - ref["fs"], fast["ss"] - ref["ss"])
        ok = np.isfinite(dist)
        figures["decision_agreement"] = float(same.mean())
        figures["median_centre_diff_px"] = float(np.median(dist[ok]))
        figures["p90_centre_diff_px"] = float(np.percentile(dist[ok], 90))
        for name, sel in (("simulated", is_sim), ("synthetic", ~is_sim)):
            figures[f"decision_agreement_{name}"] = float(same[sel].mean())
            figures[f"median_centre_diff_px_{name}"] = float(np.median(dist[sel & ok]))
        figures["accepted_fraction_batched"] = float(fast["accepted"].mean())
        figures["accepted_fraction_lmfit"] = float(ref["accepted"].mean())

        # 2. the Ray stage vs the same batches in a bare process pool, same cores
        from braggflow.fitting import distributed
        from braggflow.fitting.stage import split_batches

        batch = max(1, n_frames // (4 * n_cpu))
        batches = [(0, b) for b in split_batches(jobs, batch)]
        n_peaks = sum(j.cand_fs.size for j in jobs)
        figures["stage_peaks"] = n_peaks
        figures["stage_batches"] = len(batches)
        # The machine may be shared: alternate the two a few times and keep each one's best.
        reps = 2 if quick else 3
        bare_wall = ray_wall = float("inf")
        t0 = time.perf_counter()
        distributed.start_ray(num_cpus=n_cpu)
        figures["ray_init_s"] = time.perf_counter() - t0
        try:
            with mp.get_context("fork").Pool(n_cpu) as pool:
                warm = batches[:n_cpu]
                pool.map(_pool_batch, [(ctx, b[1][:1], settings) for b in warm])
                list(distributed.run_ray([ctx], [(0, b[1][:1]) for b in warm], settings))
                for _ in range(reps):
                    t0 = time.perf_counter()
                    pool.map(_pool_batch, [(ctx, b[1], settings) for b in batches], chunksize=1)
                    bare_wall = min(bare_wall, time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    for _ in distributed.run_ray([ctx], batches, settings, max_in_flight=80):
                        pass
                    ray_wall = min(ray_wall, time.perf_counter() - t0)
        finally:
            import ray

            ray.shutdown()
        figures["bare_batched_peaks_per_s"] = n_peaks / bare_wall
        figures["ray_stage_peaks_per_s"] = n_peaks / ray_wall
        figures["ray_stage_overhead"] = (
            1.0 - figures["ray_stage_peaks_per_s"] / figures["bare_batched_peaks_per_s"]
        )
        figures["cores"] = n_cpu
    extra["load_average_end"] = os.getloadavg()
    extra["notes"] = (
        "per-core rates are peaks per CPU-second (process_time), robust to other jobs on the "
        "machine; Ray and pool rates are wall-clock on the same cores with warm workers"
    )
    result = write_result(args.out, "fit", figures, **extra)
    for key, value in result["figures"].items():
        print(f"{key:36s} {value:12.4f}")


if __name__ == "__main__":
    main()
