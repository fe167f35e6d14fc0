# Stage 3: PeakDiff - found vs predicted peaks, frame selection (section 2.1.1, Figs 2-3).


rule peakdiff:
    input:
        peaks=f"{R}/peaks/peakfinder8/{{run}}.cxi",
        stream=f"{R}/index/peakfinder8/{{run}}.stream",
        frames=frames_file,
        geometry=geometry_file,
        truth=lambda w: f"{R}/data/{w.run}.truth.h5" if SIMULATED else [],
    output:
        selection=f"{R}/peakdiff/{{run}}.tsv",
        summary=f"{R}/peakdiff/{{run}}.json",
        counts=report(
            f"{R}/peakdiff/{{run}}_counts.png",
            category="3. PeakDiff",
            caption="../report/peakdiff_counts.rst",
        ),
        scatter=report(
            f"{R}/peakdiff/{{run}}_precision_recall.png",
            category="3. PeakDiff",
            caption="../report/peakdiff_scatter.rst",
        ),
        overlay=report(
            f"{R}/peakdiff/{{run}}_overlay.png",
            category="3. PeakDiff",
            caption="../report/peakdiff_overlay.rst",
        ),
    log:
        f"{LOGS}/peakdiff/{{run}}.log",
    conda:
        "../../envs/braggflow.yaml"
    params:
        cfg=section("peakdiff"),
        truth=lambda w, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "braggflow peakdiff --params {params.cfg:q} --peaks {input.peaks} --stream {input.stream}"
        " --frames {input.frames} --geometry {input.geometry} --out {output.selection}"
        " --summary {output.summary} {params.truth}"
        " --plot-counts {output.counts} --plot-scatter {output.scatter}"
        " --plot-overlay {output.overlay} 2> {log}"
