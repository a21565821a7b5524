"""Distributed data parallel through torchrun's environment: one process per device.

``torchrun --standalone --nproc_per_node N --no-python videolens train ...`` (or any launcher
that sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) starts
``N`` copies of the same command; each joins the process group here: ``nccl`` on CUDA,
``gloo`` on CPU. Multi-node runs use torchrun's usual ``--nnodes``/``--rdzv-*`` flags. Without
those variables everything below is the single-process identity.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def env_world() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment (0, 0, 1 without)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    return int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world


def setup(device: torch.device) -> None:
    """Join the process group when launched by torchrun (``gloo`` on CPU, ``nccl`` on CUDA)."""
    _, _, world = env_world()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # evaluation on rank 0 can take a while; the others wait at a barrier meanwhile
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` from every process -> ``(world*B, ...)`` in rank order; gradients flow back
    to each process's own rows (contrastive losses over the global batch)."""
    if not active():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged scalars over processes (every process must call it at the same step)."""
    if not active() or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= world()
    return dict(zip(keys, tensor.tolist(), strict=True))


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any (a stop request seen by one)."""
    if not active():
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
