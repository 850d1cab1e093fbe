"""The fused implementations: one ``torch.compile``d function per (device, dtype) group of tensors.

Inductor fuses, per tensor, the moment updates with the four row reductions of the scale-invariance test
into one kernel and the projection, decay and step into a second, so each tensor is read twice and written
once per step (about 1.4x the memory traffic of a fused AdamW) and nothing is synchronised with the host.
It runs wherever inductor runs: Triton on GPUs, C++/OpenMP on the CPU (which is how CI tests it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._multi_tensor import group_by_device_and_dtype

_COMPILED: dict[str, Any] = {}


def _compiled(kind: str):
    fn = _COMPILED.get(kind)
    if fn is None:
        fn = torch.compile({"adamp": _adamp_group, "sgdp": _sgdp_group}[kind], fullgraph=True)
        _COMPILED[kind] = fn
    return fn


def _row_stats_and_flag(w: Tensor, g: Tensor, u: Tensor, delta: float, eps: float):
    """Coefficient of the projection (per row, 0 where no view fires) and the "projected" flag."""
    dims = tuple(range(1, w.ndim))
    gw = (g * w).sum(dims)
    gg = (g * g).sum(dims)
    ww = (w * w).sum(dims)
    wu = (w * u).sum(dims)
    row_len = w[0].numel()
    cos_channel = gw.abs() / (gg.sqrt().clamp_min(eps) * ww.sqrt().clamp_min(eps))
    channel = cos_channel.amax() < delta / math.sqrt(row_len)
    gw_l, gg_l, ww_l = gw.sum(), gg.sum(), ww.sum()
    cos_layer = gw_l.abs() / (gg_l.sqrt().clamp_min(eps) * ww_l.sqrt().clamp_min(eps))
    layer = (cos_layer < delta / math.sqrt(w.numel())) & ~channel
    coef = torch.where(channel, wu / (ww.sqrt() + eps).square(),
                       torch.where(layer, wu.sum() / (ww_l.sqrt() + eps).square(), 0.0))
    return coef.view((-1,) + (1,) * (w.ndim - 1)), channel | layer


def _adamp_group(params, grads, exp_avgs, exp_avg_sqs, step_sizes, sqrt_bc2s, lr, beta1, beta2, eps,
                 weight_decay, delta, wd_ratio, nesterov: bool, maximize: bool):
    scale_projected = 1 - lr * weight_decay * wd_ratio
    scale_plain = 1 - lr * weight_decay
    for p, g, m, v, step_size, sqrt_bc2 in zip(params, grads, exp_avgs, exp_avg_sqs, step_sizes, sqrt_bc2s):
        w = p.float() if p.dtype != m.dtype else p
        g = g.to(m.dtype)
        if maximize:
            g = -g
        m_new = m * beta1 + g * (1 - beta1)
        v_new = v * beta2 + g * g * (1 - beta2)
        m.copy_(m_new)
        v.copy_(v_new)
        denom = v_new.sqrt() / sqrt_bc2 + eps
        u = (m_new * beta1 + g * (1 - beta1)) / denom if nesterov else m_new / denom
        if w.ndim > 1:
            coef, flag = _row_stats_and_flag(w, g, u, delta, eps)
            scale = torch.where(flag, w.new_full((), scale_projected), w.new_full((), scale_plain))
            new = w * scale - step_size * (u - coef * w)
        else:
            new = w * scale_plain - step_size * u
        p.copy_(new)


def _sgdp_group(params, grads, bufs, lr, momentum, dampening, eps, weight_decay, delta, wd_ratio,
                nesterov: bool, maximize: bool, project_buffer: bool):
    if weight_decay > 0:
        scale_projected = 1 - lr * weight_decay * wd_ratio / (1 - momentum)
        scale_plain = 1 - lr * weight_decay / (1 - momentum)
    else:
        scale_projected = scale_plain = 1.0
    for p, g, b in zip(params, grads, bufs):
        w = p.float() if p.dtype != b.dtype else p
        g = g.to(b.dtype)
        if maximize:
            g = -g
        b_new = b * momentum + g * (1 - dampening)
        u = g + momentum * b_new if nesterov else b_new
        if w.ndim > 1:
            coef, flag = _row_stats_and_flag(w, g, u, delta, eps)
            u = u - coef * w
            scale = torch.where(flag, w.new_full((), scale_projected), w.new_full((), scale_plain))
            new = w * scale - lr * u
        else:
            new = w * scale_plain - lr * u
        b.copy_(u if (project_buffer and not nesterov) else b_new)
        p.copy_(new)


def run(kind: str, params: list[Tensor], grads: list[Tensor], states: list[list[Tensor]],
        state_steps: list[int] | None, **hp: Any) -> None:
    """Apply one fused step of ``kind`` ("adamp" or "sgdp") to every (device, dtype) group of tensors."""
    fn = _compiled(kind)
    # Each distinct group of shapes is its own graph; allow as many as a model has param groups.
    with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=4096):
        if kind == "adamp":
            steps_by_id = {id(p): s for p, s in zip(params, state_steps)}
            for ps, gs, ms, vs in group_by_device_and_dtype([params, grads, *states]):
                steps = [steps_by_id[id(p)] for p in ps]
                step_sizes = [hp["lr"] / (1 - hp["beta1"] ** s) for s in steps]
                sqrt_bc2s = [math.sqrt(1 - hp["beta2"] ** s) for s in steps]
                fn(ps, gs, ms, vs, step_sizes, sqrt_bc2s, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"],
                   hp["weight_decay"], hp["delta"], hp["wd_ratio"], bool(hp["nesterov"]),
                   bool(hp["maximize"]))
        else:
            for ps, gs, bs in group_by_device_and_dtype([params, grads, *states]):
                fn(ps, gs, bs, hp["lr"], hp["momentum"], hp["dampening"], hp["eps"], hp["weight_decay"],
                   hp["delta"], hp["wd_ratio"], bool(hp["nesterov"]), bool(hp["maximize"]),
                   bool(hp["project_buffer"]))
