"""Ray scheduling of the fit_labels stage, as in the paper (section 2.1.2).

Frames go in batches (default 40) to Ray tasks of one CPU each; at most ``max_in_flight``
(default 80) batch tasks are submitted at a time, and results come back in submission order.
A task whose worker dies is retried by Ray (``max_retries``); a peak that raises inside a task
is recorded as failed by the fitter, never dropped.

Local mode starts Ray on this machine (``ray.init(num_cpus=...)``, no dashboard). Inside a
SLURM allocation ``braggflow-launch ray -- ...`` starts the cluster and sets ``RAY_ADDRESS``,
which this module joins instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from braggflow.fitting.stage import DetectorContext, FrameJob, FrameOutput, fit_frames
from braggflow.fitting.windows import FitSettings

log = logging.getLogger(__name__)

# Test hook: a task that finds this file deletes it and kills its own worker (SIGKILL), so
# tests can check that a dead worker's batch is retried and the labels do not change.
KILL_ONCE_ENV = "BRAGGFLOW_TEST_KILL_WORKER_ONCE"


def ray_environment() -> None:
    """Environment for a fast, quiet local Ray (set before ``import ray``).

    ``uv run`` makes Ray ship the working tree to every worker and start workers via uv (tens of
    seconds); braggflow runs from an installed environment, so that is switched off.
    """
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def start_ray(num_cpus: int | None = None, attempts: int = 3) -> bool:
    """Join ``RAY_ADDRESS`` if set (the launcher's cluster), else start a local Ray.

    Returns True when this call started or joined Ray (the caller shuts it down), False when
    Ray was already initialised in this process. A local start that times out (Ray gives its
    raylet 30 s, which an overloaded machine can exceed) is retried ``attempts`` times before
    the error is raised.
    """
    ray_environment()
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    for attempt in range(1, attempts + 1):
        t0 = time.perf_counter()
        try:
            if address:
                ray.init(address=address, log_to_driver=True, configure_logging=False)
                log.info("joined Ray cluster at %s in %.1f s", address, time.perf_counter() - t0)
            else:
                ray.init(
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=True,
                    configure_logging=False,
                )
                log.info(
                    "started local Ray (%s CPUs) in %.1f s", num_cpus, time.perf_counter() - t0
                )
            return True
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on start timeouts
            if attempt == attempts or "timed out" not in str(exc):
                raise
            log.warning(
                "Ray did not start (attempt %d of %d): %s; retrying", attempt, attempts, exc
            )
            ray.shutdown()
    return True


def _fit_batch_task(
    ctx: DetectorContext, jobs: list[FrameJob], settings: FitSettings
) -> list[FrameOutput]:
    kill = os.environ.get(KILL_ONCE_ENV)
    if kill:
        try:
            os.remove(kill)
        except FileNotFoundError:
            pass
        else:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
    return fit_frames(ctx, jobs, settings)


def run_ray(
    contexts: Sequence[DetectorContext],
    batches: Sequence[tuple[int, list[FrameJob]]],
    settings: FitSettings,
    max_in_flight: int = 80,
    max_retries: int = 3,
) -> Iterator[list[FrameOutput]]:
    """Fit ``(context index, frame jobs)`` batches on Ray; yields outputs in submission order.

    At most ``max_in_flight`` tasks are outstanding; finished batches are buffered until every
    earlier batch has been yielded, so the caller writes frames in a deterministic order.
    """
    import ray

    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    remote = ray.remote(num_cpus=1, max_retries=max_retries)(_fit_batch_task)
    kill = os.environ.get(KILL_ONCE_ENV)
    if kill:
        remote = remote.options(runtime_env={"env_vars": {KILL_ONCE_ENV: kill}})
    ctx_refs = [ray.put(c) for c in contexts]
    settings_ref = ray.put(settings)
    pending: dict[Any, int] = {}
    done: dict[int, list[FrameOutput]] = {}
    next_submit, next_yield = 0, 0
    while next_yield < len(batches):
        while next_submit < len(batches) and len(pending) < max_in_flight:
            r, jobs = batches[next_submit]
            pending[remote.remote(ctx_refs[r], jobs, settings_ref)] = next_submit
            next_submit += 1
        while next_yield not in done:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                done[pending.pop(ref)] = ray.get(ref)
        yield done.pop(next_yield)
        next_yield += 1


def run_serial(
    contexts: Sequence[DetectorContext],
    batches: Sequence[tuple[int, list[FrameJob]]],
    settings: FitSettings,
) -> Iterator[list[FrameOutput]]:
    """The same batches in this process, in order (debugging and benchmarks; no Ray)."""
    for r, jobs in batches:
        yield fit_frames(contexts[r], jobs, settings)
