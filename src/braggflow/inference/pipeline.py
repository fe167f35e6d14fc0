"""Ray producer-consumer inference (Wang et al. 2025, sections 2.2.3.2 and 3.4).

Readers -> bounded queue -> model workers -> bounded queue -> writers, all Ray actors::

    FrameReader (CPU, light)  --[frames queue, maxsize=queue_batches]-->  ModelWorker (one per GPU,
    or CPU workers)  --[masks queue, maxsize=queue_batches]-->  PeakWriter (CPU, light)

- Readers read frames, assemble them with the pixel map and apply the model's preprocessing;
  each batch goes to the object store once and only its reference travels through the queue.
- Model workers overlap staging, compute and download (:mod:`braggflow.inference.worker`) and
  return uint8 masks reduced on the device; the raw frames' reference rides along untouched.
- Writers measure peaks on the raw frames (:mod:`braggflow.inference.peaks`) and write
  aggregated chunk files; the driver merges them into one CXI peak list.

Back-pressure: every hand-off is bounded (both queues, the worker's internal hand-offs, the
writers' chunks), so memory stays bounded whatever the relative speed of the stages.

Faults: workers and writers are restartable actors (``max_restarts``; their ``run`` loop is
retried on the new process). The part files on disk are the ledger: after each pass the driver
lists the frames that no part holds (lost in a dead actor) and runs the batches holding them
again, up to ``max_passes``. Batches keep their composition, so a redone frame gives the same
row as in an undisturbed run.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import BraggflowError, InputError
from braggflow.inference.config import InferConfig

log = logging.getLogger(__name__)
# Idle consumers wait this long inside one queue call (no CPU) before checking for stop.
POLL_S = 1.0


@dataclass(frozen=True)
class Faults:
    """Deliberate crashes for tests: the k-th batch of a model worker / writer kills its process once."""

    flag_dir: str
    worker_crash_at_batch: int | None = None
    writer_crash_at_batch: int | None = None


def crash_once(flag_dir: str | None, name: str) -> bool:
    """True exactly once per ``flag_dir``/``name`` across processes and restarts (fault injection)."""
    if not flag_dir:
        return False
    try:
        fd = os.open(
            os.path.join(flag_dir, f"crashed-{name}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY
        )
    except FileExistsError:
        return False
    os.close(fd)
    return True


# ----------------------------------------------------------------------------- Ray set-up
def ensure_ray(num_cpus: int | None = None) -> bool:
    """Connect to Ray: reuse an initialised one, join ``RAY_ADDRESS`` (set by ``braggflow-launch``
    inside SLURM), or start a local instance. Returns True when this call started it."""
    # Ray's "uv run" integration would rebuild the venv in every worker: use this interpreter.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level=logging.WARNING)
        return True
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    return True


def rss_mb() -> float:
    """Resident memory of this process (MB)."""
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def cpu_s() -> float:
    """CPU seconds (user + system) this process has used."""
    t = os.times()
    return t.user + t.system


def pack_masks(masks: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(B, H, W) 0/1 uint8 -> bits (B, ceil(H*W/8)) and the shape."""
    return np.packbits(masks.reshape(masks.shape[0], -1), axis=1), tuple(masks.shape)


def unpack_masks(packed: tuple[np.ndarray, tuple[int, ...]]) -> np.ndarray:
    bits, shape = packed
    return np.unpackbits(bits, axis=1, count=shape[1] * shape[2]).reshape(shape)


def _pin_self(cpus: tuple[int, ...] | None) -> None:
    """Every thread of this actor process onto the I/O side's cores (see ``affinity.py``)."""
    if cpus:
        from braggflow.inference.affinity import pin_processes

        pin_processes([os.getpid()], cpus)


# ----------------------------------------------------------------------------- actors
class FrameReader:
    """Reads, assembles and preprocesses batches into the frames queue (blocking put)."""

    def __init__(
        self,
        frames_path: str,
        geometry_path: str,
        pixel_map: Any,
        input_size: int,
        cpus: tuple[int, ...] | None = None,
    ) -> None:
        from braggflow.formats.geometry import read_geom
        from braggflow.inference.source import Preparer, open_source

        _pin_self(cpus)  # also done by the driver for a local Ray; needed on a joined one

        self.geometry = read_geom(geometry_path)
        self.source = open_source(frames_path, self.geometry)
        self.prepare = Preparer(pixel_map, input_size)
        self.stats = {
            "pid": os.getpid(),
            "frames": 0,
            "batches": 0,
            "busy_s": 0.0,
            "blocked_s": 0.0,
            "bad_frames": 0,
        }

    def run(self, q_out: Any, batches: list[tuple[int, list[int]]]) -> dict[str, Any]:
        import ray

        from braggflow.inference.source import read_batch

        for batch_id, frames in batches:
            t0 = time.perf_counter()
            slabs, bad = read_batch(self.source, frames, self.geometry.slab_shape)
            x = self.prepare(slabs)
            ref = ray.put((x, slabs))  # one object: the model's input and the raw frames
            del x, slabs
            t1 = time.perf_counter()
            q_out.put((batch_id, frames, bad, [ref]))
            self.stats["busy_s"] += t1 - t0
            self.stats["blocked_s"] += time.perf_counter() - t1
            self.stats["frames"] += len(frames)
            self.stats["batches"] += 1
            self.stats["bad_frames"] += int(bad.sum())
        return dict(self.stats)

    def get_stats(self) -> dict[str, Any]:
        return {**self.stats, "rss_mb": rss_mb(), "cpu_s": cpu_s()}


class ModelWorker:
    """One model instance (one GPU, or the CPU) running the overlapped loop on the queues."""

    def __init__(
        self,
        model: Any,
        device: str,
        torch_threads: int | None,
        image_shape: tuple[int, int],
        valid: np.ndarray,
        input_size: int | None,
        precision: str,
        compile_model: bool,
        batch_size: int,
        prefetch: int,
        faults: Faults | None,
        cpus: tuple[int, ...] | None = None,
    ) -> None:
        import torch

        from braggflow.inference.worker import ModelRunner, load_model, pick_device

        self.cpus = cpus
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        self.device = pick_device(device)
        net, self.input_size = load_model(model, self.device, input_size)
        self.runner = ModelRunner(
            net,
            self.device,
            image_shape,
            self.input_size,
            valid,
            precision,
            compile_model,
            static_batch=batch_size,
        )
        self.runner.warmup(batch_size)
        self.prefetch = prefetch
        self.torch_threads = torch_threads
        self.faults = faults
        self.stop_event = threading.Event()
        self.loop = None
        self.info = {
            "pid": os.getpid(),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "input_size": self.input_size,
            "cpus": list(cpus) if cpus else None,
        }

    def describe(self) -> dict[str, Any]:
        return dict(self.info)

    def run(self, q_in: Any, q_out: Any) -> dict[str, Any]:
        import ray
        from ray.util.queue import Empty

        from braggflow.inference.worker import OverlappedLoop

        def get_batch(timeout: float):
            try:
                batch_id, frames, bad, (ref,) = q_in.get(block=True, timeout=timeout)
            except Empty:
                return None
            return (batch_id, frames, bad, ref), ray.get(ref)[0]  # zero-copy view

        def put_result(meta: tuple, masks: np.ndarray) -> None:
            # bit-packed masks travel inside the queue message (1/8 of the bytes, no object)
            batch_id, frames, bad, ref = meta
            q_out.put((batch_id, frames, bad, [ref], pack_masks(masks)))

        def before_compute(k: int) -> None:
            f = self.faults
            if f and f.worker_crash_at_batch == k and crash_once(f.flag_dir, "worker"):
                os._exit(1)

        self.loop = OverlappedLoop(
            self.runner,
            get_batch,
            put_result,
            self.stop_event,
            self.prefetch,
            before_compute,
            torch_threads=self.torch_threads,
            cpus=self.cpus,
        )
        stats = self.loop.run()
        return {**self.info, **stats.snapshot()}

    def get_stats(self) -> dict[str, Any]:
        base = self.loop.stats.snapshot() if self.loop is not None else {"in_hand": 0}
        return {**self.info, **base, "rss_mb": rss_mb(), "cpu_s": cpu_s()}

    def stop(self) -> None:
        self.stop_event.set()


class PeakWriter:
    """Takes mask batches from the masks queue, measures peaks and writes chunk files."""

    def __init__(
        self,
        name: str,
        parts_dir: str,
        pixel_map: Any,
        bad_pixels: np.ndarray,
        peak_params: Any,
        chunk_frames: int,
        keep_masks: bool,
        faults: Faults | None,
        cpus: tuple[int, ...] | None = None,
    ) -> None:
        from braggflow.inference.writer import ChunkWriter

        _pin_self(cpus)  # also done by the driver for a local Ray; needed on a joined one

        self.writer = ChunkWriter(
            Path(parts_dir),
            pixel_map,
            bad_pixels,
            peak_params,
            chunk_frames,
            keep_masks,
            name=f"{name}-{os.getpid()}",
        )
        self.faults = faults
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.new_frames: list[int] = []
        self.stats = {
            "pid": os.getpid(),
            "frames": 0,
            "batches": 0,
            "busy_s": 0.0,
            "wait_s": 0.0,
            "in_hand": 0,
            "parts": 0,
        }

    def run(self, q_in: Any) -> dict[str, Any]:
        import ray
        from ray.util.queue import Empty

        while True:
            t0 = time.perf_counter()
            try:
                batch_id, frames, bad, (ref,), packed = q_in.get(block=True, timeout=POLL_S)
            except Empty:
                self.stats["wait_s"] += time.perf_counter() - t0
                if self.stop_event.is_set():
                    break
                continue
            t1 = time.perf_counter()
            with self.lock:
                self.stats["in_hand"] = 1
            slabs = ray.get(ref)[1]
            masks = unpack_masks(packed)
            f = self.faults
            if (
                f
                and f.writer_crash_at_batch == self.stats["batches"] + 1
                and crash_once(f.flag_dir, "writer")
            ):
                os._exit(1)
            self.writer.add_batch(frames, bad, slabs, masks)
            del slabs, masks, ref
            with self.lock:
                self.new_frames.extend(int(i) for i in frames)
                self.stats["in_hand"] = 0
                self.stats["frames"] += len(frames)
                self.stats["batches"] += 1
                self.stats["busy_s"] += time.perf_counter() - t1
                self.stats["wait_s"] += t1 - t0
                self.stats["parts"] = len(self.writer.parts)
        self.writer.flush()
        return dict(self.stats)

    def flush(self) -> list[str]:
        parts = self.writer.flush()
        with self.lock:
            self.stats["parts"] = len(parts)
        return parts

    def get_stats(self) -> dict[str, Any]:
        """Counters plus the frames received since the last call (each reported once)."""
        with self.lock:
            out = {
                **self.stats,
                "new_frames": self.new_frames,
                "rss_mb": rss_mb(),
                "cpu_s": cpu_s(),
            }
            self.new_frames = []
        return out

    def stop(self) -> None:
        self.stop_event.set()


# ----------------------------------------------------------------------------- driver
def plan_batches(n_frames: int, batch_size: int) -> list[tuple[int, list[int]]]:
    """Consecutive frames in fixed batches (their composition never changes between passes)."""
    return [
        (b, list(range(s, min(s + batch_size, n_frames))))
        for b, s in enumerate(range(0, n_frames, batch_size))
    ]


class _Poller:
    """Non-blocking stats polls; an actor whose previous poll is unanswered is not asked again."""

    def __init__(self, ray: Any, actors: Mapping[str, Any]) -> None:
        self.ray = ray
        self.actors = dict(actors)
        self.pending: dict[str, Any] = {}
        self.pids: dict[str, int] = {}
        self.restarts = dict.fromkeys(actors, 0)
        self.dead: set[str] = set()

    def poll(self, timeout: float) -> dict[str, dict[str, Any] | None]:
        ray = self.ray
        for name, actor in self.actors.items():
            if name not in self.pending and name not in self.dead:
                self.pending[name] = actor.get_stats.remote()
        refs = list(self.pending.values())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout) if refs else ([], [])
        ready_set = set(ready)
        out: dict[str, dict[str, Any] | None] = dict.fromkeys(self.actors)
        for name, ref in list(self.pending.items()):
            if ref not in ready_set:
                continue
            del self.pending[name]
            try:
                stats = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.dead.add(
                    name
                )  # gone for good (restarts used up) or restarting: asked again later
                continue
            if name in self.pids and self.pids[name] != stats.get("pid"):
                self.restarts[name] += 1
            self.pids[name] = stats.get("pid")
            out[name] = {**stats, "restarts": self.restarts[name]}
        return out

    def revive(self) -> None:
        """Actors marked dead may have been restarted by Ray: ask them again next time."""
        self.dead.clear()


def worker_layout(
    cfg: InferConfig, use_gpu: bool, n_gpus: int, n_cpus: int
) -> tuple[int, int | None]:
    """(model workers, torch threads each). GPU: one worker per GPU. CPU: single-threaded workers
    on all CPUs but one, which is left to readers, writers and Ray: on small CPU counts torch's
    intra-op threads lose more to synchronisation (and to any other process on the node) than
    they gain, while independent single-threaded workers scale (benchmarks/infer.py measures both).
    """
    if use_gpu:
        return cfg.num_workers or max(n_gpus, 1), cfg.torch_threads
    threads = cfg.torch_threads or 1
    workers = cfg.num_workers or max(1, (n_cpus - 1) // threads)
    return workers, threads


def _cpu_plan(
    ray: Any, cfg: InferConfig, use_gpu: bool, n_cpus: int, n_workers: int, threads: int
) -> Any:
    """Where CPU workers and the I/O side run (``affinity.CpuPlan``), or None: not pinned on GPU,
    when switched off, on a Ray of several nodes, or when the workers would take every core."""
    if use_gpu or not cfg.pin_cpus:
        return None
    from braggflow.inference.affinity import allowed_cpus, plan_cpus

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) != 1 or nodes[0].get("NodeID") != ray.get_runtime_context().get_node_id():
        return None
    cpus = allowed_cpus()
    if cpus is None:
        return None
    return plan_cpus(cpus[:n_cpus], n_workers, threads)


def _pin_io_side(plan: Any, worker_pids: set[int]) -> list[int] | None:
    """This process and the Ray processes started from it (raylet, queues, readers, writers),
    but not the model workers (their compute threads pin themselves) -> the I/O side's cores.
    Returns the cores to give them back afterwards."""
    from braggflow.inference.affinity import allowed_cpus, local_ray_processes, pin_processes

    before = allowed_cpus()
    pin_processes([p for p in local_ray_processes() if p not in worker_pids], plan.io)
    return before


def _actor_options(cfg: InferConfig, **extra: Any) -> dict[str, Any]:
    return {"max_restarts": cfg.max_restarts, "max_task_retries": -1, **extra}


def _read_arch_input_size(model: str | Path) -> int | None:
    """The model's input square from its ``<name>.json`` (avoids torch in the driver)."""
    import json

    side = Path(model).with_suffix(".json")
    try:
        return int(json.loads(side.read_text())["arch"]["input_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_inference(
    model: str | Path | Any,
    frames: str | Path,
    geometry: str | Path,
    out: str | Path,
    params: Mapping[str, Any] | InferConfig | None = None,
    metrics_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    masks_out: str | Path | None = None,
    truth: str | Path | None = None,
    input_size: int | None = None,
    faults: Faults | None = None,
    config_for_provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the pipeline on one frames file; writes ``out`` (CXI peaks) and returns the metrics.

    ``model`` is an exported model file (or, for tests, an ``nn.Module`` with ``input_size``).
    """
    t_start = time.time()
    cfg = params if isinstance(params, InferConfig) else InferConfig.from_params(params)
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.inference.source import open_source, slab_bad_pixels

    # every input checked before Ray starts: a bad path is one line, not a Ray traceback
    if isinstance(model, str | Path) and not Path(model).is_file():
        raise InputError(
            model, "model file not found", "run the train/distill stage or fix --model"
        )
    geom = read_geom(geometry)
    with _closing(open_source(frames, geom)) as src:
        n_frames = len(src)
        bad_pixels = slab_bad_pixels(src, geom)
    if n_frames == 0:
        raise InputError(frames, "no frames", "give a file with at least one frame")
    pixel_map = PixelMap.from_geometry(geom, mask=~bad_pixels)
    if input_size is None and isinstance(model, str | Path):
        input_size = _read_arch_input_size(model)
    write_masks = cfg.write_masks or masks_out is not None
    if write_masks and masks_out is None:
        masks_out = Path(out).with_suffix(".masks.h5")

    started = ensure_ray(cfg.num_cpus)
    import ray
    from ray.util.queue import Queue

    t_ray = time.time()
    n_gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = cfg.device == "cuda" or (cfg.device == "auto" and n_gpus > 0)
    n_cpus = int(ray.cluster_resources().get("CPU", 1))
    n_workers, threads = worker_layout(cfg, use_gpu, n_gpus, n_cpus)
    parts_dir = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.parts.", dir=Path(out).parent))

    pm_ref = ray.put(pixel_map)
    actors: list[Any] = []
    queues: list[Any] = []
    plan = _cpu_plan(ray, cfg, use_gpu, n_cpus, n_workers, threads or 1)
    io_cpus = plan.io if plan else None
    unpinned = None
    try:
        # queues first, then the slow model workers, then readers and writers: their processes
        # start in parallel, and the readers fill the first queue while the models load
        q_in = Queue(maxsize=cfg.queue_batches, actor_options={"num_cpus": 0})
        q_out = Queue(maxsize=cfg.queue_batches, actor_options={"num_cpus": 0})
        queues = [q_in, q_out]
        worker_opts = _actor_options(
            cfg,
            max_concurrency=4,
            **(
                {"num_gpus": 1}
                if use_gpu
                else {"num_cpus": min(float(threads or 1), n_cpus / n_workers)}
            ),
        )
        Worker = ray.remote(ModelWorker)
        workers = {
            f"worker{i}": Worker.options(**worker_opts).remote(
                model,
                cfg.device,
                threads,
                pixel_map.shape,
                pixel_map.valid,
                input_size,
                cfg.precision,
                cfg.compile,
                cfg.batch_size,
                cfg.prefetch_batches,
                faults,
                plan.worker_cpus(i) if plan else None,
            )
            for i in range(n_workers)
        }
        actors += list(workers.values())
        if input_size is None:  # a model file without its JSON: ask a loaded worker
            input_size = _started(ray, list(workers.values())[:1])[0]["input_size"]
        Reader = ray.remote(FrameReader)
        readers = {
            f"reader{i}": Reader.options(
                **_actor_options(cfg, num_cpus=0, max_concurrency=2)
            ).remote(str(frames), str(geometry), pm_ref, input_size, io_cpus)
            for i in range(cfg.num_readers)
        }
        Writer = ray.remote(PeakWriter)
        writers = {
            f"writer{i}": Writer.options(
                **_actor_options(cfg, num_cpus=0, max_concurrency=4)
            ).remote(
                f"w{i}",
                str(parts_dir),
                pm_ref,
                bad_pixels,
                cfg.peaks,
                cfg.chunk_frames,
                write_masks,
                faults,
                io_cpus,
            )
            for i in range(cfg.num_writers)
        }
        actors += list(readers.values()) + list(writers.values())
        first_refs = start_readers(
            list(readers.values()), q_in, plan_batches(n_frames, cfg.batch_size)
        )
        loops = [w.run.remote(q_in, q_out) for w in workers.values()]
        loops += [w.run.remote(q_out) for w in writers.values()]
        ready_info = _started(ray, list(workers.values()))
        if plan is not None:  # after start-up, which runs faster on every core
            unpinned = _pin_io_side(plan, {info["pid"] for info in ready_info})
        t_ready = time.time()
        result = _drive(
            ray, cfg, n_frames, q_in, q_out, readers, workers, writers, parts_dir, first_refs
        )
        for actor in list(workers.values()) + list(writers.values()):
            actor.stop.remote()
        final_stats = _gather(ray, loops, timeout=30.0)
        t_done = time.time()

        from braggflow.inference.writer import list_parts, merge_parts, write_outputs
        from braggflow.inference.writer import write_masks as write_masks_file

        merged = merge_parts(list_parts(parts_dir), n_frames)
        if merged.missing:
            raise BraggflowError(
                f"frames {merged.missing[:10]} were never written (internal error)"
            )
        metrics = _metrics(
            cfg,
            merged,
            n_frames,
            result,
            ready_info,
            final_stats,
            t_start,
            t_ray,
            t_ready,
            t_done,
            started,
        )
        metrics.update(
            {
                "model": str(model) if isinstance(model, str | Path) else type(model).__name__,
                "frames_file": str(frames),
                "input_size": input_size,
                "n_workers": n_workers,
                "device": ready_info[0]["device"],
                "torch_threads": ready_info[0]["torch_threads"],
                "cpu_pinning": (
                    {"workers": [list(c) for c in plan.workers], "io": list(plan.io)}
                    if plan
                    else None
                ),
            }
        )
        inputs = [p for p in (model, frames, geometry) if isinstance(p, str | Path)]
        provenance_cfg = (
            config_for_provenance if config_for_provenance is not None else cfg.to_dict()
        )
        write_outputs(
            out,
            merged.results,
            frames,
            cfg.peaks.max_peaks,
            config=provenance_cfg,
            inputs=inputs,
            attrs={"method": metrics["model"], "n_bad_frames": metrics["bad_frames"]},
        )
        if write_masks:
            write_masks_file(
                masks_out, list_parts(parts_dir), n_frames, geom.slab_shape, provenance_cfg, inputs
            )
        if truth is not None:
            from braggflow.inference.scoring import footprint_results, score_against_truth

            metrics["truth"] = score_against_truth(merged.results, truth, cfg.match_distance_px)
            ceiling = footprint_results(frames, geometry, truth, cfg.peaks)
            if ceiling is not None:  # the same extraction on the noiseless spot footprint
                metrics["truth"]["footprint_masks"] = score_against_truth(
                    ceiling, truth, cfg.match_distance_px
                )
        if metrics_path is not None:
            from braggflow.atomic import atomic_write_json

            atomic_write_json(metrics_path, metrics)
        if plot_path is not None:
            from braggflow.inference.monitor import plot_metrics

            plot_metrics(metrics, plot_path)
        return metrics
    finally:
        for actor in actors:
            _quiet(ray.kill, actor)
        for q in queues:
            _quiet(q.shutdown)
        if unpinned:  # Ray's processes (those started during the run too) as they were
            from braggflow.inference.affinity import local_ray_processes, pin_processes

            pin_processes(local_ray_processes(), unpinned)
        shutil.rmtree(parts_dir, ignore_errors=True)
        if started and not os.environ.get("BRAGGFLOW_KEEP_RAY"):
            ray.shutdown()


def start_readers(readers: list[Any], q_in: Any, batches: list[tuple[int, list[int]]]) -> list[Any]:
    """Deal the batches round-robin to the readers and start them; -> their run refs."""
    return [r.run.remote(q_in, batches[i :: len(readers)]) for i, r in enumerate(readers)]


def _drive(
    ray: Any,
    cfg: InferConfig,
    n_frames: int,
    q_in: Any,
    q_out: Any,
    readers: Mapping[str, Any],
    workers: Mapping[str, Any],
    writers: Mapping[str, Any],
    parts_dir: Path,
    first_reader_refs: list[Any] | None = None,
) -> dict[str, Any]:
    """Passes until every frame is in a part file; samples the monitor meanwhile."""
    from tqdm import tqdm

    from braggflow.inference.monitor import Monitor
    from braggflow.inference.writer import list_parts, part_frames

    monitor = Monitor()
    poller = _Poller(ray, {**workers, **writers, **readers})
    batches = plan_batches(n_frames, cfg.batch_size)
    committed: set[int] = set()
    seen_parts: set[Path] = set()
    received_total: set[int] = set()
    passes = 0
    redone = 0
    bar = tqdm(
        total=n_frames,
        desc="infer",
        unit="frame",
        file=sys.stderr,
        disable=not cfg.progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    t_first = time.time()
    try:
        while len(committed) < n_frames:
            if passes >= cfg.max_passes:
                missing = sorted(set(range(n_frames)) - committed)
                raise BraggflowError(
                    f"{len(missing)} frames still missing after {passes} passes (e.g. {missing[:5]}); "
                    "see the log for worker or writer errors"
                )
            passes += 1
            todo = [b for b in batches if not committed.issuperset(b[1])]
            expected = {f for _, frames in todo for f in frames}
            if passes > 1:
                redone += len(expected)
                log.warning(
                    "pass %d: redoing %d frames lost by a failed actor", passes, len(expected)
                )
                poller.revive()
            if passes == 1 and first_reader_refs:
                reader_refs = list(first_reader_refs)  # started while the workers loaded
            else:
                reader_refs = start_readers(list(readers.values()), q_in, todo)
            received: set[int] = set()
            quiet = 0
            while True:
                t_poll = time.time()
                depth = ray.get([q_in.actor.qsize.remote(), q_out.actor.qsize.remote()])
                stats = poller.poll(timeout=cfg.monitor_interval_s)
                for name in writers:
                    if stats.get(name):
                        received.update(stats[name].pop("new_frames", []))
                new = received - received_total
                received_total |= new
                bar.update(len(new))
                monitor.sample(
                    depth[0],
                    depth[1],
                    len(received_total),
                    {n: stats.get(n) for n in workers},
                    {n: stats.get(n) for n in writers},
                    {n: stats.get(n) for n in readers},
                    driver_rss_mb=rss_mb(),
                    driver_cpu_s=cpu_s(),
                )
                if all(n in poller.dead for n in workers) or all(n in poller.dead for n in writers):
                    _raise_if_gone(ray, workers, writers)
                if expected <= received:
                    break
                readers_done = len(
                    ray.wait(reader_refs, num_returns=len(reader_refs), timeout=0)[0]
                ) == len(reader_refs)
                idle = all(
                    stats.get(n) is not None and stats[n].get("in_hand", 0) == 0
                    for n in list(workers) + list(writers)
                )
                quiet = quiet + 1 if (readers_done and depth == [0, 0] and idle) else 0
                if quiet >= 3:  # nothing left anywhere: the rest was lost with a dead actor
                    break
                time.sleep(max(0.0, cfg.monitor_interval_s - (time.time() - t_poll)))
            _gather(ray, reader_refs, timeout=60.0)
            for ref in [w.flush.remote() for w in writers.values()]:
                _quiet(ray.get, ref, timeout=120.0)
            for part in list_parts(parts_dir):
                if part not in seen_parts:
                    seen_parts.add(part)
                    committed.update(int(f) for f in part_frames(part))
    finally:
        bar.close()
    # one last sample after the final flush
    stats = poller.poll(timeout=cfg.monitor_interval_s)
    for name in writers:
        if stats.get(name):
            stats[name].pop("new_frames", None)
    monitor.sample(
        0,
        0,
        n_frames,
        {n: stats.get(n) for n in workers},
        {n: stats.get(n) for n in writers},
        {n: stats.get(n) for n in readers},
        driver_rss_mb=rss_mb(),
        driver_cpu_s=cpu_s(),
    )
    return {
        "monitor": monitor,
        "passes": passes,
        "redone_frames": redone,
        "restarts": dict(poller.restarts),
        "t_first": t_first,
        "t_last": time.time(),
    }


def _started(ray: Any, workers: list[Any]) -> list[dict[str, Any]]:
    """Wait for model workers to load; a worker that cannot (bad model file...) is one line."""
    try:
        return ray.get([w.describe.remote() for w in workers])
    except ray.exceptions.RayError as exc:  # the worker's own exception, or its death
        lines = [ln.strip() for ln in str(exc).splitlines() if "Error" in ln and ":" in ln]
        cause = lines[-1].split("Error: ", 1)[-1] if lines else str(exc)
        raise BraggflowError(f"a model worker could not start: {cause}") from None


def _raise_if_gone(ray: Any, workers: Mapping[str, Any], writers: Mapping[str, Any]) -> None:
    """Raise when every model worker (or every writer) is permanently dead."""
    for kind, group in (("model workers", workers), ("writers", writers)):
        alive = 0
        for actor in group.values():
            try:
                ray.get(actor.get_stats.remote(), timeout=60.0)
                alive += 1
            except Exception:  # noqa: BLE001 - dead for good, or not back within a minute
                continue
        if alive == 0:
            raise BraggflowError(
                f"all {kind} died and could not be restarted (infer.max_restarts); see the log"
            )


def _gather(ray: Any, refs: list[Any], timeout: float) -> list[Any]:
    out = []
    for ref in refs:
        try:
            out.append(ray.get(ref, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - a loop that died is reported, its work redone
            log.warning("an actor loop ended with %s", type(exc).__name__)
            out.append(None)
    return out


def _quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        log.debug("ignored during clean-up: %s", exc)
        return None


class _closing:
    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __enter__(self) -> Any:
        return self.obj

    def __exit__(self, *exc: object) -> None:
        self.obj.close()


def _metrics(
    cfg: InferConfig,
    merged: Any,
    n_frames: int,
    result: Mapping[str, Any],
    ready_info: list[dict[str, Any]],
    final_stats: list[Any],
    t_start: float,
    t_ray: float,
    t_ready: float,
    t_done: float,
    started_ray: bool,
) -> dict[str, Any]:
    monitor = result["monitor"]
    n_peaks = np.array([len(r.table) for r in merged.results])
    bad = [r.frame for r in merged.results if r.bad]
    run_s = max(t_done - t_ready, 1e-9)
    summary = monitor.summary()
    workers = summary["workers"]
    compute = sum((w.get("compute_s") or 0.0) for w in workers.values())
    return {
        "frames": n_frames,
        "frames_written": len(merged.results),
        "bad_frames": len(bad),
        "bad_frame_indices": bad,
        "peaks_total": int(n_peaks.sum()),
        "peaks_per_frame_mean": float(n_peaks.mean()) if n_peaks.size else 0.0,
        "frames_with_peaks": int((n_peaks > 0).sum()),
        "duplicates_dropped": merged.duplicates,
        "passes": result["passes"],
        "redone_frames": result["redone_frames"],
        "restarts": result["restarts"],
        "images_per_s": n_frames / run_s,
        "steady_images_per_s": summary["steady_images_per_s"],
        "mean_worker_utilisation": summary["mean_worker_utilisation"],
        "peak_rss_mb": summary["peak_rss_mb"],
        "wall_s": t_done - t_start,
        "startup_s": t_ready - t_start,
        "ray_start_s": t_ray - t_start if started_ray else 0.0,
        "run_s": run_s,
        "compute_s": compute,
        "config": cfg.to_dict(),
        "monitor": summary,
    }
