# Stage 8: Ray producer-consumer inference -> CrystFEL-compatible CXI peak lists (2.2.3.2, 3.4).


rule infer:
    input:
        model=f"{R}/models/{{model}}.pt",
        frames=frames_file,
        geometry=geometry_file,
    output:
        peaks=f"{R}/peaks/{{model}}/{{run}}.cxi",
        metrics=f"{R}/infer/{{model}}/{{run}}.metrics.json",
    log:
        f"{LOGS}/infer/{{model}}/{{run}}.log",
    params:
        cfg=section("infer"),
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/ray.yaml"
    shell:
        "braggflow-launch ray -- braggflow infer --params {params.cfg:q} --model {input.model}"
        " --frames {input.frames} --geometry {input.geometry} --out {output.peaks}"
        " --metrics {output.metrics} 2> {log}"
