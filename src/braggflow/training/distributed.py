"""Distributed set-up: process group from torchrun's environment, FSDP2 sharding, collectives.

Works the same under ``torchrun`` (any number of ranks and nodes) and as a plain process (a
1-rank group on a free local port). CUDA -> NCCL + bf16 ``MixedPrecisionPolicy``; CPU -> gloo + fp32.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistEnv:
    """Join (or create) the default process group; pick device and backend."""
    if "RANK" not in os.environ:  # plain process: a group of one
        os.environ.update(
            RANK="0",
            WORLD_SIZE="1",
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev, backend = torch.device("cuda", local_rank), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistEnv(rank, world, local_rank, local_world, dev, backend)


def set_cpu_threads(env: DistEnv, num_threads: int = 0) -> int:
    """Split the machine's cores between the ranks on this node (0 = auto)."""
    if env.device.type != "cpu":
        return torch.get_num_threads()
    if num_threads <= 0:
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        num_threads = max(1, cores // max(1, env.local_world_size))
    torch.set_num_threads(num_threads)
    return num_threads


def mixed_precision_dtype(env: DistEnv, setting: str) -> torch.dtype:
    """``auto``: bf16 on GPU, fp32 on CPU."""
    if setting == "bf16" or (setting == "auto" and env.device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Wrap each shard unit (backbone stage, BiFPN block) in non-reentrant checkpointing."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for name, stage in model.backbone.stages():
        model.backbone.replace_stage(name, checkpoint_wrapper(stage))
    blocks = model.bifpn.blocks
    for i in range(len(blocks)):
        blocks[i] = checkpoint_wrapper(blocks[i])


def shard_model(
    model: nn.Module,
    env: DistEnv,
    param_dtype: torch.dtype = torch.float32,
    reshard_after_forward: bool = True,
) -> nn.Module:
    """FSDP2: ``fully_shard`` each backbone stage and each BiFPN block, then the root.

    ``reshard_after_forward=True`` is ZeRO-3 (teacher); ``False`` keeps parameters gathered
    between forward and backward, ZeRO-2 style (students, section 2.2.3.1).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    units: list[nn.Module] = [m for _, m in model.backbone.stages()] + list(model.bifpn.blocks)
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    return model


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
