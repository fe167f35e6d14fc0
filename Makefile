# The two README commands: `make demo` (the whole workflow on the embedded experiment) and
# `make test` (the test suite). Both install what they need and are safe to run twice.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
CORES ?= 2
export PATH := $(CURDIR)/.venv/bin:$(HOME)/.local/bin:$(PATH)

.PHONY: demo test lint setup system-deps report clean help slurm-profile

help:
	@echo "make demo   - install, then run the whole workflow on the embedded experiment (results/demo/)"
	@echo "make test   - install, then run lint and the full test suite"

$(UV):
	python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

setup: $(UV)
	$(UV) sync --frozen --quiet

system-deps:
	@bash scripts/install-system-deps.sh

demo: setup
	$(UV) run snakemake --cores $(CORES)
	@echo "demo finished: results in results/demo/ (accuracy figures: results/demo/**/*.json, evaluate/summary.tsv)"

report: setup
	$(UV) run snakemake --cores $(CORES) --report results/demo/report.html

lint: setup
	$(UV) run ruff check src tests benchmarks
	$(UV) run ruff format --check src tests benchmarks
	$(UV) run snakefmt --check Snakefile workflow/rules
	$(UV) run snakemake --lint --cores 1

test: setup system-deps lint
	$(UV) run pytest -q --durations=15

# `snakemake --profile slurm` from anywhere: link the profile into ~/.config/snakemake (docs/cluster.md)
slurm-profile:
	@mkdir -p $(HOME)/.config/snakemake
	@if [ -e $(HOME)/.config/snakemake/slurm ] && [ "$$(readlink $(HOME)/.config/snakemake/slurm)" != "$(CURDIR)/profiles/slurm" ]; then \
		echo "$(HOME)/.config/snakemake/slurm exists and is not a link to this repository's profile; not replacing it" >&2; exit 1; fi
	@ln -sfn $(CURDIR)/profiles/slurm $(HOME)/.config/snakemake/slurm
	@echo "snakemake --profile slurm now uses $(CURDIR)/profiles/slurm"

clean:
	rm -rf results/demo logs/demo .snakemake
