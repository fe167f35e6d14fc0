# braggflow: XFEL diffraction frames -> a deployed neural Bragg-peak finder.
# Stages and data contracts: ../shared/DESIGN.md and README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/find_peaks.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/peakdiff.smk"
include: "workflow/rules/fit_labels.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
