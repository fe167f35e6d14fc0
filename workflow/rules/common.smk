# Config validation and the file layout shared by every rule (DESIGN.md "Data contracts").
# Logic lives in src/braggflow; this file only names paths.
import glob
import json

from braggflow.config import student_section, validate_config

validate_config(config)

R = f"{config['results_dir']}/{config['experiment']}"
LOGS = f"logs/{config['experiment']}"
SIMULATED = config["source"]["kind"] == "simulate"

# Stages whose commands exist; rule all asks for their outputs (later issues append).
IMPLEMENTED = {
    "simulate",
    "find_peaks",
    "index",
    "peakdiff",
    "fit_labels",
    "train",
    "distill",
    "infer",
    "evaluate",
    "report",
}


def all_runs():
    if SIMULATED:
        return list(config["simulate"]["runs"])
    return list(config["source"]["runs"])


def frames_path(run):
    return f"{R}/data/{run}.cxi" if SIMULATED else config["source"]["runs"][run]


def frames_file(wildcards):
    return frames_path(wildcards.run)


def geometry_file(wildcards=None):
    return f"{R}/data/detector.geom" if SIMULATED else config["source"]["geometry"]


def cell_file(wildcards=None):
    return f"{R}/data/crystal.cell" if SIMULATED else config["source"]["cell"]


def section(name):
    """A config section as JSON, passed to the CLI with --params (reruns the rule when it changes)."""
    return json.dumps(config[name], sort_keys=True)


def student_names():
    return [s["name"] for s in config["distill"].get("students", [])]


def distill_section(wildcards):
    """The distill section with only this student: editing one student reruns only that one."""
    return student_section(config["distill"], wildcards.student)


def alternation(names):
    """A wildcard regex matching exactly these names (never matching when empty)."""
    return "|".join(names) if names else "(?!x)x"


def methods():
    """Peak finders compared by evaluation: the peakfinder8 baseline, the teacher, each student."""
    return ["peakfinder8", "teacher", *student_names()]


wildcard_constraints:
    student=alternation(student_names()),
    model=alternation(["teacher", *student_names()]),
    method=alternation(methods()),
    run="[A-Za-z0-9_-]+",


def benchmark_results():
    """Benchmark JSON files present (optional inputs of the performance table)."""
    return sorted(glob.glob("benchmarks/results/*.json"))


def all_targets():
    targets = []
    if "simulate" in IMPLEMENTED and SIMULATED:
        targets += expand(f"{R}/data/{{run}}.cxi", run=all_runs())
    if "find_peaks" in IMPLEMENTED:
        targets += expand(f"{R}/peaks/peakfinder8/{{run}}.cxi", run=all_runs())
    if "index" in IMPLEMENTED:
        targets += expand(
            f"{R}/index/peakfinder8/{{run}}.stream", run=config["data_engine"]["runs"]
        )
    if "peakdiff" in IMPLEMENTED:
        targets += expand(
            f"{R}/peakdiff/{{run}}.tsv", run=config["data_engine"]["runs"]
        )
    if "fit_labels" in IMPLEMENTED:
        targets.append(f"{R}/labels/trainset.h5")
    if "train" in IMPLEMENTED:
        targets.append(f"{R}/models/teacher.pt")
    if "distill" in IMPLEMENTED:
        targets += expand(f"{R}/models/{{student}}.pt", student=student_names())
    if "infer" in IMPLEMENTED:
        targets += expand(
            f"{R}/peaks/{{model}}/{{run}}.cxi",
            model=["teacher", *student_names()],
            run=config["evaluate"]["runs"],
        )
    if "evaluate" in IMPLEMENTED:
        targets.append(f"{R}/evaluate/summary.tsv")
    if "report" in IMPLEMENTED:
        targets += [f"{R}/report/{name}" for name in ("config.yaml", "versions.tsv")]
    if "report" in IMPLEMENTED and "infer" in IMPLEMENTED:
        targets += [f"{R}/report/performance.tsv", f"{R}/report/activation_maps.png"]
    return targets
