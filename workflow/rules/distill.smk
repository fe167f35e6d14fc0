# Stages 6-7: cache teacher logits, distil students (section 2.2.3.1).


rule cache_teacher:
    input:
        model=f"{R}/models/teacher.pt",
        trainset=f"{R}/labels/trainset.h5",
    output:
        cache=f"{R}/cache/teacher_logits.h5",
    log:
        f"{LOGS}/distill/cache_teacher.log",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        batch=config["distill"]["cache_batch_size"],
    shell:
        "braggflow cache-teacher --batch-size {params.batch} --model {input.model}"
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
        curve=report(
            f"{R}/models/{{student}}/loss.png",
            category="7. Students",
            subcategory="{student}",
            caption="../report/distill_curve.rst",
        ),
    log:
        f"{LOGS}/distill/{{student}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        cfg=distill_section,
        nproc=config["distill"]["nproc_per_node"],
        ckpt=f"{R}/models/{{student}}/checkpoints",
    shell:
        "braggflow-launch torchrun --nproc-per-node {params.nproc} -- braggflow distill"
        " --student {wildcards.student} --params {params.cfg:q}"
        " --teacher {input.model} --cache {input.cache} --trainset {input.trainset}"
        " --checkpoint-dir {params.ckpt} --out {output.model} --arch {output.arch}"
        " --metrics {output.metrics} --validation {output.validation} --curve {output.curve}"
        " 2> {log}"
