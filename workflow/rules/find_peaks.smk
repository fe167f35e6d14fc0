# Stage 1: traditional peak finding (Cheetah's peakfinder8) -> CXI peak lists (section 2.1.1).
# MPI over frames (identical output for any number of tasks); engine from find_peaks.engine.


rule find_peaks:
    input:
        frames=frames_file,
        geometry=geometry_file,
    output:
        peaks=f"{R}/peaks/peakfinder8/{{run}}.cxi",
        stats=f"{R}/peaks/peakfinder8/{{run}}.stats.json",
    log:
        f"{LOGS}/find_peaks/{{run}}.log",
    conda:
        "../../envs/braggflow.yaml"
    threads: 2
    resources:
        tasks=2,
    params:
        cfg=section("find_peaks"),
    shell:
        "braggflow-launch mpi -n {resources.tasks} -- braggflow find-peaks --params {params.cfg:q}"
        " --frames {input.frames} --geometry {input.geometry} --out {output.peaks}"
        " --stats {output.stats} --threads {threads} 2> {log}"
