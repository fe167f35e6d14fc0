# Stage 1: traditional peak finding (Cheetah's peakfinder8) -> CXI peak lists (section 2.1.1).


rule find_peaks:
    input:
        frames=frames_file,
        geometry=geometry_file,
    output:
        peaks=f"{R}/peaks/peakfinder8/{{run}}.cxi",
    log:
        f"{LOGS}/find_peaks/{{run}}.log",
    params:
        cfg=section("find_peaks"),
    threads: 2
    resources:
        tasks=2,
    conda:
        "../../envs/braggflow.yaml"
    shell:
        "braggflow-launch mpi -n {resources.tasks} -- braggflow find-peaks --params {params.cfg:q}"
        " --frames {input.frames} --geometry {input.geometry} --out {output.peaks} 2> {log}"
