"""``braggflow-launch``: run a distributed program the same way inside and outside SLURM.

``braggflow-launch ray -- CMD ...``
    In a SLURM allocation: a Ray head on this (the first) node, one Ray worker per other node
    (one per other task when the allocation has a single node) started with ``srun``; CMD runs
    as the driver with ``RAY_ADDRESS`` pointing at the head; everything is torn down at the end,
    also when CMD fails or the job is cancelled. Outside SLURM: CMD runs as is and its
    ``ray.init()`` starts a local Ray.
``braggflow-launch torchrun --nproc-per-node N -- CMD ...``
    In a SLURM allocation: ``srun torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d
    --rdzv-endpoint FIRST_NODE:PORT CMD`` with one torchrun agent per node (per task on a
    single-node allocation). Outside SLURM: ``torchrun --standalone --nproc-per-node N``.
``braggflow-launch mpi -n N -- CMD ...``
    In a SLURM allocation: ``srun -n N --mpi=pmi2 CMD``. Outside SLURM: ``mpiexec -n N CMD``
    (the mpich wheel provides mpiexec); one plain process when N is 1 or there is no mpiexec.

Environment: ``BRAGGFLOW_LAUNCH=auto|local|slurm`` (default auto: SLURM when ``SLURM_JOB_ID``
is set and ``srun`` exists), ``BRAGGFLOW_SRUN_MPI`` (the ``--mpi`` plugin for MPI steps, default
``pmi2``; ``default`` leaves the site's MpiDefault), ``BRAGGFLOW_RAY_TIMEOUT_S`` (how long to wait
for Ray workers to join, default 180).

Steps are started with ``srun --overlap --mem=0`` so that they also work from inside a running
step (the snakemake SLURM jobstep wraps non-MPI rules in ``srun -n1``, which holds the CPUs
and the job's memory).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# SLURM variables that identify the allocation; every other SLURM_* variable describes the current
# step and would leak into a nested srun as a default (task count, CPUs per task, GPUs...).
_KEEP_SLURM = {
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_CLUSTER_NAME",
    "SLURM_CONF",
    "SLURM_SUBMIT_DIR",
    "SLURM_SUBMIT_HOST",
}


@dataclass(frozen=True)
class Allocation:
    """The parts of a SLURM job that the launchers need."""

    job_id: str
    hosts: tuple[str, ...]
    ntasks: int
    cpus: int
    cpus_per_task: int

    @property
    def nnodes(self) -> int:
        return len(self.hosts)

    @property
    def first_host(self) -> str:
        return self.hosts[0]

    def agents(self) -> int:
        """Processes to start, one per node (one per task on a single-node allocation)."""
        return self.nnodes if self.nnodes > 1 else max(1, self.ntasks)

    def cpus_per_agent(self) -> int:
        return max(1, self.cpus // self.agents())


def parse_scontrol_job(text: str) -> dict[str, str]:
    """``scontrol show job -o ID`` -> {key: value} (values never contain spaces in the keys used)."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def expand_hostlist(nodelist: str) -> list[str]:
    """A SLURM hostlist (``node[01-03],gpu7``) -> host names, via ``scontrol show hostnames``."""
    if not nodelist or nodelist == "(null)":
        return []
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def allocation_from_fields(fields: Mapping[str, str], hosts: Sequence[str]) -> Allocation:
    ntasks = int(fields.get("NumTasks", "1") or 1)
    cpus = int(fields.get("NumCPUs", "1") or 1)
    cpt = fields.get("CPUs/Task", "1")
    cpus_per_task = int(cpt) if cpt.isdigit() else max(1, cpus // max(1, ntasks))
    return Allocation(
        job_id=fields.get("JobId", ""),
        hosts=tuple(hosts),
        ntasks=ntasks,
        cpus=cpus,
        cpus_per_task=cpus_per_task,
    )


def current_allocation(env: Mapping[str, str] | None = None) -> Allocation | None:
    """The SLURM allocation this process runs in, or None outside SLURM (or when forced local).

    Asks ``scontrol`` rather than reading ``SLURM_NTASKS``/``SLURM_JOB_NODELIST``: inside a
    snakemake jobstep those describe the one-task step, or are stripped altogether.
    """
    env = os.environ if env is None else env
    mode = env.get("BRAGGFLOW_LAUNCH", "auto")
    if mode not in {"auto", "local", "slurm"}:
        raise SystemExit(f"braggflow-launch: BRAGGFLOW_LAUNCH={mode!r}: use auto, local or slurm")
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if mode == "local" or (mode == "auto" and (not job_id or shutil.which("srun") is None)):
        return None
    if not job_id:
        raise SystemExit("braggflow-launch: BRAGGFLOW_LAUNCH=slurm but SLURM_JOB_ID is not set")
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    )
    fields = parse_scontrol_job(out.stdout)
    return allocation_from_fields(fields, expand_hostlist(fields.get("NodeList", "")))


def step_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a nested ``srun``: the allocation's identity, no step defaults."""
    env = os.environ if env is None else env
    return {
        k: v
        for k, v in env.items()
        if not ((k.startswith("SLURM_") and k not in _KEEP_SLURM) or k.startswith("SRUN_"))
    }


def srun_prefix(ntasks: int, nnodes: int, cpus_per_task: int) -> list[str]:
    return [
        "srun",
        "--overlap",
        "--mem=0",
        "--kill-on-bad-exit=1",
        f"--nodes={nnodes}",
        f"--ntasks={ntasks}",
        f"--cpus-per-task={cpus_per_task}",
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def rendezvous_host(alloc: Allocation) -> str:
    """The first node's name; a single-node allocation whose host name does not resolve
    (containers) rendezvouses on the loopback address."""
    if alloc.nnodes == 1:
        try:
            socket.gethostbyname(alloc.first_host)
        except OSError:
            return "127.0.0.1"
    return alloc.first_host


# ---------------------------------------------------------------- torchrun


def torchrun_command(nproc: int, cmd: list[str], alloc: Allocation | None = None) -> list[str]:
    """torchrun locally (``--standalone``) or across the allocation (c10d on the first node)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if alloc is None:
        return [*torchrun, "--standalone", f"--nproc-per-node={nproc}", "--no-python", *cmd]
    agents = alloc.agents()
    endpoint = f"{rendezvous_host(alloc)}:{free_port()}"
    return [
        *srun_prefix(agents, alloc.nnodes, alloc.cpus_per_agent()),
        *torchrun,
        f"--nnodes={agents}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id=braggflow-{alloc.job_id}",
        "--no-python",
        *cmd,
    ]


# ---------------------------------------------------------------- MPI


def mpi_command(n: int, cmd: list[str], alloc: Allocation | None = None) -> list[str]:
    """srun inside SLURM, mpiexec outside; a plain process when there is nothing to spread."""
    if alloc is not None:
        mpi = os.environ.get("BRAGGFLOW_SRUN_MPI", "pmi2")
        nodes = min(alloc.nnodes, n)
        cpt = max(1, alloc.cpus // max(1, n))
        prefix = srun_prefix(n, nodes, min(cpt, alloc.cpus_per_task) if n > 1 else cpt)
        if mpi != "default":
            prefix.append(f"--mpi={mpi}")
        return [*prefix, *cmd]
    mpiexec = shutil.which("mpiexec") or shutil.which(
        "mpiexec", path=str(Path(sys.executable).parent)
    )
    if mpiexec is None or n <= 1:
        return cmd
    return [mpiexec, "-n", str(n), *cmd]


# ---------------------------------------------------------------- Ray


def ray_head_command(ip: str, port: int, num_cpus: int) -> list[str]:
    return [
        _ray_exe(),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={ip}",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
    ]


def ray_worker_command(address: str, num_cpus: int, alloc: Allocation) -> list[str]:
    """One ``ray start --block`` per other node (per other task on a single node), via srun."""
    workers = alloc.agents() - 1
    if alloc.nnodes > 1:
        placement = [f"--exclude={alloc.first_host}", "--ntasks-per-node=1"]
        nodes = alloc.nnodes - 1
    else:
        placement, nodes = [], 1
    # Raylets sharing a host need their own agent port: each task picks a free one. Ray gives a
    # raylet 30 s to register, which a busy node or a slow shared file system can exceed: retry.
    pick = f"{shlex.quote(sys.executable)} -c 'import braggflow.launch as l; print(l.free_port())'"
    start = (
        f"{shlex.quote(_ray_exe())} start --block --address={shlex.quote(address)}"
        f" --num-cpus={num_cpus} --dashboard-agent-listen-port=$({pick}) --disable-usage-stats"
    )
    script = (
        "trap 'exit 0' TERM INT; "
        f"for attempt in $(seq 1 {START_ATTEMPTS}); do {start} && exit 0; "
        'echo "braggflow-launch: Ray worker start failed (attempt $attempt)" >&2; sleep 1; '
        "done; exit 1"
    )
    return [
        *srun_prefix(workers, nodes, num_cpus),
        *placement,
        "bash",
        "-c",
        script,
    ]


START_ATTEMPTS = 3


def _ray_exe() -> str:
    local = Path(sys.executable).parent / "ray"
    return str(local) if local.exists() else (shutil.which("ray") or "ray")


def wait_for_ray_nodes(address: str, expected: int, timeout_s: float) -> int:
    """Block until ``expected`` Ray nodes are alive; returns how many joined."""
    import ray  # heavy: only when a Ray cluster is launched

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            if alive >= expected or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)
    finally:
        ray.shutdown()


def wait_for(ready: Callable[[], bool], timeout_s: float, proc: subprocess.Popen) -> bool:
    """Poll ``ready()`` until true; False when ``proc`` died or the time ran out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.2)
    return False


def _terminate(proc: subprocess.Popen | None, grace_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


RAY_ENV_KEYS = (
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_TMPDIR",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV",
    "RAY_USAGE_STATS_ENABLED",
    "RAY_agent_register_timeout_ms",
)


def ray_env(base: Mapping[str, str], tmpdir: str) -> dict[str, str]:
    """The environment shared by the Ray head, its workers and the driver.

    A fresh per-job token (Ray >= 2.5x turns token authentication on when ``~/.ray/auth_token``
    exists: an explicit token keeps head, workers and driver in agreement and other users of a
    shared node out) and a per-job temporary root (``RAY_TMPDIR``), so that processes never pick
    up another Ray cluster running on the same host from ``/tmp/ray/session_latest``.
    """
    return {
        **base,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_TMPDIR": tmpdir,
        # under `uv run` Ray would ship the working tree and start every worker through uv
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a busy node starts the dashboard agent slowly; the raylet's 15 s wait would kill it
        "RAY_agent_register_timeout_ms": base.get("RAY_agent_register_timeout_ms", "120000"),
    }


def run_ray(cmd: list[str], alloc: Allocation | None) -> int:
    if alloc is None:
        return subprocess.call(cmd)
    temp_dir = f"/tmp/ray_{alloc.job_id}_{os.getpid()}"  # short: Ray's socket paths live here
    env = ray_env(step_env(), temp_dir)
    # before importing ray: it reads the authentication mode once, at import
    os.environ.update({k: env[k] for k in RAY_ENV_KEYS})
    import ray.util  # heavy: only when a Ray cluster is launched

    ip = ray.util.get_node_ip_address()
    port = free_port()
    address = f"{ip}:{port}"
    num_cpus = alloc.cpus_per_agent()
    head = workers = None
    timeout_s = float(os.environ.get("BRAGGFLOW_RAY_TIMEOUT_S", "180"))
    try:
        # the head writes its address file once its raylet has registered: start the workers
        # only then, so that the start-ups (CPU-heavy) do not compete
        ready = Path(temp_dir) / "ray" / "ray_current_cluster"
        for attempt in range(1, START_ATTEMPTS + 1):
            log(
                f"Ray head on {alloc.first_host} ({address}), {num_cpus} CPUs, RAY_TMPDIR={temp_dir}"
            )
            head = subprocess.Popen(ray_head_command(ip, port, num_cpus), env=env)
            if wait_for(lambda: ready.exists(), timeout_s, head):
                break
            _terminate(head)
            log(f"the Ray head did not come up (attempt {attempt} of {START_ATTEMPTS})")
            port = free_port()
            address = f"{ip}:{port}"
        else:
            return 1
        if alloc.agents() > 1:
            log(f"{alloc.agents() - 1} Ray worker(s) via srun")
            workers = subprocess.Popen(ray_worker_command(address, num_cpus, alloc), env=env)
        joined = wait_for_ray_nodes(address, alloc.agents(), timeout_s)
        if joined < alloc.agents():
            log(f"only {joined} of {alloc.agents()} Ray nodes joined within {timeout_s:.0f} s")
            return 1
        log(f"Ray cluster up: {joined} node(s); running the driver")
        return subprocess.call(cmd, env={**os.environ, "RAY_ADDRESS": address})
    finally:
        _terminate(workers)
        _terminate(head)
        if not os.environ.get("BRAGGFLOW_KEEP_RAY_TMP"):
            shutil.rmtree(temp_dir, ignore_errors=True)


# ---------------------------------------------------------------- CLI


def log(msg: str) -> None:
    print(f"braggflow-launch [{time.strftime('%H:%M:%S')}]: {msg}", file=sys.stderr, flush=True)


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        raise SystemExit("braggflow-launch: error: separate the command with '--'")
    i = list(argv).index("--")
    head, cmd = list(argv[:i]), list(argv[i + 1 :])
    if not cmd:
        raise SystemExit("braggflow-launch: error: no command after '--'")
    return head, cmd


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, cmd = _split(argv)
    parser = argparse.ArgumentParser(prog="braggflow-launch")
    parser.add_argument("kind", choices=["torchrun", "ray", "mpi"])
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("-n", type=int, default=1, help="MPI ranks")
    args = parser.parse_args(head)
    alloc = current_allocation()
    # scancel / snakemake send SIGTERM: unwind through `finally` so Ray is torn down.
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        if args.kind == "ray":
            return run_ray(cmd, alloc)
        if args.kind == "torchrun":
            full = torchrun_command(args.nproc_per_node, cmd, alloc)
        else:
            full = mpi_command(args.n, cmd, alloc)
        env = step_env() if alloc is not None else None
        return subprocess.call(full, env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
