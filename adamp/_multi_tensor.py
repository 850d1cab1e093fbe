"""Helpers of the multi-tensor (foreach) paths: grouping, chunking, half-precision work copies."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import torch
from torch import Tensor

from ._rules import LOW_PRECISION, projectable


def group_by_device_and_dtype(tensor_lists: Sequence[list[Tensor]]) -> list[list[list[Tensor]]]:
    """Split parallel lists so that each part has one device and one param dtype (foreach needs that)."""
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(tensor_lists[0]):
        buckets[(p.device, p.dtype)].append(i)
    return [[[lst[i] for i in idx] for lst in tensor_lists] for idx in buckets.values()]


def chunks_by_numel(params: list[Tensor]) -> Iterator[list[int]]:
    """Yield index chunks holding at most a quarter of the group's elements each (a larger tensor alone).

    The foreach paths allocate two temporaries per tensor (denominator and update) plus the projection's
    scratch; processing a quarter of the group at a time keeps the temporary memory of ``step()`` below one
    copy of the group's params (measured on an H100 with half-group chunks: 1.37 copies for ResNet-50).
    """
    total = sum(p.numel() for p in params)
    budget = max(total // 4, 1)
    chunk: list[int] = []
    size = 0
    for i, p in enumerate(params):
        if chunk and size + p.numel() > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += p.numel()
    if chunk:
        yield chunk


def work_copies(params: list[Tensor], grads: list[Tensor], maximize: bool) -> tuple[list[Tensor], list[Tensor]]:
    """float32 working copies of half-precision params/grads (the math runs in fp32) and signed grads."""
    if params and params[0].dtype in LOW_PRECISION:
        params = [p.float() for p in params]
        grads = [g.float() for g in grads]
        if maximize:
            torch._foreach_neg_(grads)
        return params, grads
    if maximize:
        grads = torch._foreach_neg(grads)
    return params, grads


def plain(tensors: Sequence[Tensor]) -> bool:
    """Whether all are plain tensors, not a subclass such as an FSDP2 (DTensor) shard: the batched projection
    and the Triton kernels address plain memory; subclasses take the per-tensor formulation, made of ordinary
    ops they implement."""
    return all(type(t) in (Tensor, torch.nn.Parameter) for t in tensors)


def split_by_ndim(indices: list[int], params: list[Tensor]) -> tuple[list[int], list[int]]:
    """Indices of tensors the projection applies to (ndim >= 2, not empty) and the rest."""
    multi = [i for i in indices if projectable(params[i])]
    flat = [i for i in indices if not projectable(params[i])]
    return multi, flat


def device_table(values, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small host-built table (index vectors, bounds, addresses, scalars) on ``device``, copied from pinned
    memory without blocking, so that building it never synchronises the device with the host."""
    host = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def stream_key(device: torch.device) -> int | None:
    """The current stream of a CUDA ``device`` (None elsewhere), for keys of cached device tables: a table
    is allocated on the stream current when it is built, and the caching allocator may hand its memory to
    the next allocation on that stream as soon as it is freed, so a table must not be read on another one."""
    return torch.cuda.current_stream(device).stream_id if device.type == "cuda" else None
