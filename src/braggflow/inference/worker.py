"""Model worker: batches in, uint8 masks out, with load / H2D / compute / D2H overlapped.

Wang et al. (section 3.4) name their bottleneck: loading, inference and pushing ran one after
another inside each GPU worker. Here three threads form a small pipeline of their own:

- *prefetch*: takes the next batch from the input channel, stages it (pinned host memory and an
  asynchronous copy on a dedicated CUDA stream on GPU; zero-copy ``torch.from_numpy`` of the
  object-store buffer on CPU) while the previous batch computes;
- *compute*: forward pass on its own stream, logits reduced to a uint8 class mask ON THE DEVICE
  (``argmax`` over classes), cropped back to the assembled image and masked to valid pixels, then
  an asynchronous device-to-host copy of the (4x-16x smaller) mask on a third stream;
- *output*: waits for that copy and hands the mask on (object store + output channel).

Bounded ``queue.Queue`` hand-offs give back-pressure between the threads. This module imports
torch; the pipeline imports it only inside the worker processes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braggflow.model.preprocess import Window, square_window

log = logging.getLogger(__name__)
_SENTINEL = object()


def pick_device(device: str) -> torch.device:
    """``auto`` -> the (first visible) GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("infer.device is 'cuda' but no GPU is visible to this worker")
    return torch.device(device)


def load_model(
    spec: str | Path | torch.nn.Module, device: torch.device, input_size: int | None = None
) -> tuple[torch.nn.Module, int]:
    """An exported model file (``load_exported``, weights only) or an in-memory module -> (model, input size)."""
    if isinstance(spec, torch.nn.Module):
        if input_size is None:
            raise ValueError("an in-memory model needs input_size")
        return spec.to(device).eval(), int(input_size)
    from braggflow.model import load_exported

    model, arch = load_exported(spec, device)
    return model, int(input_size or arch["input_size"])


def logits_to_mask(logits: torch.Tensor, window: Window, valid: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) logits -> (B, H, W) uint8 class map on the same device (section 2.2.3.2).

    ``argmax`` over classes, then the inverse of the centred pad/crop (``window``); pixels
    cropped away by preprocessing and invalid pixels (``valid`` (H, W) uint8) are background.
    """
    if logits.shape[1] == 2:  # argmax of 2 classes: one comparison, ~100x faster on CPU
        classes = (logits[:, 1] > logits[:, 0]).to(torch.uint8)  # ties -> 0, as argmax
    else:
        classes = logits.argmax(dim=1).to(torch.uint8)
    h, w = window.shape
    out = torch.zeros((classes.shape[0], h, w), dtype=torch.uint8, device=classes.device)
    out[(slice(None), *window.src)] = classes[(slice(None), *window.dst)]
    return out.mul_(valid)


@dataclass
class _Staged:
    x: torch.Tensor
    n: int
    ready: Any = None  # CUDA event: input on the device


@dataclass
class _Result:
    host: torch.Tensor
    ready: Any = None  # CUDA event: mask copied to the host
    t_start: Any = None  # CUDA events around the compute, for GPU busy time
    t_end: Any = None


class ModelRunner:
    """The three per-batch steps (stage, compute+reduce, download) on one device."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        image_shape: tuple[int, int],
        input_size: int,
        valid: np.ndarray | None = None,
        precision: str = "fp32",
        compile_model: bool = False,
        static_batch: int | None = None,
    ) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.model = torch.compile(model) if compile_model else model
        self.window = square_window(tuple(image_shape), input_size)
        self.input_size = input_size
        ones = np.ones(image_shape, np.uint8) if valid is None else np.asarray(valid, np.uint8)
        self.valid = torch.from_numpy(ones.copy()).to(device)
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.static_batch = static_batch if compile_model else None
        if self.cuda:
            self.h2d_stream = torch.cuda.Stream(device)
            self.compute_stream = torch.cuda.Stream(device)
            self.d2h_stream = torch.cuda.Stream(device)

    def stage(self, x: np.ndarray) -> _Staged:
        """Host batch (B, 1, S, S) float32 -> device tensor (asynchronous on GPU)."""
        n = x.shape[0]
        if self.static_batch and n < self.static_batch:  # one shape for torch.compile / CUDA graphs
            x = np.concatenate([x, np.zeros((self.static_batch - n, *x.shape[1:]), x.dtype)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # object-store buffers are read-only
            host = torch.from_numpy(x)
        if not self.cuda:
            return _Staged(host, n)
        pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        pinned.copy_(host)
        with torch.cuda.stream(self.h2d_stream):
            dev = pinned.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self.h2d_stream)
        return _Staged(dev, n, ready)

    @torch.inference_mode()
    def compute(self, staged: _Staged) -> _Result:
        """Forward + on-device reduction to a uint8 mask + asynchronous copy to the host."""
        if not self.cuda:
            with torch.autocast(
                "cpu", dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None
            ):
                logits = self.model(staged.x)
            mask = logits_to_mask(logits[: staged.n].float(), self.window, self.valid)
            return _Result(mask)
        stream = self.compute_stream
        stream.wait_event(staged.ready)
        staged.x.record_stream(stream)
        t_start, t_end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            t_start.record(stream)
            with torch.autocast(
                "cuda", dtype=self.dtype or torch.float16, enabled=self.dtype is not None
            ):
                logits = self.model(staged.x)
            mask = logits_to_mask(logits[: staged.n].float(), self.window, self.valid)
            t_end.record(stream)
        host = torch.empty(mask.shape, dtype=torch.uint8, pin_memory=True)
        self.d2h_stream.wait_event(t_end)
        mask.record_stream(self.d2h_stream)
        with torch.cuda.stream(self.d2h_stream):
            host.copy_(mask, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self.d2h_stream)
        return _Result(host, ready, t_start, t_end)

    def finish(self, result: _Result) -> tuple[np.ndarray, float]:
        """Wait for the download; -> (masks (B, H, W) uint8, GPU compute seconds or 0)."""
        if result.ready is None:
            return result.host.numpy(), 0.0
        result.ready.synchronize()
        gpu_s = result.t_start.elapsed_time(result.t_end) / 1000.0
        # a view of the pinned buffer: valid while ``result`` lives (the caller hands it on first)
        return result.host.numpy(), gpu_s

    def warmup(self, batch: int) -> None:
        x = np.zeros((batch, 1, self.input_size, self.input_size), np.float32)
        self.finish(self.compute(self.stage(x)))


@dataclass
class LoopStats:
    """Counters and busy times of one worker (seconds, wall clock unless noted)."""

    batches: int = 0
    frames: int = 0
    failed_batches: int = 0
    in_hand: int = 0  # batches taken from the input channel and not yet handed on
    stage_s: float = 0.0
    compute_s: float = 0.0
    compute_cpu_s: float = 0.0  # CPU time of the compute thread in compute (< compute_s: preempted)
    gpu_compute_s: float = 0.0
    output_s: float = 0.0
    starved_s: float = 0.0  # compute thread waiting for input
    blocked_s: float = 0.0  # compute thread waiting for the output side
    first_t: float | None = None
    last_t: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {k: v for k, v in self.__dict__.items() if k != "lock"}


class OverlappedLoop:
    """Run ``runner`` on batches from ``get_batch`` until ``stop`` is set and input runs dry.

    ``get_batch(timeout_s)`` -> ``(meta, x)`` or None; ``put_result(meta, masks)`` blocks for
    back-pressure. ``before_compute(k)`` is called with the batch number (fault injection).
    """

    def __init__(
        self,
        runner: ModelRunner,
        get_batch: Callable[[float], tuple[Any, np.ndarray] | None],
        put_result: Callable[[Any, np.ndarray], None],
        stop: threading.Event,
        prefetch: int = 2,
        before_compute: Callable[[int], None] | None = None,
        torch_threads: int | None = None,
        poll_s: float = 1.0,
        cpus: tuple[int, ...] | None = None,
    ) -> None:
        self.poll_s = poll_s
        self.cpus = cpus
        self.runner = runner
        self.torch_threads = torch_threads
        self.get_batch = get_batch
        self.put_result = put_result
        self.stop = stop
        self.staged: queue.Queue = queue.Queue(maxsize=prefetch)
        self.done: queue.Queue = queue.Queue(maxsize=2)
        self.before_compute = before_compute
        self.stats = LoopStats()

    def _put(self, q: queue.Queue, item: Any) -> float:
        t = time.perf_counter()
        q.put(item)
        return time.perf_counter() - t

    def _prefetch(self) -> None:
        try:
            while True:
                item = self.get_batch(self.poll_s)
                if item is None:
                    if self.stop.is_set():
                        break
                    continue
                meta, x = item
                with self.stats.lock:
                    self.stats.in_hand += 1
                t = time.perf_counter()
                try:
                    staged = self.runner.stage(x)
                except Exception:  # noqa: BLE001 - a bad batch is dropped, counted and redone
                    log.exception("staging batch %s failed", meta)
                    self._drop()
                    continue
                del x
                with self.stats.lock:
                    self.stats.stage_s += time.perf_counter() - t
                self.staged.put((meta, staged))
        finally:
            self.staged.put(_SENTINEL)

    def _output(self) -> None:
        while True:
            item = self.done.get()
            if item is _SENTINEL:
                return
            meta, result = item
            t = time.perf_counter()
            try:
                masks, gpu_s = self.runner.finish(result)
                self.put_result(meta, masks)
            except Exception:  # noqa: BLE001
                log.exception("handing on batch %s failed", meta)
                self._drop()
                continue
            now = time.time()
            with self.stats.lock:
                self.stats.output_s += time.perf_counter() - t
                self.stats.gpu_compute_s += gpu_s
                self.stats.batches += 1
                self.stats.frames += int(masks.shape[0])
                self.stats.in_hand -= 1
                self.stats.last_t = now

    def _drop(self) -> None:
        with self.stats.lock:
            self.stats.failed_batches += 1
            self.stats.in_hand -= 1

    def run(self) -> LoopStats:
        threads = [
            threading.Thread(target=self._prefetch, name="prefetch", daemon=True),
            threading.Thread(target=self._output, name="output", daemon=True),
        ]
        for t in threads:  # started before pinning: they stay with the I/O side
            t.start()
        if self.cpus:  # this thread (and OpenMP threads it starts) on the worker's own cores
            from braggflow.inference.affinity import pin_thread

            pin_thread(self.cpus)
        if self.torch_threads:  # OpenMP's thread count is per calling thread: set it in this one
            torch.set_num_threads(int(self.torch_threads))
        k = 0
        try:
            while True:
                t0 = time.perf_counter()
                item = self.staged.get()
                waited = time.perf_counter() - t0
                if item is _SENTINEL:
                    break
                meta, staged = item
                k += 1
                if self.before_compute is not None:
                    self.before_compute(k)
                t1 = time.perf_counter()
                c1 = time.thread_time()
                with self.stats.lock:
                    if self.stats.first_t is None:
                        self.stats.first_t = time.time()
                    if k > 1:
                        self.stats.starved_s += waited
                try:
                    result = self.runner.compute(staged)
                except Exception:  # noqa: BLE001
                    log.exception("compute on batch %s failed", meta)
                    self._drop()
                    continue
                del staged
                t2 = time.perf_counter()
                c2 = time.thread_time()
                blocked = self._put(self.done, (meta, result))
                with self.stats.lock:
                    self.stats.compute_s += t2 - t1
                    self.stats.compute_cpu_s += c2 - c1
                    self.stats.blocked_s += blocked
        finally:
            self.done.put(_SENTINEL)
            for t in threads:
                t.join()
        return self.stats
