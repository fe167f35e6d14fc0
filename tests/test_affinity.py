"""CPU pinning of inference workers (issue 7): the plan, and real affinity changes on Linux."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from braggflow.inference.affinity import (
    CpuPlan,
    allowed_cpus,
    local_ray_processes,
    pin_processes,
    plan_cpus,
)

linux_only = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs sched_setaffinity (Linux) and at least 2 usable cores",
)


def test_plan_gives_workers_the_last_cores_and_the_rest_to_io():
    assert plan_cpus([0, 1], 1, 1) == CpuPlan(workers=((1,),), io=(0,))
    plan = plan_cpus(list(range(8)), 3, 2)
    assert plan.io == (0, 1) and plan.workers == ((2, 3), (4, 5), (6, 7))
    assert plan.worker_cpus(4) == (4, 5)  # a restarted worker's index wraps onto the plan
    # a cgroup's cores need not start at 0 nor be contiguous
    assert plan_cpus([4, 5, 9, 12], 1, 2) == CpuPlan(workers=((9, 12),), io=(4, 5))


def test_no_plan_when_the_workers_would_take_every_core():
    assert plan_cpus([0, 1], 2, 1) is None
    assert plan_cpus([0, 1, 2, 3], 1, 4) is None
    assert plan_cpus([0], 1, 1) is None
    assert plan_cpus([0, 1, 2], 0, 1) is None


@linux_only
def test_pin_processes_pins_every_thread_of_a_real_process():
    code = (
        "import threading, time, sys\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "print('up', flush=True); time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "up"
        first = allowed_cpus()[0]
        pinned = pin_processes([child.pid], [first])
        tids = os.listdir(f"/proc/{child.pid}/task")
        assert len(tids) >= 2 and set(pinned) == {int(t) for t in tids}
        for tid in tids:
            assert os.sched_getaffinity(int(tid)) == {first}
        assert pin_processes([999_999_999], [first]) == []  # a process gone meanwhile: nothing
    finally:
        child.kill()
        child.wait()


def test_local_ray_processes_starts_with_this_one():
    assert local_ray_processes()[0] == os.getpid()


@linux_only
def test_overlapped_loop_pins_only_its_compute_thread():
    """The compute thread (and what it starts) goes to the worker's core; the prefetch and
    output threads stay with the I/O side, and the calling thread's own pinning is its own."""
    import torch

    from braggflow.inference.worker import ModelRunner, OverlappedLoop
    from test_infer import threshold_model

    cores = allowed_cpus()
    mine = cores[-1]
    runner = ModelRunner(threshold_model(1.0), torch.device("cpu"), (20, 24), 32)
    seen: dict[str, set[int]] = {}
    stop = threading.Event()
    left = [3]

    def get_batch(timeout):
        seen["prefetch"] = os.sched_getaffinity(0)
        if left[0] == 0:
            stop.set()
            return None
        left[0] -= 1
        return left[0], np.zeros((2, 1, 32, 32), np.float32)

    def put_result(meta, masks):
        seen["output"] = os.sched_getaffinity(0)

    def before_compute(k):
        seen["compute"] = os.sched_getaffinity(0)

    worker = threading.Thread(
        target=lambda: OverlappedLoop(
            runner, get_batch, put_result, stop, before_compute=before_compute, cpus=(mine,)
        ).run()
    )
    worker.start()
    worker.join(timeout=60)
    assert seen["compute"] == {mine}
    assert seen["prefetch"] == set(cores) and seen["output"] == set(cores)
    assert os.sched_getaffinity(0) == set(cores)  # the test's own thread is untouched
