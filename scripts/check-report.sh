#!/usr/bin/env bash
# Documented check of the provenance report in a real browser (issue 8): build the Snakemake report
# of a finished run, render it in headless Chromium, save a screenshot and list which of the run's
# figures and tables the rendered page names.
#   bash scripts/check-report.sh [results/demo] [out-dir]     (needs Debian's chromium)
set -euo pipefail
root=${1:-results/demo}
out=${2:-$root/report-check}
mkdir -p "$out"
uv run snakemake --cores 1 --report "$root/report.html" >/dev/null 2>&1
browser=$(command -v chromium || command -v chromium-browser)
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$(mktemp -d)" --virtual-time-budget=15000)
"$browser" "${flags[@]}" --window-size=1400,1000 --screenshot="$out/report.png" \
  "file://$(realpath "$root/report.html")" >/dev/null 2>&1
"$browser" "${flags[@]}" --dump-dom "file://$(realpath "$root/report.html")" >"$out/report.dom.html" 2>/dev/null
missing=0
for f in $(cd "$root" && ls evaluate/*.tsv evaluate/*.png peakdiff/*.png models/teacher/*.png report/*.png report/*.tsv report/*.yaml 2>/dev/null); do
  name=$(basename "$f")
  if grep -q "$name" "$root/report.html"; then echo "present: $f"; else echo "MISSING: $f"; missing=1; fi
done
echo "screenshot: $out/report.png"
exit $missing
