# Stages 2 and 9: index any method's CXI peak lists with one indexer and one set of settings.


rule index:
    input:
        peaks=f"{R}/peaks/{{method}}/{{run}}.cxi",
        frames=frames_file,
        geometry=geometry_file,
        cell=cell_file,
    output:
        stream=f"{R}/index/{{method}}/{{run}}.stream",
    log:
        f"{LOGS}/index/{{method}}/{{run}}.log",
    params:
        cfg=section("index"),
    threads: 2
    conda:
        "../../envs/crystfel.yaml"
    envmodules:
        "crystfel",
    shell:
        "braggflow index --params {params.cfg:q} --peaks {input.peaks} --frames {input.frames}"
        " --geometry {input.geometry} --cell {input.cell} --out {output.stream}"
        " --threads {threads} 2> {log}"
