# Stage 4: Ray-distributed pseudo-Voigt fitting of candidate peaks -> pixel labels (section 2.1.2).


rule fit_labels:
    input:
        selections=expand(f"{R}/peakdiff/{{run}}.tsv", run=config["data_engine"]["runs"]),
        streams=expand(
            f"{R}/index/peakfinder8/{{run}}.stream", run=config["data_engine"]["runs"]
        ),
        frames=[frames_path(r) for r in config["data_engine"]["runs"]],
        geometry=geometry_file,
    output:
        trainset=f"{R}/labels/trainset.h5",
        summary=f"{R}/labels/summary.json",
    log:
        f"{LOGS}/fit_labels/fit_labels.log",
    params:
        cfg=section("fit_labels"),
    threads: 2
    resources:
        nodes=1,
    conda:
        "../../envs/ray.yaml"
    shell:
        "braggflow fit-labels --params {params.cfg:q} --selections {input.selections}"
        " --streams {input.streams} --frames {input.frames} --geometry {input.geometry}"
        " --out {output.trainset} --summary {output.summary} --num-cpus {threads} 2> {log}"
