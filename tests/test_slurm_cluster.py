"""On a real single-node SLURM cluster (scripts/slurm-cluster.sh: partitions `cpu` and `gpu`):

- the tiny embedded experiment (every stage) runs to completion with ``--profile
  profiles/slurm``; every rule ran as SLURM jobs on the partition the profile maps it to, GPU
  rules on `gpu` (squeue keeps finished jobs: MinJobAge=3600, there is no accounting database);
  a config change reruns only the dependent jobs; the report builds from the run;
- a job killed with ``scancel`` is reported and the rerun resumes with just that job and its
  dependents (a stand-in workflow with the real rule names, whose train_teacher job blocks until
  it is cancelled), and GPU jobs get the node's (fake) GPU;
- braggflow-launch inside real 2-task allocations: a 2-node Ray cluster runs a fitting batch
  (and is torn down when the driver fails), torchrun under srun runs 2 ranks, MPI via srun.

The whole module takes several minutes on 2 cores (real stages; the plugin polls job states)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from braggflow.config import load_schema

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
PY = sys.executable
VENV_BIN = str(Path(sys.executable).parent)

# ---------------------------------------------------------------------------- what is covered
# The embedded experiment, sized down as in the local end-to-end test (tests/data/tiny.yaml):
# every stage runs, each rule as its own SLURM job (about 25 jobs, a few minutes on 2 cores).
# One student (the smallest) keeps the GPU jobs, which share the node's one (fake) GPU, few.
TINY = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())
DEFAULT_STUDENTS = load_schema()["properties"]["distill"]["properties"]["students"]["default"]
TEST_CONFIG = {
    **TINY,
    "experiment": "slurmtest",
    "distill": {
        **TINY["distill"],
        "students": [s for s in DEFAULT_STUDENTS if s["name"] == "student_atto_b2"],
    },
}

# Rules Snakemake runs on the submitting host (localrules), never as SLURM jobs.
LOCAL_RULES = {"report_config", "report_versions"}

# A config change and the rules that must rerun; None = every rule of the run. report_config
# records the whole config, so it reruns on any change.
CONFIG_CHANGES = [
    ({"report": {"activation_frames": 3}}, {"activation_maps", "report_config"}),
    (
        {"evaluate": {"min_peaks_for_hit": 12}},
        {"evaluate_run", "evaluate_summary", "report_config"},
    ),
    ({"simulate": {"blank_fraction": 0.3}}, None),  # everything depends on the frames
]

# The profile's site settings, sized for a 2-CPU node without accounting database.
PROFILE_ENV = {
    "BRAGGFLOW_SLURM_STATUS_COMMAND": "squeue",
    "BRAGGFLOW_SLURM_INIT_SECONDS": "1",
    "BRAGGFLOW_SLURM_CPUS": "1",  # 1-CPU jobs share the 2-CPU node
    "BRAGGFLOW_SLURM_MPI_TASKS": "2",
    "BRAGGFLOW_SLURM_MEM_MB": "2000",
    "BRAGGFLOW_SLURM_GPU_MEM_MB": "4000",
    "BRAGGFLOW_SLURM_GPU_CPUS": "1",  # a GPU job leaves the other core to CPU jobs
}


# ---------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(PROFILE_ENV)
    return env


def _sh(*cmd, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=_env(), **kw
    )


def snakemake_cmd(workdir: Path, snakefile: Path, *args: str, configfile: Path | None = None):
    # targets (in args) before the options: --configfile takes several values
    cmd = [PY, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir), *args]
    cmd += ["--profile", str(REPO / "profiles" / "slurm")]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return cmd


def run_snakemake(workdir, snakefile, *args, configfile=None, timeout=420):
    return _sh(*snakemake_cmd(workdir, snakefile, *args, configfile=configfile), timeout=timeout)


def run_uuid(output: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", output)
    assert m, f"no SLURM run ID in the snakemake output:\n{output[-3000:]}"
    return m.group(1)


def slurm_jobs(uuid: str) -> list[dict[str, str]]:
    """Jobs of one snakemake run (job name = run ID), from squeue (finished ones included)."""
    out = _sh("squeue", "--states=all", "-h", "--name", uuid, "-o", "%i|%P|%T|%k")
    assert out.returncode == 0, out.stderr
    jobs = []
    for line in out.stdout.splitlines():
        job_id, partition, state, comment = line.split("|", 3)
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        jobs.append({"id": job_id, "partition": partition, "state": state, "rule": rule})
    return jobs


def dry_run_rules(output: str) -> dict[str, int]:
    """rule -> job count from a dry run's "Job stats" table ({} when nothing is to be done)."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)
    return {rule: int(n) for rule, n in rows if rule != "all"}


def profile_partition(rule: str) -> str:
    import yte

    with open(REPO / "profiles" / "slurm" / "config.yaml") as fh:
        old = {k: os.environ.get(k) for k in PROFILE_ENV}
        os.environ.update(PROFILE_ENV)
        try:
            profile = yte.process_yaml(fh, require_use_yte=True)
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    res = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
    return res["slurm_partition"]


def workflow_rules() -> dict[str, str]:
    rules: dict[str, str] = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^rule (\w+):", text, re.M)]
        for i, (pos, name) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            rules[name] = text[pos:end]
    return rules


GPU_RULES = {n for n, block in workflow_rules().items() if re.search(r"\bgpu\s*=", block)}


# ---------------------------------------------------------------------------- the cluster


def _slurm_installed() -> bool:
    need = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "salloc")
    return all(shutil.which(c) or Path("/usr/sbin", c).exists() for c in need)


@pytest.fixture(scope="module")
def slurm_cluster():
    """The project's single-node cluster; started here (and stopped after) unless already up."""
    if not _slurm_installed():
        pytest.skip(
            "SLURM test cluster needs the Debian packages slurmctld slurmd slurm-client munge "
            "(scripts/install-system-deps.sh)"
        )
    was_up = _sh("bash", SCRIPT, "status").returncode == 0
    start = _sh("bash", SCRIPT, "start", timeout=120)
    if start.returncode == 2:
        pytest.skip(f"SLURM test cluster unavailable: {start.stderr.strip()}")
    assert start.returncode == 0, start.stdout + start.stderr
    yield
    if not was_up:
        _sh("bash", SCRIPT, "stop", timeout=60)


# ---------------------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def workflow_run(slurm_cluster, tmp_path_factory):
    """The tiny embedded experiment, every stage, run once through the SLURM profile."""
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    configfile = workdir / "test.yaml"
    configfile.write_text(yaml.safe_dump(TEST_CONFIG))
    root = f"results/{TEST_CONFIG['experiment']}"
    targets = [f"{root}/evaluate/summary.tsv", f"{root}/report/performance.tsv"]
    t0 = time.monotonic()
    out = run_snakemake(workdir, REPO / "Snakefile", configfile=configfile, timeout=900)
    return {
        "workdir": workdir,
        "configfile": configfile,
        "targets": targets,
        "result": out,
        "log": out.stdout + out.stderr,
        "seconds": time.monotonic() - t0,
    }


def test_workflow_completes_on_slurm(workflow_run):
    out = workflow_run["result"]
    assert out.returncode == 0, workflow_run["log"][-5000:]
    for target in workflow_run["targets"]:
        assert (workflow_run["workdir"] / target).stat().st_size > 0, target
    # jobs went through sbatch, and their SLURM logs are kept
    assert "has been submitted with SLURM jobid" in workflow_run["log"]
    assert list((workflow_run["workdir"] / ".snakemake" / "slurm_logs").rglob("*.log"))


def test_workflow_jobs_ran_on_their_partitions(workflow_run):
    jobs = slurm_jobs(run_uuid(workflow_run["log"]))
    assert jobs, "squeue shows no job of this run"
    for job in jobs:
        assert job["state"] == "COMPLETED", job
        assert job["partition"] == profile_partition(job["rule"]), job
    ran = {job["rule"] for job in jobs}
    assert ran == set(workflow_rules()) - LOCAL_RULES  # every stage, each rule as SLURM jobs
    on_gpu = {job["rule"] for job in jobs if job["partition"] == "gpu"}
    assert on_gpu == GPU_RULES and {"train_teacher", "distill", "infer"} <= on_gpu


def test_workflow_summary_from_the_slurm_run(workflow_run):
    summary = workflow_run["workdir"] / workflow_run["targets"][0]
    header, *rows = summary.read_text().splitlines()
    methods = {row.split("\t")[0] for row in rows}
    assert methods == {"peakfinder8", "teacher", "student_atto_b2"}
    assert "index_yield" in header.split("\t")


@pytest.mark.parametrize("change, expected", CONFIG_CHANGES, ids=lambda v: str(v)[:40])
def test_config_change_reruns_only_dependents(workflow_run, change, expected):
    assert workflow_run["result"].returncode == 0
    workdir = workflow_run["workdir"]
    cfg = yaml.safe_load(workflow_run["configfile"].read_text())
    for section, values in change.items():
        cfg.setdefault(section, {}).update(values)
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    out = run_snakemake(workdir, REPO / "Snakefile", "-n", configfile=changed)
    assert out.returncode == 0, out.stderr[-3000:]
    if expected is None:  # every rule of the run: the SLURM jobs and the config record
        expected = {job["rule"] for job in slurm_jobs(run_uuid(workflow_run["log"]))}
        expected |= {"report_config"}
    assert set(dry_run_rules(out.stdout + out.stderr)) == expected


def test_report_builds_from_the_slurm_run(workflow_run):
    assert workflow_run["result"].returncode == 0
    report = workflow_run["workdir"] / "report.html"
    out = run_snakemake(
        workflow_run["workdir"],
        REPO / "Snakefile",
        "--report",
        str(report),
        configfile=workflow_run["configfile"],
        timeout=300,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    html = report.read_text(errors="replace")
    assert len(html) > 10_000
    for rule in ("simulate_run", "train_teacher", "distill", "evaluate_summary"):
        assert rule in html, rule


# ---------------------------------------------------------------------------- GPU rules, scancel

# Rules of a stand-in workflow with the real rule names (so the profile's mapping applies): the
# GPU rules and the MPI rule, with trivial jobs so a cancellation can be timed. Every rule's
# mapping is also checked without a cluster in tests/test_slurm_profile.py.
STUB_RULES = sorted(GPU_RULES | {"find_peaks"})

RANKS_PY = (
    "import os\n"
    "from mpi4py import MPI\n"
    "c = MPI.COMM_WORLD\n"
    "os.write(1, f'rank {c.rank} of {c.size}\\n'.encode())\n"
)


def stub_workflow(rules) -> str:
    """The given rule names with trivial jobs: each records where it ran. find_peaks runs its
    MPI ranks through braggflow-launch (resources.mpi -> the launcher's srun); distill waits for
    train_teacher, whose first attempt blocks until the test cancels it."""
    record = (
        "echo rule={rule} partition=${{SLURM_JOB_PARTITION:-unset}}"
        " gpus=${{CUDA_VISIBLE_DEVICES:-none}} >> {output}"
    )
    parts = []
    for name in rules:
        inputs = "out/train_teacher.txt" if name == "distill" else None
        cmd = record.replace("{rule}", name)
        if name == "find_peaks":
            cmd = (
                f"braggflow-launch mpi -n {{resources.tasks}} -- {PY} ranks.py > {{output}}; {cmd}"
            )
        if name == "train_teacher":
            cmd = f"if [ ! -e attempted ]; then touch attempted; sleep 600; fi; {cmd}"
        parts.append(
            f"rule {name}:\n"
            + (f"    input: {inputs!r}\n" if inputs else "")
            + f"    output: 'out/{name}.txt'\n"
            + f"    log: 'logs/{name}.log'\n"
            + f"    shell: {cmd!r}\n"
        )
    head = "rule all:\n    input: " + ", ".join(f"'out/{n}.txt'" for n in rules) + "\n"
    return head + "\n" + "\n".join(parts)


def _wait_running(log: Path, rule: str, started: Path, timeout: float) -> str:
    """The SLURM job id of ``rule`` once its command runs (it creates ``started``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.exists():
            out = _sh("squeue", "-h", "-o", "%i|%T|%k|%j")
            for line in out.stdout.splitlines():
                job_id, state, comment, name = line.split("|", 3)
                if comment == f"rule_{rule}" and state == "RUNNING" and name in log.read_text():
                    return job_id
        time.sleep(1)
    raise AssertionError(f"{rule} did not start running within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, log: Path) -> None:
    """Stop a snakemake run left behind by a failed test, and its SLURM jobs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # snakemake cancels its jobs
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    m = re.search(r"SLURM run ID: (\S+)", log.read_text())
    if m:
        _sh("scancel", "--name", m.group(1))


def test_gpu_rules_on_gpu_scancel_reported_and_resumed(slurm_cluster, tmp_path):
    assert {"train_teacher", "distill"} <= set(STUB_RULES)
    (tmp_path / "Snakefile").write_text(stub_workflow(STUB_RULES))
    (tmp_path / "ranks.py").write_text(RANKS_PY)
    log1 = tmp_path / "run1.log"
    with open(log1, "w") as fh:
        proc = subprocess.Popen(
            snakemake_cmd(tmp_path, tmp_path / "Snakefile"),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=_env(),
            text=True,
        )
        try:
            job_id = _wait_running(log1, "train_teacher", tmp_path / "attempted", timeout=300)
            assert _sh("scancel", job_id).returncode == 0
            proc.wait(timeout=300)
        finally:
            _stop(proc, log1)
    first = log1.read_text()
    assert proc.returncode != 0
    assert "Error in rule train_teacher" in first
    assert f"SLURM-job '{job_id}' failed" in first and "CANCELLED" in first
    done = {p.stem for p in (tmp_path / "out").glob("*.txt")}
    assert done == set(STUB_RULES) - {"train_teacher", "distill"}  # keep-going ran the rest

    todo = run_snakemake(tmp_path, tmp_path / "Snakefile", "-n")
    assert set(dry_run_rules(todo.stdout + todo.stderr)) == {"train_teacher", "distill"}
    second = run_snakemake(tmp_path, tmp_path / "Snakefile")
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]

    jobs = slurm_jobs(run_uuid(first)) + slurm_jobs(run_uuid(second.stdout + second.stderr))
    completed = {j["rule"]: j for j in jobs if j["state"] == "COMPLETED"}
    assert set(completed) == set(STUB_RULES)
    for rule, job in completed.items():
        assert job["partition"] == profile_partition(rule), job
    assert {completed[r]["partition"] for r in GPU_RULES} == {"gpu"}
    assert {completed[r]["partition"] for r in set(STUB_RULES) - GPU_RULES} == {"cpu"}
    for rule in GPU_RULES:  # the job step got the (fake) GPU
        assert "gpus=0" in (tmp_path / "out" / f"{rule}.txt").read_text(), rule
    ranks = (tmp_path / "out" / "find_peaks.txt").read_text()
    assert "rank 0 of 2" in ranks and "rank 1 of 2" in ranks


# ---------------------------------------------------------------------------- launchers

RAY_DRIVER = r"""
import json, os, sys
import numpy as np
import ray

ray.init()
nodes = [n for n in ray.nodes() if n["Alive"]]

def fit_batch(seed):
    try:
        from braggflow.fitting.fit import fit_windows
        from braggflow.fitting.synthetic import make_windows, random_params
        from braggflow.fitting.windows import FitSettings
    except ImportError:  # braggflow.fitting not there yet: a trivial batch
        return {"kind": "trivial", "n": 1, "accepted": 1, "amp_err": 0.0}
    rng = np.random.default_rng(seed)
    truth = random_params(24, rng, amplitude=(80.0, 200.0))
    win, _ = make_windows(truth, rng)
    table = fit_windows(win, FitSettings())
    ok = table["accepted"]
    from braggflow.fitting.model import I_AMP
    err = np.abs(table["amplitude"][ok] / truth[ok, I_AMP] - 1.0)
    return {"kind": "fit", "n": len(ok), "accepted": int(ok.sum()), "amp_err": float(np.median(err))}

@ray.remote(num_cpus=1)
def task(seed):
    return ray.get_runtime_context().get_node_id(), fit_batch(seed)

results = ray.get([task.remote(s) for s in range(2)])
print("RESULT " + json.dumps({
    "address": os.environ.get("RAY_ADDRESS"),
    "nodes": len(nodes),
    "task_nodes": len({node for node, _ in results}),
    "batches": [b for _, b in results],
}), flush=True)
sys.exit(3)  # a failing driver: the launcher must still tear the cluster down
"""

TORCH_RANK = (
    "import os\n"
    "import torch, torch.distributed as dist\n"
    "dist.init_process_group('gloo')\n"
    "t = torch.ones(1) * (dist.get_rank() + 1)\n"
    "dist.all_reduce(t)\n"
    "os.write(1, f'rank {dist.get_rank()} of {dist.get_world_size()} sum {int(t.item())}\\n'.encode())\n"
    "dist.destroy_process_group()\n"
)


def salloc(*cmd: str, tasks: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    return _sh(
        "salloc",
        f"--ntasks={tasks}",
        "--cpus-per-task=1",
        "--mem=6000",
        "--partition=cpu",
        "--time=10",
        *cmd,
        timeout=timeout,
    )


def test_ray_cluster_in_a_two_task_allocation_runs_a_fitting_batch(slurm_cluster, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(RAY_DRIVER)
    out = salloc(PY, "-m", "braggflow.launch", "ray", "--", PY, str(driver))
    log = out.stdout + out.stderr
    assert out.returncode == 3, log[-4000:]  # the driver's own exit status comes back
    result = json.loads(log.split("RESULT ", 1)[1].splitlines()[0])
    assert result["nodes"] == 2 and result["task_nodes"] == 2, result
    assert result["address"] and ":" in result["address"]
    for batch in result["batches"]:
        assert batch["accepted"] >= 0.8 * batch["n"], batch
        assert batch["amp_err"] < 0.15, batch
    # torn down: no process of this Ray cluster is left, its temporary folder is gone
    tmpdir = re.search(r"RAY_TMPDIR=(\S+)", log).group(1)
    time.sleep(2)
    left = _sh("pgrep", "-f", tmpdir)
    assert left.stdout.strip() == "", f"Ray processes left behind: {left.stdout}"
    assert not Path(tmpdir).exists()


def test_torchrun_under_srun_runs_two_ranks(slurm_cluster, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(TORCH_RANK)
    cmd = [PY, "-m", "braggflow.launch", "torchrun", "--nproc-per-node", "1", "--", PY]
    out = salloc(*cmd, str(script))
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    ranks = sorted(line for line in out.stdout.splitlines() if line.startswith("rank"))
    assert ranks == ["rank 0 of 2 sum 3", "rank 1 of 2 sum 3"]


def test_mpi_through_srun_in_an_allocation(slurm_cluster, tmp_path):
    (tmp_path / "ranks.py").write_text(RANKS_PY)
    out = salloc(
        PY, "-m", "braggflow.launch", "mpi", "-n", "2", "--", PY, str(tmp_path / "ranks.py")
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert sorted(out.stdout.splitlines()) == ["rank 0 of 2", "rank 1 of 2"]
