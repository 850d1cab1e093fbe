"""The optimizer database (in the style of torch's OptimizerInfo) and the parity problems.

A *problem* is a list of parameters plus a deterministic gradient function of the current parameters and
step, built so that a chosen branch of the scale-invariance test fires (or does not) at every step. Both
implementations under comparison see the same parameters, hence the same gradients, so any difference
comes from the optimizer alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import adamp


@dataclass
class OptimInfo:
    name: str
    cls: type
    reference_index: int  # position in load_reference()'s tuple
    state_keys: tuple[str, ...]
    #: keyword sets of the parity matrix, by id
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: options of ours that the reference does not have (not passed to it)
    ours_only: tuple[str, ...] = ("maximize", "foreach", "fused", "project_buffer")


OPTIMS = [
    OptimInfo(
        "AdamP", adamp.AdamP, 0, ("step", "exp_avg", "exp_avg_sq"),
        {
            "default": dict(lr=1e-2),
            "wd": dict(lr=1e-2, weight_decay=1e-2),
            "nesterov_wd": dict(lr=1e-2, weight_decay=5e-2, nesterov=True, betas=(0.8, 0.99)),
            "delta_wd_ratio": dict(lr=3e-3, weight_decay=1e-1, delta=0.3, wd_ratio=0.5, eps=1e-6),
            # delta = 0: a cosine of exactly 0 (zero grad) must NOT fire (the test is a strict "<")
            "delta0_wd": dict(lr=1e-2, delta=0.0, weight_decay=1e-1),
        },
    ),
    OptimInfo(
        "SGDP", adamp.SGDP, 1, ("momentum",),
        {
            "momentum0": dict(lr=0.1),
            "momentum_wd": dict(lr=0.1, momentum=0.9, weight_decay=1e-3),
            "nesterov_wd": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
            "dampening": dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=1e-3),
            "delta0_wd": dict(lr=0.1, momentum=0.5, delta=0.0, weight_decay=1e-2),
        },
    ),
]


def _radial_free(g: torch.Tensor, w: torch.Tensor, rows: int) -> torch.Tensor:
    """Remove from g its component along w, per row of the (rows, -1) view."""
    gv, wv = g.reshape(rows, -1), w.reshape(rows, -1)
    coef = (gv * wv).sum(1, keepdim=True) / (wv * wv).sum(1, keepdim=True).clamp_min(1e-300)
    return (gv - coef * wv).reshape(g.shape)


def _smooth(p: torch.Tensor, step: int, salt: float) -> torch.Tensor:
    # A deterministic, smooth, non-degenerate "gradient" of the current weights.
    idx = torch.arange(p.numel(), dtype=p.dtype, device=p.device).reshape(p.shape)
    return torch.sin(3.0 * p + 0.37 * idx + salt + 0.1 * step) + 0.5 * p


@dataclass
class Problem:
    name: str
    make_params: Callable[[torch.dtype], list[torch.Tensor]]
    grad_fn: Callable[[int, list[torch.Tensor]], list[torch.Tensor | None]]
    #: expected projection decision per param at step 1 (None: not a >=2-D tensor)
    expected: list[str | None]


def _problem_all(dtype=torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 3, 3, 3), (5, 7), (8, 4), (6, 2, 2), (4, 5), (7,), (3, 4), (5, 3), (9,)]
    params = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    params[6].zero_()  # zero weights (cos = 0 -> fires)
    return [torch.nn.Parameter(p) for p in params]


def _grads_all(step: int, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    grads = [_smooth(p.detach(), step, salt=i) for i, p in enumerate(params)]
    grads[0] = _radial_free(grads[0], params[0].detach(), params[0].shape[0])  # channel test fires
    grads[1] = _radial_free(grads[1], params[1].detach(), params[1].shape[0])  # channel (2-D)
    grads[2] = _radial_free(grads[2], params[2].detach(), 1)  # only the layer test fires
    # grads[3]: random direction: neither fires; grads[4]: anti-aligned with w (cos ~ -1 in every row):
    # neither fires, but would if the absolute value of the cosine were dropped
    grads[4] = -params[4].detach() + 0.1 * grads[4]
    grads[5] = grads[5]  # 1-D: never projected
    # grads[6]: zero weights (cos = 0): fires
    grads[7] = torch.zeros_like(params[7])  # zero gradient: fires
    grads[8] = None  # a parameter without gradient is skipped
    return grads


PROBLEM = Problem("mixed", _problem_all, _grads_all,
                  ["channel", "channel", "layer", "none", "none", None, "channel", "channel", None])


def run_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], grad_fn, steps: int, start: int = 0):
    for step in range(start, start + steps):
        for p, g in zip(params, grad_fn(step, params)):
            p.grad = None if g is None else g.to(p.dtype)
        opt.step()


def max_rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        x, y = x.detach().double(), y.detach().double()
        assert x.shape == y.shape, (x.shape, y.shape)
        if not x.numel():
            continue
        scale = x.abs().max().clamp_min(1e-300)
        worst = max(worst, ((x - y).abs().max() / scale).item())
    return worst
