# Stage 8: Ray producer-consumer inference -> CrystFEL-compatible CXI peak lists (2.2.3.2, 3.4).
# Outside SLURM braggflow-launch runs the command, which starts a local Ray; inside an allocation
# it starts a Ray cluster and sets RAY_ADDRESS. With ground truth (simulated runs) the metrics
# JSON also holds peak precision/recall against it.


rule infer:
    input:
        model=f"{R}/models/{{model}}.pt",
        frames=frames_file,
        geometry=geometry_file,
        truth=lambda w: f"{R}/data/{w.run}.truth.h5" if SIMULATED else [],
    output:
        peaks=f"{R}/peaks/{{model}}/{{run}}.cxi",
        metrics=f"{R}/infer/{{model}}/{{run}}.metrics.json",
        plot=report(
            f"{R}/infer/{{model}}/{{run}}.metrics.png",
            category="8. Inference",
            subcategory="{model}",
            caption="../report/infer.rst",
        ),
    log:
        f"{LOGS}/infer/{{model}}/{{run}}.log",
    conda:
        "../../envs/ray.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        cfg=section("infer"),
        truth=lambda w, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "braggflow-launch ray -- braggflow infer --params {params.cfg:q} --model {input.model}"
        " --frames {input.frames} --geometry {input.geometry} {params.truth} --out {output.peaks}"
        " --metrics {output.metrics} --plot {output.plot} 2> {log}"
