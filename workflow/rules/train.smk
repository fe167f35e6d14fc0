# Stage 5: torchrun FSDP2 pretraining of the teacher (sections 2.2.1-2.2.2).
# Resumes from the newest matching checkpoint in models/teacher/checkpoints (SLURM requeue).


rule train_teacher:
    input:
        trainset=f"{R}/labels/trainset.h5",
    output:
        model=f"{R}/models/teacher.pt",
        arch=f"{R}/models/teacher.json",
        metrics=f"{R}/models/teacher/metrics.jsonl",
        validation=f"{R}/models/teacher/validation.json",
        curve=report(
            f"{R}/models/teacher/loss.png",
            category="5. Teacher",
            caption="../report/loss_curve.rst",
        ),
    log:
        f"{LOGS}/train/teacher.log",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=config["train"]["nproc_per_node"],
    params:
        model=section("model"),
        cfg=section("train"),
        nproc=config["train"]["nproc_per_node"],
        ckpt=f"{R}/models/teacher/checkpoints",
    shell:
        "braggflow-launch torchrun --nproc-per-node {params.nproc} -- braggflow train"
        " --model-params {params.model:q} --params {params.cfg:q} --trainset {input.trainset}"
        " --checkpoint-dir {params.ckpt} --out {output.model} --arch {output.arch}"
        " --metrics {output.metrics} --validation {output.validation} --curve {output.curve} 2> {log}"
