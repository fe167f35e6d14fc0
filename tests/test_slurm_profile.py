"""The SLURM profiles map every workflow rule: CPU stages to a CPU partition (or constraint),
GPU stages to a GPU one with a GPU request, MPI and multi-node launchers with tasks/nodes.

Fast checks on the rendered profiles (yte templates), no cluster needed; the real cluster runs
are in tests/test_slurm_cluster.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yte

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("slurm", "s3df", "perlmutter")


def render(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    for key in [k for k in os.environ if k.startswith("BRAGGFLOW_SLURM_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(f"BRAGGFLOW_SLURM_{key}", value)
    with open(REPO / "profiles" / name / "config.yaml") as fh:
        return yte.process_yaml(fh, require_use_yte=True)


def workflow_rules() -> dict[str, str]:
    """rule name -> its block of text, from workflow/rules/*.smk."""
    rules: dict[str, str] = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^rule (\w+):", text, re.M)]
        for i, (pos, name) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            rules[name] = text[pos:end]
    return rules


def gpu_rules() -> set[str]:
    return {name for name, block in workflow_rules().items() if re.search(r"\bgpu\s*=", block)}


def test_the_workflow_has_gpu_and_mpi_rules():
    rules = workflow_rules()
    assert {"train_teacher", "cache_teacher", "distill", "infer"} <= gpu_rules()
    assert "braggflow-launch mpi" in rules["find_peaks"]


@pytest.mark.parametrize("name", PROFILES)
def test_every_rule_is_mapped(name, monkeypatch):
    profile = render(name, monkeypatch)
    mapped = set(profile["set-resources"])
    rules = set(workflow_rules())
    assert rules - mapped == set(), (
        f"profiles/{name}: add these rules to set-resources (CPU or GPU partition)"
    )
    assert mapped - rules == set(), f"profiles/{name}: set-resources names unknown rules"


@pytest.mark.parametrize("name", PROFILES)
def test_gpu_rules_on_gpu_nodes_cpu_rules_not(name, monkeypatch):
    profile = render(name, monkeypatch)
    res = profile["set-resources"]

    def where(rule: str) -> str:
        r = {**profile["default-resources"], **res[rule]}
        return str(r.get("slurm_partition") or r.get("constraint"))

    gpu_places = {where(r) for r in gpu_rules()}
    cpu_places = {where(r) for r in set(res) - gpu_rules()}
    assert len(gpu_places) == 1 and len(cpu_places) == 1
    assert gpu_places.isdisjoint(cpu_places)
    for rule in gpu_rules():
        assert int(res[rule].get("gpu", 0)) >= 1 or "gpu" in res[rule].get("gres", ""), rule
    for rule in set(res) - gpu_rules():
        assert not res[rule].get("gpu") and "gres" not in res[rule], rule


def test_generic_profile_site_settings_in_one_place(monkeypatch):
    default = render("slurm", monkeypatch)
    assert default["executor"] == "slurm"
    assert default["default-resources"]["slurm_partition"] == "cpu"
    assert default["set-resources"]["train_teacher"]["slurm_partition"] == "gpu"
    assert default["slurm-no-account"] is True
    assert "slurm_account" not in default["default-resources"]
    site = render(
        "slurm",
        monkeypatch,
        CPU_PARTITION="milano",
        GPU_PARTITION="ampere",
        ACCOUNT="lcls:xpp1234",
        QOS="preemptable",
    )
    assert site["default-resources"]["slurm_account"] == "lcls:xpp1234"
    assert site["slurm-qos"] == "preemptable" and "slurm-no-account" not in site
    places = {r.get("slurm_partition") for r in site["set-resources"].values()}
    assert places == {"milano", "ampere"}


@pytest.mark.parametrize("name", PROFILES)
def test_mpi_and_multinode_launchers(name, monkeypatch):
    one = render(name, monkeypatch)["set-resources"]
    fp = one["find_peaks"]
    assert fp["mpi"] == "srun" and int(fp["tasks"]) >= 2 and fp["cpus_per_task"] == 1
    # single node: no `mpi` (the jobstep's srun holds the node, the launcher overlaps it)
    assert one["fit_labels"]["nodes"] == 1 and "mpi" not in one["fit_labels"]
    assert "mpi" not in one["train_teacher"]
    many = render(name, monkeypatch, RAY_NODES="3", GPU_NODES="2", GPUS="4")["set-resources"]
    fl, tt = many["fit_labels"], many["train_teacher"]
    assert fl["nodes"] == 3 and fl["tasks"] == 3 and fl["mpi"] == "srun"
    assert "--ntasks-per-node=1" in fl["slurm_extra"]
    assert tt["nodes"] == 2 and tt["tasks"] == 2 and tt["gres"] == "gpu:4"
    assert tt["gpu"] == 0 and tt["tasks_per_gpu"] == 0  # no --gpus / --ntasks-per-gpu


def test_site_examples_name_their_documented_resources(monkeypatch):
    s3df = render("s3df", monkeypatch)
    places = {r.get("slurm_partition") for r in s3df["set-resources"].values()}
    assert places == {"milano", "ampere"}
    assert ":" in s3df["default-resources"]["slurm_account"]  # <facility>:<repo>
    text = (REPO / "profiles" / "s3df" / "config.yaml").read_text()
    assert "s3df.slac.stanford.edu" in text and "turing" in text and "roma" in text
    nersc = render("perlmutter", monkeypatch)
    res = nersc["set-resources"]
    assert {res[r]["constraint"] for r in gpu_rules()} == {"gpu"}
    assert {res[r]["qos"] for r in res} <= {"regular", "shared"}
    assert "docs.nersc.gov/jobs/policy" in (REPO / "profiles/perlmutter/config.yaml").read_text()


@pytest.mark.slow
def test_profile_by_name_after_the_readme_set_up(tmp_path):
    """`snakemake --profile slurm` finds the profile linked into the user's config folder."""
    xdg = tmp_path / "config"
    (xdg / "snakemake").mkdir(parents=True)
    # what `make slurm-profile` does (docs/cluster.md)
    (xdg / "snakemake" / "slurm").symlink_to(REPO / "profiles" / "slurm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "BRAGGFLOW_"))}
    env.update(XDG_CONFIG_HOME=str(xdg), BRAGGFLOW_SLURM_STATUS_COMMAND="squeue")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-F"]
        + ["results/demo/data/detector.geom"],
        cwd=REPO,  # as a user types it, in the repository
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "Using profiles slurm" in out.stderr
    assert "slurm_partition=cpu" in out.stdout  # the profile's resources reached the job
    # without the link the name does not resolve
    (xdg / "snakemake" / "slurm").unlink()
    missing = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0 and "profile" in missing.stderr.lower()
