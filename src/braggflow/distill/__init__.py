"""Knowledge distillation (section 2.2.3.1): the teacher-logit cache and the distillation loss.

``braggflow.distill.cache``: run the exported teacher over the training set once and store its
pre-activation logits (float16, stamped with the teacher file's sha256; resumable).
``braggflow.distill.loss``: MSE + T^2 KL + focal(argmax teacher) (+ optional label focal).
``braggflow.distill.objective``: the student objective plugged into the shared training loop.
Heavy imports (torch, h5py) live in the submodules.
"""
