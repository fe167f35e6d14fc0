"""Inference pipeline throughput against the bare forward pass of the same model (issue 7).

One run, one machine, one model (the demo student, random weights: the cost of a forward pass
does not depend on the weights), one batch size and input size:

- ``bare_forward_images_per_s``: ``model(x)`` in a loop on a resident batch, nothing else running
  (best of two measurements, before and after the pipeline);
- ``pipeline_images_per_s``: steady-state throughput of the Ray pipeline (readers, model worker,
  writers, monitoring) over a long run of the embedded experiment's frames (frames 10%..90%);
- ``efficiency`` = pipeline / bare forward;
- ``peak_rss_mb``, ``rss_start_mb``, ``rss_end_mb``: summed resident memory of the driver and every
  actor, at 10% of the run and at its end (flat = no leak; the run is ``--frames`` long);
- ``demo_run_wall_s``: a 40-frame run including Ray start-up, as one demo ``infer`` job does.

    uv run python benchmarks/infer.py --out benchmarks/results/infer.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write the figures to")
    parser.add_argument("--quick", action="store_true", help="short run (smoke test)")
    parser.add_argument("--preset", default="demo-student", help="model preset (braggflow.model)")
    parser.add_argument("--frames", type=int, default=None, help="frames in the long run")
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args()


def make_inputs(folder: Path, n_frames: int, preset: str) -> dict[str, Path]:
    """The embedded experiment (40 simulated frames, tiled to ``n_frames``) and an exported model."""
    import h5py
    import torch

    from braggflow.formats.frames import write_frames
    from braggflow.model import build_model, export_model, get_preset
    from braggflow.simulate import quick_experiment

    exp = quick_experiment(folder / "exp", n_frames=40, seed=7)
    with h5py.File(exp["frames"]) as h5:
        frames = h5["entry_1/data_1/data"][()]
        mask = h5["entry_1/data_1/mask"][()] if "entry_1/data_1/mask" in h5 else None
    reps = int(np.ceil(n_frames / frames.shape[0]))
    long = np.concatenate([frames] * reps)[:n_frames]
    write_frames(folder / "long.cxi", long, mask, 9500.0, 0.08)
    arch = get_preset(preset)
    torch.manual_seed(0)
    export_model(build_model(arch), arch, folder / "model.pt")
    return {
        "geometry": exp["geometry"],
        "frames40": exp["frames"],
        "long": folder / "long.cxi",
        "model": folder / "model.pt",
        "truth": exp["truth"],
    }


def bare_forward(model_path: Path, batch: int, threads: int, seconds: float) -> float:
    """Images per second of ``model(x)`` alone (same threads as the pipeline's worker)."""
    import torch

    from braggflow.model import load_exported

    torch.set_num_threads(threads)
    model, arch = load_exported(model_path, "cpu")
    size = arch["input_size"]
    x = torch.randn(batch, 1, size, size)
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model(x)
            n += 1
        dt = time.perf_counter() - t0
    return n * batch / dt


def main() -> int:
    args = parse_args()
    n_frames = args.frames or (96 if args.quick else 640)
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        tmp_path = Path(tmp)
        inputs = make_inputs(tmp_path, n_frames, args.preset)
        bare_s = 4.0 if args.quick else 15.0
        bare = [bare_forward(inputs["model"], args.batch_size, threads, bare_s)]
        print(f"bare forward: {bare[0]:.2f} images/s", file=sys.stderr)

        from braggflow.inference.pipeline import run_inference

        params = {"batch_size": args.batch_size, "progress": False, "monitor_interval_s": 1.0}
        # a 40-frame run as the demo does it: Ray started (and stopped) by the run itself
        demo = run_inference(
            inputs["model"],
            inputs["frames40"],
            inputs["geometry"],
            tmp_path / "demo.cxi",
            params,
            truth=inputs["truth"],
        )
        print(
            f"demo run: {demo['wall_s']:.1f} s wall ({demo['ray_start_s']:.1f} s Ray start)",
            file=sys.stderr,
        )
        long = run_inference(
            inputs["model"],
            inputs["long"],
            inputs["geometry"],
            tmp_path / "long.cxi",
            params,
            metrics_path=tmp_path / "long.json",
        )
        bare.append(bare_forward(inputs["model"], args.batch_size, threads, bare_s))
        print(f"bare forward again: {bare[1]:.2f} images/s", file=sys.stderr)

        series = long["monitor"]["timeseries"]
        rss = np.asarray(series["rss_mb"])
        done = np.asarray(series["frames_done"])
        i_start = int(np.searchsorted(done, 0.1 * n_frames))
        pipeline = float(long["steady_images_per_s"])
        best_bare = max(bare)
        figures = {
            "pipeline_images_per_s": pipeline,
            "pipeline_images_per_s_whole_run": float(long["images_per_s"]),
            "bare_forward_images_per_s": best_bare,
            "bare_forward_images_per_s_before": bare[0],
            "bare_forward_images_per_s_after": bare[1],
            "efficiency": pipeline / best_bare,
            "mean_worker_utilisation": float(long["mean_worker_utilisation"]),
            "peak_rss_mb": float(long["peak_rss_mb"]),
            "rss_start_mb": float(rss[min(i_start, rss.size - 1)]),
            "rss_end_mb": float(rss[-2] if rss.size > 1 else rss[-1]),
            "frames_long_run": n_frames,
            "batch_size": args.batch_size,
            "input_size": int(long["input_size"]),
            "torch_threads": int(long["torch_threads"]),
            "demo_run_wall_s": float(demo["wall_s"]),
            "demo_ray_start_s": float(demo["ray_start_s"]),
            "demo_startup_s": float(demo["startup_s"]),
            "demo_truth_precision": float(demo["truth"]["precision"]),
            "demo_truth_recall": float(demo["truth"]["recall"]),
        }
        result = write_result(
            args.out,
            "infer",
            figures,
            model=args.preset,
            device="cpu (no GPU in this run)",
            load_average=os.getloadavg(),
        )
    print(json.dumps(result["figures"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
