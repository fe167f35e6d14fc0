# Stages 2 and 9: index any method's CXI peak lists with one indexer and one set of settings.
# engine builtin (default) runs everywhere; engine crystfel needs indexamajig (module or conda).


rule index:
    input:
        peaks=f"{R}/peaks/{{method}}/{{run}}.cxi",
        frames=frames_file,
        geometry=geometry_file,
        cell=cell_file,
    output:
        stream=f"{R}/index/{{method}}/{{run}}.stream",
        summary=f"{R}/index/{{method}}/{{run}}.stream.json",
    log:
        f"{LOGS}/index/{{method}}/{{run}}.log",
    conda:
        "../../envs/crystfel.yaml"
    envmodules:
        "crystfel",
    threads: 2
    params:
        cfg=section("index"),
    shell:
        "braggflow index --params {params.cfg:q} --peaks {input.peaks} --frames {input.frames}"
        " --geometry {input.geometry} --cell {input.cell} --out {output.stream}"
        " --summary {output.summary} --threads {threads} 2> {log}"
