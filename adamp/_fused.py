"""The fused implementations: the Triton kernels of :mod:`adamp._triton` (``BACKEND = "triton"``, the
default) or the multi-tensor implementation compiled with ``torch.compile`` (``BACKEND = "inductor"``).

With inductor: it lowers the ``_foreach_*`` arithmetic into horizontally fused kernels over all tensors of a
group, fuses each tensor's four row reductions (``g·w``, ``g·g``, ``w·w``, ``w·u``) into one kernel, and
keeps everything on the device, so nothing is synchronised with the host. It runs wherever inductor runs:
Triton on GPUs, C++/OpenMP on the CPU (which is how CI tests it). The first step of each distinct group
of shapes compiles (seconds to a minute); later steps reuse the compiled code.

``COMPILE_OPTIONS`` is passed to ``torch.compile``; e.g. ``{"mode": "reduce-overhead"}`` adds CUDA graphs.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import torch
from torch import Tensor

from ._rules import LOW_PRECISION, projectable, state_dtype
from ._multi_tensor import plain

COMPILE_OPTIONS: dict[str, Any] = {"fullgraph": True}
#: Compile the batched (segmented) projection instead of the per-tensor one: a constant number of kernels
#: per step instead of a few per weight tensor. Off by default until it has been timed on a GPU
#: (``python -m benchmarks.bench_step`` times both); tested on the CPU either way.
SEGMENTED = False
#: What ``fused=True`` (and the CUDA default) runs. "triton" (default): hand-written Triton kernels
#: (:mod:`adamp._triton`), four launches per step whatever the number of tensors, on CUDA devices (and on
#: the CPU under ``TRITON_INTERPRET=1``, how the tests run them); where they cannot run (no Triton, another
#: device, tensor subclasses, layouts they decline) the eager multi-tensor path runs instead, never a
#: compilation. "inductor": the multi-tensor step compiled by ``torch.compile`` (seconds to minutes of
#: compilation on the first step of every distinct group; on any device inductor supports). The
#: environment variable ``ADAMP_FUSED_BACKEND`` sets it without code (e.g. for a whole sweep).
BACKENDS = ("inductor", "triton")
BACKEND = os.environ.get("ADAMP_FUSED_BACKEND", "triton")
_COMPILED: dict[tuple[str, str], Callable] = {}


def compiled(kind: str, fn: Callable) -> Callable:
    """The compiled version of ``fn`` (the multi-tensor implementation of ``kind``), built once."""
    key = (kind, repr(sorted(COMPILE_OPTIONS.items())))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, **COMPILE_OPTIONS)
    return _COMPILED[key]


def backend() -> str:
    """``BACKEND``, checked."""
    if BACKEND not in BACKENDS:
        raise ValueError(f"adamp._fused.BACKEND (or ADAMP_FUSED_BACKEND) is {BACKEND!r}; expected one of "
                         f"{', '.join(map(repr, BACKENDS))}")
    return BACKEND


def mode(params: list[Tensor]) -> tuple[str, str]:
    """How the fused path runs this group of one device and dtype: ("triton" | "inductor" | "eager", why).
    "eager" is the uncompiled multi-tensor step (the Triton kernels cannot run here); the Triton kernels may
    still decline the tensors' layout at launch (``adamp._triton.step`` returns False), also eager then."""
    chosen = backend()
    if torch.compiler.is_compiling():
        return "inductor", "inside a step compiled by the caller"  # traced like the rest of the caller's graph
    if chosen == "inductor":
        return "inductor", "ADAMP_FUSED_BACKEND=inductor"
    from . import _triton

    if not params or not _triton.available(params[0].device):
        where = params[0].device.type if params else "?"
        return "eager", f"the Triton kernels cannot run on {where} (no Triton, or not a CUDA device)"
    if not _triton.plain(params):
        return "eager", "tensor subclasses (e.g. DTensor) are not taken by the Triton kernels"
    return "triton", "the Triton kernels"


_WARNED: set[str] = set()


def report(to, impl: str, why: str) -> None:
    """Say that a fused step runs ``impl`` instead, and why: to the optimizer's ``to(impl, why)`` (which says
    it once per optimizer), or as a warning once per process for functional calls."""
    if to is not None:
        to(impl, why, True)
        return
    if why not in _WARNED:
        _WARNED.add(why)
        warnings.warn(f"adamp fused step: runs the {impl} implementation: {why}", stacklevel=4)


def segmented_layout(params: list[Tensor], delta: float):
    """The segmented layout of the >= 2-D tensors among ``params``, built eagerly (in the math dtype)."""
    from ._segmented import layout_for

    multi = [p for p in params if projectable(p)]
    if not multi or not plain(multi):
        return None  # no layout: the per-tensor projection (which tensor subclasses such as DTensor need)
    dtype = state_dtype(multi[0])
    return layout_for([tuple(p.shape) for p in multi], multi[0].device, dtype, delta)


def as_device_scalars(values: dict[str, float], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """0-d tensors on ``device`` (filled by a kernel, no host synchronisation) in the math dtype."""
    math_dtype = torch.float32 if dtype in LOW_PRECISION else dtype
    return {k: torch.full((), v, dtype=math_dtype, device=device) for k, v in values.items()}


def recompile_budget():
    """Settings for a compiled step.

    Each distinct param group (its shapes) is its own graph: allow as many as models have groups. The
    scalars that change during training arrive as 0-d tensors; the remaining Python floats (betas, eps,
    delta, momentum) are constants of a run and are specialised, so that they enter the graph exactly as
    Python computes them rather than as traced tensors.
    """
    return torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=4096, specialize_float=True)
