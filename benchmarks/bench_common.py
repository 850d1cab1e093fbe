"""What both modes of :mod:`benchmarks.bench_step` share: the ``--only``/``--skip`` label selection, the
one-line error of a failing candidate, the device synchronisation around timings, and the switched entries
(an ``adamp`` module switch set only while stepping: the per-tensor projection, the inductor backend)."""

from __future__ import annotations

from typing import Any

import torch


class Switched:
    """Steps an optimizer with module switches of ``adamp`` set for the duration of the step (restored
    after), e.g. the segmented projection or the Triton kernels: GPU candidates timed beside the defaults."""

    def __init__(self, opt: torch.optim.Optimizer, switches: list[tuple[Any, str, Any]]):
        self.opt = opt
        self.switches = switches  # (module, attribute, value while stepping)

    def __getattr__(self, name: str):  # zero_grad, state, ... of the wrapped optimizer
        return getattr(self.opt, name)

    def step(self) -> None:
        before = [(module, attr, getattr(module, attr)) for module, attr, _ in self.switches]
        for module, attr, value in self.switches:
            setattr(module, attr, value)
        try:
            self.opt.step()
        finally:
            for module, attr, value in before:
                setattr(module, attr, value)


def per_tensor(opt: torch.optim.Optimizer) -> Switched:
    """The foreach path with the per-tensor projection (its default on the CPU, not on GPUs)."""
    from adamp import _projection

    return Switched(opt, [(_projection, "SEGMENTED", False)])


def inductor(opt: torch.optim.Optimizer, segmented: bool = False) -> Switched:
    """``fused=True`` compiled by inductor (``ADAMP_FUSED_BACKEND=inductor``), optionally compiling the batched
    (segmented) projection instead of the per-tensor one."""
    from adamp import _fused

    return Switched(opt, [(_fused, "BACKEND", "inductor")] + [(_fused, "SEGMENTED", True)] * segmented)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: the official entry each family's speed-up is taken against (torch's Adam/SGD against their AdamP/SGDP peer)
def matches(label: str, only: str | None, skip: str | None) -> bool:
    """``--only`` / ``--skip``: comma-separated texts, any of which selects (leaves out) a label."""
    only_texts = [t for t in (only or "").split(",") if t]
    skip_texts = [t for t in (skip or "").split(",") if t]
    return (not only_texts or any(t in label for t in only_texts)) and not any(t in label for t in skip_texts)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
