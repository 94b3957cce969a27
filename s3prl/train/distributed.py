"""torchrun / DistributedDataParallel helpers for the one trainer.

Launch with ``torchrun --nproc_per_node N -m s3prl.bin.pretrain ...``: torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and `init_distributed()` joins the process
group (NCCL when CUDA is available, gloo on CPU). Without those variables everything runs as a
single process (rank 0 of 1). Rank 0 alone logs, plots and writes checkpoints; the global batch is
the per-rank batch times the world size.

Every CLI's ``--device`` takes `DEVICES`: ``auto`` (CUDA when available, else the CPU, as the
training CLIs do without the option), ``cpu`` or ``cuda``; `resolve_device` turns it into a device.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None, option: str = "--device") -> str:
    """"auto" or None: "cuda" when a CUDA device is available, else "cpu"; "cpu" and "cuda" as
    given ("cuda" without a CUDA device is a UserError naming `option`)."""
    from s3prl.errors import UserError

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise UserError(f"{option} {device}: not one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} cuda: no CUDA device available (use --device auto or cpu)")
    return device


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun process group if the environment describes one.

    device: "auto" (or None: cuda if available), "cpu" or "cuda". With CUDA each rank uses GPU LOCAL_RANK.
    """
    device = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo",
                                rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from rank `src` to every rank."""
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """Wrap `model` in DistributedDataParallel when running with more than one rank."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [info.local_rank] if info.device.startswith("cuda") else None
    return DDP(model, device_ids=ids, find_unused_parameters=False)
