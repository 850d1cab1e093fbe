"""The rules AdamP and SGDP share, below every implementation: argument checks, which tensors the projection
applies to, the precision of the state, and which implementation a functional call asks for.

A leaf of the package: it imports only torch, so that every other module may import it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_number(name: str, value: Any, *, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = False) -> None:
    """Raise ``ValueError`` naming the argument unless ``low <= value`` (and ``value <(=) high``)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"Invalid {name}: a tensor {name} must have exactly one element")
        if value.device.type != "cpu":
            # every step computes Python numbers from it: reading a device value would synchronise each time
            raise ValueError(f"Invalid {name}: a tensor {name} must be on the CPU (it is on {value.device}); "
                             f"pass a float")
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid {name}: {value!r}; expected a number")
    if high is None:
        if not value >= low:
            raise ValueError(f"Invalid {name}: {value}; expected a number >= {low}")
        return
    ok = low <= value <= high if high_inclusive else low <= value < high
    if not ok:
        bracket = "]" if high_inclusive else ")"
        raise ValueError(f"Invalid {name}: {value}; expected a number in [{low}, {high}{bracket}")


def projectable(p: Tensor) -> bool:
    """Whether the scale-invariance test and projection apply to ``p``: at least 2 dims (the official rule)
    and at least one element (an empty tensor has no rows to test)."""
    return p.ndim >= 2 and p.numel() > 0


def state_dtype(p: Tensor) -> torch.dtype:
    """Optimizer state is kept in float32 for half-precision params (an eps of 1e-8 is 0 in fp16)."""
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


def functional_impl(foreach: bool | None, fused: bool | None) -> str:
    """The implementation a functional call asks for: single-tensor unless ``foreach`` or ``fused``."""
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    return "fused" if fused else "foreach" if foreach else "single"
