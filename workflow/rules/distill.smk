# Stages 6-7: cache teacher logits, distil students (section 2.2.3.1).


rule cache_teacher:
    input:
        model=f"{R}/models/teacher.pt",
        trainset=f"{R}/labels/trainset.h5",
    output:
        cache=f"{R}/cache/teacher_logits.h5",
    log:
        f"{LOGS}/distill/cache_teacher.log",
    params:
        cfg=section("distill"),
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "braggflow cache-teacher --params {params.cfg:q} --model {input.model}"
        " --trainset {input.trainset} --out {output.cache} 2> {log}"


rule distill:
    input:
        model=f"{R}/models/teacher.pt",
        cache=f"{R}/cache/teacher_logits.h5",
        trainset=f"{R}/labels/trainset.h5",
    output:
        model=f"{R}/models/{{student}}.pt",
        arch=f"{R}/models/{{student}}.json",
        metrics=f"{R}/models/{{student}}/metrics.jsonl",
        validation=f"{R}/models/{{student}}/validation.json",
    log:
        f"{LOGS}/distill/{{student}}.log",
    params:
        model=section("model"),
        cfg=section("distill"),
        nproc=config["distill"].get("nproc_per_node", 1),
        ckpt=f"{R}/models/{{student}}/checkpoints",
    threads: 2
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    shell:
        "braggflow-launch torchrun --nproc-per-node {params.nproc} -- braggflow distill"
        " --student {wildcards.student} --model-params {params.model:q} --params {params.cfg:q}"
        " --teacher {input.model} --cache {input.cache} --trainset {input.trainset}"
        " --checkpoint-dir {params.ckpt} --out {output.model} --arch {output.arch}"
        " --metrics {output.metrics} --validation {output.validation} 2> {log}"
