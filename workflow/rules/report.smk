# Stage 10: provenance items and figures for the Snakemake report (`snakemake --report`).


localrules:
    report_config,
    report_versions,


rule report_config:
    output:
        config=report(
            f"{R}/report/config.yaml",
            category="0. Provenance",
            caption="../report/config.rst",
        ),
    log:
        f"{LOGS}/report/config.log",
    conda:
        "../../envs/braggflow.yaml"
    params:
        config=json.dumps(config, sort_keys=True),
    shell:
        "braggflow report config --config-json {params.config:q} --out {output.config} 2> {log}"


rule report_versions:
    output:
        versions=report(
            f"{R}/report/versions.tsv",
            category="0. Provenance",
            caption="../report/versions.rst",
        ),
    log:
        f"{LOGS}/report/versions.log",
    conda:
        "../../envs/braggflow.yaml"
    shell:
        "braggflow report versions --out {output.versions} 2> {log}"


rule performance_table:
    input:
        infer=expand(
            f"{R}/infer/{{model}}/{{run}}.metrics.json",
            model=["teacher", *student_names()],
            run=config["evaluate"]["runs"],
        ),
        benchmarks=benchmark_results(),
    output:
        table=report(
            f"{R}/report/performance.tsv",
            category="10. Performance",
            caption="../report/performance.rst",
        ),
    log:
        f"{LOGS}/report/performance.log",
    conda:
        "../../envs/braggflow.yaml"
    shell:
        "braggflow report performance --infer-metrics {input.infer}"
        " --benchmarks {input.benchmarks} --out {output.table} 2> {log}"


rule activation_maps:
    input:
        models=expand(f"{R}/models/{{model}}.pt", model=["teacher", *student_names()]),
        frames=lambda w: frames_path(config["evaluate"]["runs"][0]),
        geometry=geometry_file,
    output:
        figure=report(
            f"{R}/report/activation_maps.png",
            category="8. Inference",
            caption="../report/activation_maps.rst",
        ),
    log:
        f"{LOGS}/report/activation_maps.log",
    conda:
        "../../envs/torch.yaml"
    params:
        n_frames=config["report"].get("activation_frames", 2),
    shell:
        "braggflow report activations --models {input.models} --frames {input.frames}"
        " --geometry {input.geometry} --n-frames {params.n_frames} --out {output.figure} 2> {log}"
