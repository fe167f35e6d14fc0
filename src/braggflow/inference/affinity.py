"""CPU pinning for inference on CPU workers: each model worker's compute thread gets cores of its
own; readers, writers, the queues and Ray's own processes share the remaining cores.

Without it the scheduler wakes the I/O side's short tasks on whichever core is free at that instant,
often the one a model worker computes on, and the forward pass loses its core for a few
milliseconds at a time (measured on 2 cores: the compute thread ran 83-88% of its wall time,
pinned 96-97%). This is what ``taskset``/``numactl`` or ``torchrun --numa-binding`` do for
training; here the plan follows the worker layout. Linux only (``sched_setaffinity``); elsewhere,
or when nothing would be left for the I/O side, nothing is pinned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuPlan:
    """Cores of each model worker (``workers[i]``) and of everything else (``io``)."""

    workers: tuple[tuple[int, ...], ...]
    io: tuple[int, ...]

    def worker_cpus(self, index: int) -> tuple[int, ...]:
        return self.workers[index % len(self.workers)]


def allowed_cpus() -> list[int] | None:
    """The cores this process may run on (its cgroup / SLURM allocation), or None if unknown."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def plan_cpus(cpus: Sequence[int], n_workers: int, threads: int) -> CpuPlan | None:
    """The last ``n_workers * threads`` cores to the workers, the rest to the I/O side; None when
    the workers would take every core (nothing left for readers, writers and Ray)."""
    need = n_workers * max(threads, 1)
    if n_workers < 1 or need >= len(cpus):
        return None
    io = tuple(cpus[: len(cpus) - need])
    own = list(cpus[len(io) :])
    workers = tuple(tuple(own[i * threads : (i + 1) * threads]) for i in range(n_workers))
    return CpuPlan(workers, io)


def pin_thread(cpus: Iterable[int]) -> bool:
    """Pin the calling thread (and the threads it starts later, e.g. OpenMP's) to ``cpus``."""
    try:
        os.sched_setaffinity(0, set(cpus))
    except (AttributeError, OSError) as exc:
        log.debug("could not pin to %s: %s", cpus, exc)
        return False
    return True


def _threads_of(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def pin_processes(pids: Iterable[int], cpus: Iterable[int]) -> list[int]:
    """Pin every thread of each process to ``cpus``; -> the thread ids pinned."""
    target = set(cpus)
    pinned: list[int] = []
    for pid in pids:
        for tid in _threads_of(pid):
            try:
                os.sched_setaffinity(tid, target)
            except (AttributeError, OSError):  # gone meanwhile, or not ours
                continue
            pinned.append(tid)
    return pinned


def local_ray_processes() -> list[int]:
    """This process and its descendants: a Ray instance started here (raylet, GCS, workers)."""
    import psutil

    me = psutil.Process()
    return [me.pid, *(p.pid for p in me.children(recursive=True))]
