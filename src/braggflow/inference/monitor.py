"""Run monitoring: queue depths, per-stage busy time, worker utilisation and throughput over time.

The driver samples every actor's counters and both queue depths at a fixed interval
(:class:`Monitor`); :meth:`Monitor.summary` condenses the series for the metrics JSON and
:func:`plot_metrics` draws them (one PNG for the report). Utilisation of a model worker is its
compute time (GPU kernel time on GPU) divided by the time since its first batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Monitor:
    """Time series sampled by the driver (seconds since ``t0``)."""

    t0: float = field(default_factory=time.time)
    t: list[float] = field(default_factory=list)
    q_in: list[int] = field(default_factory=list)
    q_out: list[int] = field(default_factory=list)
    frames_done: list[int] = field(default_factory=list)
    worker_util: list[list[float]] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)  # driver + every actor, summed
    rss_by_process: dict[str, list[float]] = field(default_factory=dict)
    cpu_model_s: list[float] = field(default_factory=list)  # CPU seconds of the model workers
    cpu_io_s: list[float] = field(default_factory=list)  # readers + writers + driver
    last_workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_writers: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_readers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def sample(
        self,
        q_in: int,
        q_out: int,
        frames_done: int,
        workers: Mapping[str, Mapping[str, Any] | None],
        writers: Mapping[str, Mapping[str, Any] | None],
        readers: Mapping[str, Mapping[str, Any] | None] | None = None,
        driver_rss_mb: float = 0.0,
        driver_cpu_s: float = 0.0,
    ) -> None:
        now = time.time()
        self.t.append(now - self.t0)
        self.q_in.append(int(q_in))
        self.q_out.append(int(q_out))
        self.frames_done.append(int(frames_done))
        for store, new in (
            (self.last_workers, workers),
            (self.last_writers, writers),
            (self.last_readers, readers or {}),
        ):
            for name, stats in new.items():
                if stats is not None:
                    store[name] = dict(stats)
        self.worker_util.append([utilisation(s, now) for s in self.last_workers.values()])
        actors = [
            *self.last_workers.values(),
            *self.last_writers.values(),
            *self.last_readers.values(),
        ]
        self.rss_mb.append(driver_rss_mb + sum(float(s.get("rss_mb") or 0.0) for s in actors))
        named = {"driver": driver_rss_mb}
        for store in (self.last_workers, self.last_writers, self.last_readers):
            named.update({n: float(s.get("rss_mb") or 0.0) for n, s in store.items()})
        for name, value in named.items():
            series = self.rss_by_process.setdefault(name, [0.0] * (len(self.rss_mb) - 1))
            series.append(round(value, 1))
        io = [*self.last_writers.values(), *self.last_readers.values()]
        self.cpu_model_s.append(
            sum(float(s.get("cpu_s") or 0.0) for s in self.last_workers.values())
        )
        self.cpu_io_s.append(driver_cpu_s + sum(float(s.get("cpu_s") or 0.0) for s in io))

    def steady_images_per_s(self, lo: float = 0.1, hi: float = 0.9) -> float:
        """Throughput between the samples where ``lo`` and ``hi`` of the final frame count were done
        (start-up and the last partial batches excluded)."""
        f = np.asarray(self.frames_done, dtype=float)
        t = np.asarray(self.t)
        if f.size < 2 or f[-1] <= 0:
            return 0.0
        i = int(np.searchsorted(f, lo * f[-1], side="left"))
        j = int(np.searchsorted(f, hi * f[-1], side="left"))
        j = min(j, f.size - 1)
        if j <= i or t[j] <= t[i]:
            return float(f[-1] / max(t[-1] - t[0], 1e-9))
        return float((f[j] - f[i]) / (t[j] - t[i]))

    def throughput(self) -> np.ndarray:
        """Frames per second between consecutive samples."""
        t = np.asarray(self.t)
        f = np.asarray(self.frames_done, dtype=float)
        if t.size < 2:
            return np.zeros(t.size)
        rate = np.diff(f) / np.maximum(np.diff(t), 1e-9)
        return np.concatenate([[0.0], rate])

    def summary(self) -> dict[str, Any]:
        q_in = np.asarray(self.q_in or [0])
        q_out = np.asarray(self.q_out or [0])
        now = time.time()
        workers = {
            name: {
                "utilisation": utilisation(s, now, end=s.get("last_t")),
                **{
                    k: s.get(k)
                    for k in (
                        "batches",
                        "frames",
                        "failed_batches",
                        "stage_s",
                        "compute_s",
                        "compute_cpu_s",
                        "gpu_compute_s",
                        "output_s",
                        "starved_s",
                        "blocked_s",
                        "restarts",
                        "device",
                        "torch_threads",
                        "rss_mb",
                    )
                },
            }
            for name, s in self.last_workers.items()
        }
        writers = {
            name: {
                k: s.get(k)
                for k in ("frames", "batches", "busy_s", "wait_s", "parts", "restarts", "rss_mb")
            }
            for name, s in self.last_writers.items()
        }
        readers = {
            name: {
                k: s.get(k)
                for k in (
                    "frames",
                    "batches",
                    "busy_s",
                    "blocked_s",
                    "bad_frames",
                    "rss_mb",
                    "cpu_s",
                )
            }
            for name, s in self.last_readers.items()
        }
        utils = [w["utilisation"] for w in workers.values()]
        return {
            "mean_worker_utilisation": float(np.mean(utils)) if utils else 0.0,
            "peak_rss_mb": float(max(self.rss_mb, default=0.0)),
            "steady_images_per_s": self.steady_images_per_s(),
            "queue_in": {"max": int(q_in.max()), "mean": float(q_in.mean())},
            "queue_out": {"max": int(q_out.max()), "mean": float(q_out.mean())},
            "workers": workers,
            "writers": writers,
            "readers": readers,
            "timeseries": {
                "t_s": [round(v, 3) for v in self.t],
                "queue_in": self.q_in,
                "queue_out": self.q_out,
                "frames_done": self.frames_done,
                "images_per_s": [round(float(v), 3) for v in self.throughput()],
                "worker_utilisation": [[round(u, 3) for u in row] for row in self.worker_util],
                "rss_mb": [round(v, 1) for v in self.rss_mb],
                "rss_mb_by_process": self.rss_by_process,
                "cpu_model_s": [round(v, 3) for v in self.cpu_model_s],
                "cpu_io_s": [round(v, 3) for v in self.cpu_io_s],
            },
        }


def utilisation(stats: Mapping[str, Any], now: float, end: float | None = None) -> float:
    """Busy fraction of a model worker since its first batch (GPU kernel time when on GPU)."""
    first = stats.get("first_t")
    if not first:
        return 0.0
    busy = stats.get("gpu_compute_s") or stats.get("compute_s") or 0.0
    span = max((end or now) - first, 1e-9)
    return float(min(busy / span, 1.0))


def plot_metrics(metrics: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Queue depths, throughput and worker utilisation against time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braggflow.atomic import atomic_path

    ts = metrics["monitor"]["timeseries"]
    t = np.asarray(ts["t_s"])
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    axes[0].step(t, ts["queue_in"], where="post", label="frames -> model (batches)")
    axes[0].step(t, ts["queue_out"], where="post", label="model -> writers (batches)")
    axes[0].set_ylabel("queue depth")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].plot(t, ts["images_per_s"], color="tab:green")
    axes[1].set_ylabel("images / s")
    util = ts["worker_utilisation"]
    n_workers = max((len(row) for row in util), default=0)
    for w in range(n_workers):
        axes[2].plot(t, [row[w] if w < len(row) else np.nan for row in util], label=f"worker {w}")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_ylabel("worker utilisation")
    axes[2].set_xlabel("time since start (s)")
    if n_workers:
        axes[2].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        title
        or f"inference: {metrics.get('frames', '?')} frames, "
        f"{metrics.get('images_per_s', 0):.2f} images/s"
    )
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path
