# Stage 3: PeakDiff - found vs predicted peaks, frame selection (section 2.1.1, Figs 2-3).


rule peakdiff:
    input:
        peaks=f"{R}/peaks/peakfinder8/{{run}}.cxi",
        stream=f"{R}/index/peakfinder8/{{run}}.stream",
        frames=frames_file,
        geometry=geometry_file,
    output:
        selection=f"{R}/peakdiff/{{run}}.tsv",
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
    params:
        cfg=section("peakdiff"),
    conda:
        "../../envs/braggflow.yaml"
    shell:
        "braggflow peakdiff --params {params.cfg:q} --peaks {input.peaks} --stream {input.stream}"
        " --frames {input.frames} --geometry {input.geometry} --out {output.selection}"
        " --plot-counts {output.counts} --plot-scatter {output.scatter}"
        " --plot-overlay {output.overlay} 2> {log}"
