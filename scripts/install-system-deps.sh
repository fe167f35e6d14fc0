#!/usr/bin/env bash
# Debian packages the tests and the report need (SLURM + munge for the profile tests, graphviz for
# the DAG). Idempotent: installs only what is missing. Skipped where apt-get is unavailable.
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client munge graphviz)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; install ${missing[*]} yourself (SLURM tests will skip)" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
