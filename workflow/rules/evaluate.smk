# Stage 9: hit rate, indexing rate, indexing yield per method (section 3.1, Table 1, Fig 6).


rule evaluate_run:
    input:
        peaks=f"{R}/peaks/{{method}}/{{run}}.cxi",
        stream=f"{R}/index/{{method}}/{{run}}.stream",
        truth=lambda w: f"{R}/data/{w.run}.truth.h5" if SIMULATED else [],
        cell=cell_file,
        geometry=geometry_file,
    output:
        metrics=f"{R}/evaluate/{{method}}/{{run}}.json",
    log:
        f"{LOGS}/evaluate/{{method}}/{{run}}.log",
    conda:
        "../../envs/braggflow.yaml"
    params:
        cfg=section("evaluate"),
        truth=lambda w, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "braggflow evaluate run --params {params.cfg:q} --method {wildcards.method}"
        " --peaks {input.peaks} --stream {input.stream} {params.truth} --cell {input.cell}"
        " --geometry {input.geometry} --out {output.metrics} 2> {log}"


rule evaluate_summary:
    input:
        metrics=expand(
            f"{R}/evaluate/{{method}}/{{run}}.json",
            method=methods(),
            run=config["evaluate"]["runs"],
        ),
    output:
        summary=report(
            f"{R}/evaluate/summary.tsv",
            category="9. Evaluation",
            caption="../report/summary.rst",
        ),
        cells=report(
            f"{R}/evaluate/cell_histograms.png",
            category="9. Evaluation",
            caption="../report/cells.rst",
        ),
    log:
        f"{LOGS}/evaluate/summary.log",
    conda:
        "../../envs/braggflow.yaml"
    params:
        cfg=section("evaluate"),
    shell:
        "braggflow evaluate summary --params {params.cfg:q} --metrics {input.metrics}"
        " --out {output.summary} --plot-cells {output.cells} 2> {log}"
