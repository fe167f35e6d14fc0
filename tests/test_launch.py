"""braggflow-launch without a SLURM cluster: command construction and the local fallbacks.

The launchers inside a real SLURM allocation are tested in tests/test_slurm_cluster.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from braggflow import launch

SCONTROL = (
    "JobId=42 JobName=wrap UserId=root(0) GroupId=root(0) Priority=1 JobState=RUNNING "
    "Partition=cpu NodeList=node[01-02] BatchHost=node01 NumNodes=2 NumCPUs=8 NumTasks=2 "
    "CPUs/Task=4 ReqB:S:C:T=0:0:*:* TRES=cpu=8,mem=8000M,node=2 Comment=rule_fit_labels"
)


def _alloc(hosts=("node01", "node02"), ntasks=2, cpus=8, cpt=4) -> launch.Allocation:
    return launch.Allocation(job_id="42", hosts=hosts, ntasks=ntasks, cpus=cpus, cpus_per_task=cpt)


def test_parse_scontrol_job():
    fields = launch.parse_scontrol_job(SCONTROL)
    assert fields["NodeList"] == "node[01-02]"
    assert fields["NumTasks"] == "2" and fields["CPUs/Task"] == "4"
    alloc = launch.allocation_from_fields(fields, ["node01", "node02"])
    assert alloc == _alloc()
    assert alloc.nnodes == 2 and alloc.first_host == "node01"


def test_agents_one_per_node_or_per_task_on_one_node():
    assert _alloc().agents() == 2
    assert _alloc().cpus_per_agent() == 4
    # 2 tasks on a single node: one Ray node / torchrun agent per task
    single = _alloc(hosts=("node01",), ntasks=2, cpus=2, cpt=1)
    assert single.agents() == 2 and single.cpus_per_agent() == 1
    # a 1-task job (the snakemake jobstep): just this node
    one = _alloc(hosts=("node01",), ntasks=1, cpus=4, cpt=4)
    assert one.agents() == 1 and one.cpus_per_agent() == 4


def test_step_env_keeps_only_the_allocation_identity():
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_NTASKS": "1",
        "SLURM_CPUS_PER_TASK": "2",
        "SLURM_STEP_ID": "0",
        "SRUN_DEBUG": "3",
        "PATH": "/bin",
    }
    assert launch.step_env(env) == {"SLURM_JOB_ID": "42", "PATH": "/bin"}


def test_outside_slurm_no_allocation(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOBID", raising=False)
    assert launch.current_allocation() is None
    assert launch.current_allocation({"SLURM_JOB_ID": "7", "BRAGGFLOW_LAUNCH": "local"}) is None
    with pytest.raises(SystemExit, match="BRAGGFLOW_LAUNCH"):
        launch.current_allocation({"BRAGGFLOW_LAUNCH": "cloud"})
    with pytest.raises(SystemExit, match="SLURM_JOB_ID is not set"):
        launch.current_allocation({"BRAGGFLOW_LAUNCH": "slurm"})


def test_torchrun_commands():
    local = launch.torchrun_command(2, ["braggflow", "train"])
    assert "--standalone" in local and "--nproc-per-node=2" in local
    assert local[-2:] == ["braggflow", "train"]
    multi = launch.torchrun_command(4, ["braggflow", "train"], _alloc())
    assert multi[0] == "srun" and "--overlap" in multi and "--ntasks=2" in multi
    assert "--nnodes=2" in multi and "--nproc-per-node=4" in multi
    assert "--rdzv-backend=c10d" in multi
    endpoint = next(a for a in multi if a.startswith("--rdzv-endpoint="))
    host, port = endpoint.split("=", 1)[1].split(":")
    assert host == "node01" and int(port) > 0
    assert "--standalone" not in multi
    # one node whose name does not resolve (a container): rendezvous on the loopback address
    lone = launch.torchrun_command(1, ["x"], _alloc(hosts=("no-such-host.invalid",), cpt=1))
    assert any(a.startswith("--rdzv-endpoint=127.0.0.1:") for a in lone)


def test_mpi_commands(monkeypatch):
    monkeypatch.delenv("BRAGGFLOW_SRUN_MPI", raising=False)
    inside = launch.mpi_command(2, ["braggflow", "find-peaks"], _alloc(hosts=("n1",), cpt=1))
    assert inside[:1] == ["srun"] and "--ntasks=2" in inside and "--mpi=pmi2" in inside
    assert inside[-2:] == ["braggflow", "find-peaks"]
    monkeypatch.setenv("BRAGGFLOW_SRUN_MPI", "default")
    assert not any(a.startswith("--mpi") for a in launch.mpi_command(2, ["x"], _alloc()))
    assert launch.mpi_command(1, ["x"]) == ["x"]
    outside = launch.mpi_command(2, ["x"])
    assert Path(outside[0]).name.startswith("mpiexec") and outside[1:] == ["-n", "2", "x"]


def test_ray_commands():
    alloc = _alloc()
    head = launch.ray_head_command("10.0.0.1", 6379, 4)
    assert head[1:4] == ["start", "--head", "--block"]
    assert "--port=6379" in head and "--num-cpus=4" in head
    workers = launch.ray_worker_command("10.0.0.1:6379", 4, alloc)
    assert workers[0] == "srun" and "--ntasks=1" in workers and "--exclude=node01" in workers
    assert "--address=10.0.0.1:6379" in workers[-1] and "--block" in workers[-1]
    env = launch.ray_env({"PATH": "/bin"}, "/tmp/ray_42")
    assert env["RAY_AUTH_MODE"] == "token" and len(env["RAY_AUTH_TOKEN"]) == 64
    assert env["RAY_TMPDIR"] == "/tmp/ray_42"


def test_cli_requires_separator():
    with pytest.raises(SystemExit, match="separate the command"):
        launch.main(["mpi", "-n", "2", "echo"])
    with pytest.raises(SystemExit, match="no command"):
        launch.main(["mpi", "--"])


def _run_local(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "braggflow.launch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_local_mpi_runs_two_ranks():
    # os.write: one atomic write per rank (both ranks share the pipe)
    code = "import os; from mpi4py import MPI; c = MPI.COMM_WORLD; os.write(1, f'rank {c.rank} {c.size}\\n'.encode())"
    out = _run_local("mpi", "-n", "2", "--", sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(out.stdout.splitlines()) == ["rank 0 2", "rank 1 2"]


def test_local_ray_runs_the_command_and_propagates_failure():
    ok = _run_local("ray", "--", sys.executable, "-c", "print('driver ran')")
    assert ok.returncode == 0 and "driver ran" in ok.stdout
    bad = _run_local("ray", "--", sys.executable, "-c", "raise SystemExit(3)")
    assert bad.returncode == 3


@pytest.mark.slow
def test_local_torchrun_runs_two_ranks(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(
        "import os\n"
        "import torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "os.write(1, f'rank {dist.get_rank()} {dist.get_world_size()}\\n'.encode())\n"
        "dist.destroy_process_group()\n"
    )
    out = _run_local("torchrun", "--nproc-per-node", "2", "--", sys.executable, str(script))
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = sorted(line for line in out.stdout.splitlines() if line.startswith("rank"))
    assert ranks == ["rank 0 2", "rank 1 2"]
