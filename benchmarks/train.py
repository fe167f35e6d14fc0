"""Training throughput of each model preset that fits this machine: ``samples_per_s``.

One training step = the shared loop's work (FSDP2-sharded model, forward, focal loss, backward,
grad-norm clipping, AdamW step) on random z-scored frames at the preset's input size, on a 1-rank
process group. Writes ``<preset>.samples_per_s``, ``.step_s``, ``.peak_mem_gb`` per preset, the
device and dtype. GPU figures appear only when a GPU is present (the paper-size teacher at 1920x1920
in bf16 is included then); on CPU the 1920-pixel presets are skipped unless ``--full``.

    uv run python benchmarks/train.py --out benchmarks/results/train.json [--quick] [--full]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402

CPU_PRESETS = ["tiny-test", "demo-student", "demo-teacher"]
CPU_FULL = ["student-atto-2"]
GPU_PRESETS = [
    "demo-teacher",
    "student-atto-2",
    "student-atto-4",
    "student-tiny-2",
    "student-tiny-4",
    "peaknet-673m",
]


def peak_mem_gb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB, process-wide


def bench_preset(name: str, env, batch_size: int, steps: int, warmup: int) -> dict[str, float]:
    import torch

    from braggflow.model.arch import get_preset
    from braggflow.training.distributed import mixed_precision_dtype, shard_model
    from braggflow.training.focal import focal_loss

    arch = get_preset(name)
    torch.manual_seed(0)
    model = build(arch)
    dtype = mixed_precision_dtype(env, "auto")
    shard_model(model, env, dtype, reshard_after_forward=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    s = arch.input_size
    x = torch.randn(batch_size, 1, s, s, device=env.device)
    y = (torch.rand(batch_size, s, s, device=env.device) < 0.02).long()
    if env.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(env.device)

    def step() -> None:
        loss = focal_loss(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if env.device.type == "cuda":
        torch.cuda.synchronize(env.device)
    dt = (time.perf_counter() - t0) / steps
    out = {
        "samples_per_s": batch_size / dt,
        "step_s": dt,
        "batch_size": batch_size,
        "input_size": s,
        "peak_mem_gb": peak_mem_gb(env.device),
        "bf16": float(dtype == torch.bfloat16),
    }
    if env.device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def build(arch):
    from braggflow.model.peaknet import build_model

    return build_model(arch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="tiny-test and demo-student only")
    parser.add_argument(
        "--full", action="store_true", help="on CPU also the 1920-pixel student-atto-2"
    )
    args = parser.parse_args()

    import torch

    from braggflow.training.distributed import init_distributed, set_cpu_threads, shutdown

    env = init_distributed()
    threads = set_cpu_threads(env)
    gpu = env.device.type == "cuda"
    names = GPU_PRESETS if gpu else CPU_PRESETS + (CPU_FULL if args.full else [])
    if args.quick:
        names = names[:2]
    figures: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name in names:
        big = name.startswith(("student", "peaknet"))
        batch = 1 if big else 4
        steps, warmup = (3, 1) if big or args.quick else (10, 2)
        try:
            res = bench_preset(name, env, batch, steps, warmup)
        except torch.OutOfMemoryError as exc:
            skipped[name] = f"out of memory ({exc.__class__.__name__})"
            continue
        for key, value in res.items():
            figures[f"{name}.{key}"] = value
        print(f"{name}: {res['samples_per_s']:.2f} samples/s at {res['input_size']} px", flush=True)
    shutdown()
    device = torch.cuda.get_device_name(0) if gpu else f"cpu ({threads} threads)"
    notes = (
        "" if gpu else "no GPU was available for this run: CPU figures only (fp32, gloo, 1 rank)"
    )
    write_result(
        args.out, "train", figures, device=device, gpu_available=gpu, skipped=skipped, notes=notes
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
