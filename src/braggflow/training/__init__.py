"""The training loop shared by teacher pretraining (stage 5) and distillation (stage 7).

Modules (import them inside functions: they import torch):

- ``config.TrainConfig``: the ``train:`` section as a checked dataclass (``from_params(dict)``);
  keys it does not know land in ``cfg.extra`` (a student's loss weights, for example).
- ``data.TrainSet(path, input_size, split=0, extra_fields=None)``: frames of one split of the
  training-set HDF5 as model-ready numpy batches; ``extra_fields={"teacher_logits": fn}`` with
  ``fn(frame_indices) -> (B, ...)`` adds per-frame arrays (e.g. cached teacher logits, already in
  the model's square geometry) to every batch. ``data.GlobalBatchSampler``: deterministic,
  rank-aware, resumable (state = micro-batches consumed).
- ``task.Task``: the objective protocol, ``loss(model, batch) -> (loss, metrics)``, optional
  ``describe() -> dict``; ``task.SegmentationTask`` is the teacher's focal loss (eq. 1).
- ``focal.focal_loss(logits, target, alpha=(0.25, 0.75), gamma=2)``.
- ``distributed``: ``init_distributed()``, ``shard_model`` (FSDP2 per backbone stage and BiFPN
  block, then root; bf16 MixedPrecisionPolicy on GPU, fp32 on CPU/gloo), activation checkpointing.
- ``checkpoint``: DCP save/load with per-rank trainer state (step, scheduler, sampler, RNG).
- ``loop.train(task, arch, train_set, cfg, paths, val_set=None, init_state_dict=None,
  identity=None, export_extra=None) -> summary``: the loop; ``loop.TrainPaths`` names its outputs;
  ``loop.Preempted`` is raised after a signal-triggered checkpoint (exit with
  ``loop.PREEMPT_EXIT_CODE``).

A student run (issue 6) is::

    cfg = TrainConfig.from_params(student_params, reshard_after_forward=False)  # ZeRO-2 style
    data = TrainSet(trainset, arch.input_size, 0, extra_fields={"teacher_logits": cache.read})
    train(DistillTask(...), arch, data, cfg, TrainPaths(ckpt_dir, metrics, curve, model, arch_json,
          validation), val_set=TrainSet(trainset, arch.input_size, 1),
          identity={"teacher_sha256": sha})
"""
