# Stage 0: the embedded synthetic SFX experiment (frames + ground truth).


rule simulate_detector:
    output:
        geometry=f"{R}/data/detector.geom",
        cell=f"{R}/data/crystal.cell",
    log:
        f"{LOGS}/simulate/detector.log",
    conda:
        "../../envs/braggflow.yaml"
    params:
        cfg=section("simulate"),
        seed=config["seed"],
    shell:
        "braggflow simulate --params {params.cfg:q} --seed {params.seed}"
        " --geometry {output.geometry} --cell {output.cell} 2> {log}"


rule simulate_run:
    input:
        geometry=f"{R}/data/detector.geom",
        cell=f"{R}/data/crystal.cell",
    output:
        frames=f"{R}/data/{{run}}.cxi",
        truth=f"{R}/data/{{run}}.truth.h5",
    log:
        f"{LOGS}/simulate/{{run}}.log",
    conda:
        "../../envs/braggflow.yaml"
    params:
        cfg=section("simulate"),
        seed=config["seed"],
    shell:
        "braggflow simulate --params {params.cfg:q} --seed {params.seed} --run {wildcards.run}"
        " --geometry {input.geometry} --cell {input.cell}"
        " --frames {output.frames} --truth {output.truth} 2> {log}"
