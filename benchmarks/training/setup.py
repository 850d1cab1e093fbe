"""What a run sets up before it trains: the task class, the seeds, the device, torch.distributed."""

from __future__ import annotations

import importlib
import os
import random

import numpy as np
import torch


def resolve_task_class(name: str):
    """Task class for ``task:``: a registered name (benchmarks.tasks.get_task) or ``package.module:Class``."""
    from benchmarks.tasks import get_task

    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    return get_task(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (the process's local GPU under DDP), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={name!r} but CUDA is not available on {os.uname().nodename}")
        if device.index is None:
            device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    return device


def distributed_setup() -> tuple[int, int, int]:
    """Initialise torch.distributed when several processes run this job; return (rank, world, local_rank)."""
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 \
            and "SUBMITIT_EXECUTOR" in os.environ:
        try:  # a submitit job with several tasks: let submitit export MASTER_ADDR/RANK/WORLD_SIZE
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        except Exception:  # noqa: BLE001 - fall back to a single process rather than fail the run
            pass
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return rank, world, local_rank


def current_rank() -> int:
    """Global rank of this process (0 without distributed training)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))
