# Stage 10: figures and the performance table for the Snakemake report.


rule performance_table:
    input:
        summary=f"{R}/evaluate/summary.tsv",
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
    params:
        cfg=section("report"),
        results=R,
    shell:
        "braggflow report performance --params {params.cfg:q} --results {params.results}"
        " --benchmarks benchmarks/results --out {output.table} 2> {log}"
