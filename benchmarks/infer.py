"""Inference pipeline throughput against the bare forward pass of the same model (issue 7).

One run, one machine, one model (the demo student with random weights: the cost of a forward
pass does not depend on the weights; its masks come from a z-score threshold, see
:class:`SegmentingPeakNet`), one batch size and input size. For each layout of the model side
(CPU workers x torch threads each):

- ``bare``: ``model(x)`` in a loop on a resident batch in as many processes as the pipeline has
  workers, with the same torch threads, nothing else of ours running (images/s summed; the
  better of a measurement just before and just after the pipeline run);
- ``pipeline``: steady-state throughput of the Ray pipeline (readers, model workers, writers,
  monitoring) on the embedded experiment's frames (40 simulated frames, tiled), between 10% and
  90% of the frames;
- ``efficiency`` = pipeline / bare.

Headline figures (no prefix) are for the default layout (``worker_layout``: one single-threaded
worker per CPU but one); ``t2_*`` is one worker with 2 torch threads (all cores to the model),
``w2_*`` two single-threaded workers. ``peak_rss_mb``, ``rss_start_mb`` (at 10% of the long run)
and ``rss_end_mb`` sum the resident memory of the driver and every actor (flat = nothing leaks);
``cpu_*_ms_per_frame`` split the CPU time between the model workers and everything else of ours.
``demo_run_wall_s`` is a 40-frame run including Ray start-up, as one demo ``infer`` job does it.

    uv run python benchmarks/infer.py --out benchmarks/results/infer.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402


class SegmentingPeakNet(torch.nn.Module):
    """The student's whole forward pass, with masks from a z-score threshold instead of its logits.

    A trained student's masks are sparse spots, a random-weight one's cover most of the detector,
    and the writers' cost depends on the masks: this keeps the model's cost and realistic masks.
    Defined in ``__main__``, so Ray ships the class to the workers by value.
    """

    def __init__(self, net: torch.nn.Module, threshold: float = 4.0) -> None:
        super().__init__()
        self.net = net
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        peak = x[:, 0] - self.threshold + 0.0 * logits[:, 1]
        return torch.stack([0.0 * logits[:, 0], peak], 1)


def bare_worker(model_path: str, threads: int, batch: int, seconds: float) -> None:
    """One bare-forward process: loads and warms up, says ``ready``, then for every ``go`` on
    stdin runs ``model(x)`` for ``seconds`` and prints its images/s (see :class:`BareForward`).
    Like a pipeline worker, it computes in a non-main thread that sets its own torch threads."""
    import threading

    from braggflow.model import load_exported

    net, arch = load_exported(model_path, "cpu")
    model = SegmentingPeakNet(net)
    size = arch["input_size"]
    x = torch.randn(batch, 1, size, size)

    def loop() -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for _ in range(3):
                model(x)
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() != "go":
                    break
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    model(x)
                    n += 1
                print(n * batch / (time.perf_counter() - t0), flush=True)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--preset", default="demo-student", help="model preset (braggflow.model)")
    parser.add_argument("--frames", type=int, default=None, help="frames per long run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bare", nargs=4, help=argparse.SUPPRESS)  # internal: one bare process
    parser.add_argument(
        "--out", required="--bare" not in sys.argv, help="JSON file to write the figures to"
    )
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
    write_frames(
        folder / "long.cxi", np.concatenate([frames] * reps)[:n_frames], mask, 9500.0, 0.08
    )
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


class BareForward:
    """``procs`` processes each running ``model(x)`` with ``threads`` torch threads; they stay
    loaded (idle) between measurements, so one set measures before and after a pipeline run."""

    def __init__(self, model: Path, procs: int, threads: int, batch: int, seconds: float) -> None:
        cmd = [
            sys.executable,
            __file__,
            "--bare",
            str(model),
            str(threads),
            str(batch),
            str(seconds),
        ]
        self.procs = [
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(procs)
        ]
        for p in self.procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a bare-forward process failed to start")

    def measure(self) -> float:
        """Images/s summed over the processes, all started together."""
        for p in self.procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return float(sum(float(p.stdout.readline()) for p in self.procs))

    def close(self) -> None:
        for p in self.procs:
            p.stdin.close()
            p.wait(timeout=60)


def layout_figures(
    prefix: str, bare: list[float], metrics: dict, n_frames: int
) -> dict[str, float]:
    series = metrics["monitor"]["timeseries"]
    done = np.asarray(series["frames_done"])
    i0 = min(int(np.searchsorted(done, 0.1 * n_frames)), done.size - 1)
    window = max(float(done[-1] - done[i0]), 1.0)
    cpu_model = np.asarray(series["cpu_model_s"])
    cpu_io = np.asarray(series["cpu_io_s"])
    pipeline = float(metrics["steady_images_per_s"])
    return {
        f"{prefix}pipeline_images_per_s": pipeline,
        f"{prefix}pipeline_images_per_s_whole_run": float(metrics["images_per_s"]),
        f"{prefix}bare_forward_images_per_s": max(bare),
        f"{prefix}efficiency": pipeline / max(bare),
        f"{prefix}workers": float(metrics["n_workers"]),
        f"{prefix}torch_threads": float(metrics["torch_threads"]),
        f"{prefix}mean_worker_utilisation": float(metrics["mean_worker_utilisation"]),
        f"{prefix}cpu_model_ms_per_frame": 1e3 * float(cpu_model[-1] - cpu_model[i0]) / window,
        f"{prefix}cpu_other_ms_per_frame": 1e3 * float(cpu_io[-1] - cpu_io[i0]) / window,
    }


def main() -> int:
    args = parse_args()
    if args.bare:
        path, threads, batch, seconds = args.bare
        bare_worker(path, int(threads), int(batch), float(seconds))
        return 0
    n_frames = args.frames or (96 if args.quick else 480)
    bare_s = 4.0 if args.quick else 10.0
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    from braggflow.inference.pipeline import ensure_ray, run_inference, worker_layout

    figures: dict[str, float] = {}
    load_at_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        tmp_path = Path(tmp)
        inputs = make_inputs(tmp_path, n_frames, args.preset)
        base = {"batch_size": args.batch_size, "progress": False, "monitor_interval_s": 1.0}
        # 1. a 40-frame run as a demo job does it: Ray started (and stopped) by the run itself
        demo = run_inference(
            inputs["model"],
            inputs["frames40"],
            inputs["geometry"],
            tmp_path / "demo.cxi",
            base,
            truth=inputs["truth"],
        )
        figures["demo_run_wall_s"] = float(demo["wall_s"])
        figures["demo_ray_start_s"] = float(demo["ray_start_s"])
        figures["demo_startup_s"] = float(demo["startup_s"])
        print(
            f"demo run: {demo['wall_s']:.1f} s ({demo['ray_start_s']:.1f} s Ray)", file=sys.stderr
        )

        # 2. long runs on one shared Ray instance, one per layout of the model side
        from braggflow.inference.config import InferConfig
        from braggflow.model import load_exported

        ensure_ray()
        segmenter = SegmentingPeakNet(load_exported(inputs["model"], "cpu")[0])
        n_cpus = os.cpu_count() or 1
        default_workers, default_threads = worker_layout(
            InferConfig.from_params(base), False, 0, n_cpus
        )
        layouts = [("", {}), ("t2_", {"num_workers": 1, "torch_threads": 2})]
        if (default_workers, default_threads) != (2, 1):
            layouts.append(("w2_", {"num_workers": 2, "torch_threads": 1}))
        for prefix, extra in layouts:
            workers = extra.get("num_workers", default_workers)
            threads = extra.get("torch_threads", default_threads)
            bare_procs = BareForward(inputs["model"], workers, threads, args.batch_size, bare_s)
            bare = [bare_procs.measure()]
            metrics = run_inference(
                segmenter,
                inputs["long"],
                inputs["geometry"],
                tmp_path / f"peaks-{prefix}long.cxi",
                {**base, **extra},
                input_size=int(demo["input_size"]),
            )
            bare.append(bare_procs.measure())
            bare_procs.close()
            figures.update(layout_figures(prefix, bare, metrics, n_frames))
            print(
                f"{workers} worker(s) x {threads} thread(s): pipeline "
                f"{figures[prefix + 'pipeline_images_per_s']:.2f}, bare {bare} images/s",
                file=sys.stderr,
            )
            if prefix == "":
                rss = np.asarray(metrics["monitor"]["timeseries"]["rss_mb"])
                done = np.asarray(metrics["monitor"]["timeseries"]["frames_done"])
                i0 = min(int(np.searchsorted(done, 0.1 * n_frames)), rss.size - 1)
                figures["peak_rss_mb"] = float(metrics["peak_rss_mb"])
                figures["rss_start_mb"] = float(rss[i0])
                figures["rss_end_mb"] = float(rss[-1])
        if "w2_bare_forward_images_per_s" in figures:
            # ~2 on an idle 2-core machine; ~1 when other work leaves us one core's worth
            figures["bare_scaling_2_processes"] = (
                figures["w2_bare_forward_images_per_s"] / figures["bare_forward_images_per_s"]
            )
        figures.update(
            {
                "frames_long_run": float(n_frames),
                "batch_size": float(args.batch_size),
                "input_size": float(demo["input_size"]),
            }
        )
        result = write_result(
            args.out,
            "infer",
            figures,
            model=args.preset,
            device="cpu (no GPU in this run: no GPU figures)",
            load_average_at_start=load_at_start,
            load_average_at_end=list(os.getloadavg()),
        )
    print(json.dumps(result["figures"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
