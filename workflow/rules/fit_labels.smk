# Stage 4: Ray-distributed pseudo-Voigt fitting of candidate peaks -> pixel labels (section 2.1.2).


rule fit_labels:
    input:
        selections=expand(
            f"{R}/peakdiff/{{run}}.tsv", run=config["data_engine"]["runs"]
        ),
        streams=expand(
            f"{R}/index/peakfinder8/{{run}}.stream", run=config["data_engine"]["runs"]
        ),
        frames=[frames_path(r) for r in config["data_engine"]["runs"]],
        geometry=geometry_file,
        truth=(
            expand(f"{R}/data/{{run}}.truth.h5", run=config["data_engine"]["runs"])
            if SIMULATED
            else []
        ),
    output:
        trainset=f"{R}/labels/trainset.h5",
        summary=f"{R}/labels/summary.json",
    log:
        f"{LOGS}/fit_labels/fit_labels.log",
    conda:
        "../../envs/ray.yaml"
    threads: 2
    resources:
        nodes=1,
    params:
        cfg=section("fit_labels"),
        seed=config["seed"],
        match=config["peakdiff"]["max_distance_px"],
        truth=lambda w, input: f"--truth {input.truth}" if input.truth else "",
    shell:
        "braggflow-launch ray -- braggflow fit-labels --params {params.cfg:q}"
        " --selections {input.selections} --streams {input.streams} --frames {input.frames}"
        " --geometry {input.geometry} {params.truth} --seed {params.seed}"
        " --match-distance {params.match} --out {output.trainset} --summary {output.summary}"
        " --num-cpus {threads} 2> {log}"
