"""Inference pipeline throughput against the bare forward pass of the same model (issue 7).

One run, one machine, one model (the demo student with random weights: the cost of a forward
pass does not depend on the weights; its masks come from a z-score threshold, see
:class:`SegmentingPeakNet`), one batch size and input size. For each layout of the model side
(CPU workers x torch threads each):

- ``bare``: ``model(x)`` in a loop on a resident batch in as many processes as the pipeline has
  workers, with the same torch threads, nothing else of ours running (images/s summed);
- ``pipeline``: steady-state throughput of the Ray pipeline (readers, model workers, writers,
  monitoring) on the embedded experiment's frames (40 simulated frames, tiled), between 10% and
  90% of the frames;
- ``efficiency`` = pipeline / bare, where bare is the mean of the measurements just before and
  just after that pipeline run (a shared 2-core VM drifts by 20% within minutes; ``bare_drift``).

Headline figures (no prefix) are the median over three runs of the default layout
(``worker_layout``: one single-threaded worker per CPU but one, pinned: ``infer.pin_cpus``), with
``efficiency_min``/``_max``; ``nopin_*`` is the same layout unpinned, ``w2_*`` two
single-threaded workers, ``t2_*`` (``--all-layouts``) one worker with 2 torch threads. For
single-threaded workers, ``compute_on_cpu_fraction`` is the compute thread's CPU time over its
wall time (below 1: it lost its core to other work) and ``forward_cpu_slowdown`` the CPU time of
a batch over its bare time (above 1: caches, memory bandwidth and the host are shared).

The first default run is long: ``peak_rss_mb`` and ``rss_start_mb`` / ``rss_mid_mb`` /
``rss_end_mb`` (at 10%, 50% and 100% of it) sum the resident memory of the driver and every
actor (flat = nothing grows with the frames). ``cpu_*_ms_per_frame`` split the
CPU time between the model workers and everything else of ours. ``ray_start_s`` is the start of
a local Ray, ``startup_s`` a run's start-up on it (actors, model load) before the first frame.

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
from typing import Any

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
    parser.add_argument("--frames", type=int, default=None, help="frames per (short) run")
    parser.add_argument(
        "--long-frames", type=int, default=None, help="frames of the first, long run (memory)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--all-layouts", action="store_true", help="also one worker with 2 torch threads (t2_*)"
    )
    parser.add_argument("--bare", nargs=4, help=argparse.SUPPRESS)  # internal: one bare process
    parser.add_argument(
        "--out", required="--bare" not in sys.argv, help="JSON file to write the figures to"
    )
    return parser.parse_args()


def make_inputs(folder: Path, counts: list[int], preset: str) -> dict[Any, Path]:
    """The embedded experiment (40 simulated frames), frame files of each of ``counts`` frames
    (those 40 tiled; keyed by the count) and an exported model."""
    import h5py
    import torch

    from braggflow.formats.frames import write_frames
    from braggflow.model import build_model, export_model, get_preset
    from braggflow.simulate import quick_experiment

    exp = quick_experiment(folder / "exp", n_frames=40, seed=7)
    with h5py.File(exp["frames"]) as h5:
        frames = h5["entry_1/data_1/data"][()]
        mask = h5["entry_1/data_1/mask"][()] if "entry_1/data_1/mask" in h5 else None
    files: dict[Any, Path] = {}
    for n in sorted(set(counts)):
        reps = int(np.ceil(n / frames.shape[0]))
        files[n] = folder / f"frames-{n}.cxi"
        write_frames(files[n], np.concatenate([frames] * reps)[:n], mask, 9500.0, 0.08)
    arch = get_preset(preset)
    torch.manual_seed(0)
    export_model(build_model(arch), arch, folder / "model.pt")
    return {
        **files,
        "geometry": exp["geometry"],
        "model": folder / "model.pt",
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


def sample_at(frames_done: np.ndarray, frames: float) -> int:
    """Index of the first monitor sample with at least ``frames`` done (else the last one)."""
    return min(int(np.searchsorted(frames_done, frames)), frames_done.size - 1)


def run_figures(before: float, after: float, metrics: dict, n_frames: int) -> dict[str, float]:
    """One pipeline run against the bare forward measured just before and just after it."""
    series = metrics["monitor"]["timeseries"]
    done = np.asarray(series["frames_done"])
    i0 = sample_at(done, 0.1 * n_frames)
    window = max(float(done[-1] - done[i0]), 1.0)
    cpu_model = np.asarray(series["cpu_model_s"])
    cpu_io = np.asarray(series["cpu_io_s"])
    bare = 0.5 * (before + after)
    out = {
        "pipeline_images_per_s": float(metrics["steady_images_per_s"]),
        "pipeline_images_per_s_whole_run": float(metrics["images_per_s"]),
        "bare_forward_images_per_s": bare,
        "bare_drift": abs(after - before) / bare,
        "efficiency": float(metrics["steady_images_per_s"]) / bare,
        "workers": float(metrics["n_workers"]),
        "torch_threads": float(metrics["torch_threads"]),
        "pinned": float(metrics.get("cpu_pinning") is not None),
        "mean_worker_utilisation": float(metrics["mean_worker_utilisation"]),
        "cpu_model_ms_per_frame": 1e3 * float(cpu_model[-1] - cpu_model[i0]) / window,
        "cpu_other_ms_per_frame": 1e3 * float(cpu_io[-1] - cpu_io[i0]) / window,
        "startup_s": float(metrics["startup_s"]),
    }
    if metrics["torch_threads"] == 1:  # the compute thread's CPU time is all of the forward's
        workers = metrics["monitor"]["workers"].values()
        cpu = sum(w["compute_cpu_s"] for w in workers)
        wall = sum(w["compute_s"] for w in workers)
        batch_cpu_s = cpu / max(sum(w["batches"] for w in workers), 1)
        bare_batch_s = metrics["n_workers"] * metrics["config"]["batch_size"] / bare
        # below 1: the compute thread lost its core to other work
        out["compute_on_cpu_fraction"] = cpu / max(wall, 1e-9)
        # above 1: the same forward costs more CPU time (caches, memory bandwidth, the host)
        out["forward_cpu_slowdown"] = batch_cpu_s / bare_batch_s
    return out


def layout_figures(prefix: str, rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median over the runs of a layout (each run against its own neighbouring bare measurements);
    ``efficiency_min``/``_max`` show the spread."""
    out = {f"{prefix}{name}": float(np.median([r[name] for r in rounds])) for name in rounds[0]}
    out[f"{prefix}efficiency_min"] = float(min(r["efficiency"] for r in rounds))
    out[f"{prefix}efficiency_max"] = float(max(r["efficiency"] for r in rounds))
    out[f"{prefix}runs"] = float(len(rounds))
    return out


def memory_figures(metrics: dict, n_frames: int) -> dict[str, float]:
    """Summed resident memory of the driver and every actor over one long run: at 10%, 50% and
    at the end (flat = nothing grows with the number of frames)."""
    series = metrics["monitor"]["timeseries"]
    rss = np.asarray(series["rss_mb"])
    done = np.asarray(series["frames_done"])

    def at(fraction: float) -> float:
        return float(rss[sample_at(done, fraction * n_frames)])

    return {
        "peak_rss_mb": float(metrics["peak_rss_mb"]),
        "rss_start_mb": at(0.1),
        "rss_mid_mb": at(0.5),
        "rss_end_mb": float(rss[-1]),
        "rss_growth_second_half_mb": float(rss[-1]) - at(0.5),
        "frames_memory_run": float(n_frames),
    }


def main() -> int:
    args = parse_args()
    if args.bare:
        path, threads, batch, seconds = args.bare
        bare_worker(path, int(threads), int(batch), float(seconds))
        return 0
    n_frames = args.frames or (96 if args.quick else 480)
    n_long = args.long_frames or (4 * n_frames if args.quick else 2000)
    bare_s = 3.0 if args.quick else 4.0
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    from braggflow.inference.pipeline import ensure_ray, run_inference, worker_layout
    from braggflow.model import get_preset

    figures: dict[str, float] = {}
    t_bench = time.time()
    load_at_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        tmp_path = Path(tmp)
        inputs = make_inputs(tmp_path, [n_frames, n_long], args.preset)
        input_size = int(get_preset(args.preset).input_size)
        base = {"batch_size": args.batch_size, "progress": False, "monitor_interval_s": 1.0}
        from braggflow.inference.config import InferConfig
        from braggflow.model import load_exported

        t_ray = time.perf_counter()
        ensure_ray()
        figures["ray_start_s"] = time.perf_counter() - t_ray
        segmenter = SegmentingPeakNet(load_exported(inputs["model"], "cpu")[0])
        n_cpus = os.cpu_count() or 1
        default_workers, default_threads = worker_layout(
            InferConfig.from_params(base), False, 0, n_cpus
        )
        # (prefix, settings, runs): the default layout thrice (the first run long: memory series)
        layouts = [
            ("", {}, [n_long, n_frames, n_frames]),
            ("nopin_", {"pin_cpus": False}, [n_frames]),
        ]
        if args.all_layouts:
            layouts.append(("t2_", {"num_workers": 1, "torch_threads": 2}, [n_frames]))
        if (default_workers, default_threads) != (2, 1):
            layouts.append(("w2_", {"num_workers": 2, "torch_threads": 1}, [n_frames]))
        for prefix, extra, runs in layouts:
            workers = extra.get("num_workers", default_workers)
            threads = extra.get("torch_threads", default_threads)
            bare_procs = BareForward(inputs["model"], workers, threads, args.batch_size, bare_s)
            rounds = []
            before = bare_procs.measure()
            for k, n in enumerate(runs):
                metrics = run_inference(
                    segmenter,
                    inputs[n],
                    inputs["geometry"],
                    tmp_path / f"peaks-{prefix}{k}.cxi",
                    {**base, **extra},
                    input_size=input_size,
                )
                after = bare_procs.measure()
                rounds.append(run_figures(before, after, metrics, n))
                print(
                    f"[{time.time() - t_bench:.0f} s] {prefix or 'default_'}run {k}: {n} frames, "
                    f"start-up {metrics['startup_s']:.1f} s, wall {metrics['wall_s']:.1f} s, "
                    f"efficiency {rounds[-1]['efficiency']:.3f}",
                    file=sys.stderr,
                )
                before = after
                if prefix == "" and k == 0:
                    figures.update(memory_figures(metrics, n))
            bare_procs.close()
            figures.update(layout_figures(prefix, rounds))
            print(
                f"{workers} worker(s) x {threads} thread(s): efficiency per run "
                f"{[round(r['efficiency'], 3) for r in rounds]}",
                file=sys.stderr,
            )
        if "w2_bare_forward_images_per_s" in figures:
            # ~2 on an idle 2-core machine; ~1 when other work leaves us one core's worth
            figures["bare_scaling_2_processes"] = (
                figures["w2_bare_forward_images_per_s"] / figures["bare_forward_images_per_s"]
            )
        figures.update(
            {
                "frames_per_run": float(n_frames),
                "batch_size": float(args.batch_size),
                "input_size": float(input_size),
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
