"""Scale-invariance diagnostics of a model under training (the paper's mechanism, measured).

:func:`collect` is called by the shared loop every epoch or every step when ``train.diagnostics`` is on; its
values go into history.jsonl with split ``"diag"``:

* ``si_weight_norm``: mean Frobenius norm of the weights that currently look scale-invariant;
* ``effective_step_size``: mean of ``lr / ||w||^2`` over those weights (the step size the scale-invariant
  function actually sees: a step ``dw`` turns ``w`` by about ``||dw|| / ||w||`` while the gradient scales
  with ``1 / ||w||``);
* ``si_fraction``: fraction of the trained tensors with ``ndim >= 2`` that look scale-invariant;
* ``projected_fraction``: fraction of those tensors the optimizer really projects: ``si_fraction`` for a
  projecting optimizer (AdamP/SGDP: its param groups carry ``delta``), 0 for any other (SGD, Adam, ... never
  project: their ``si_fraction`` of e.g. 0.80 says what AdamP *would* project, not what they do);
* ``si_count`` and ``tensors_2d``: the counts behind that fraction.

"Looks scale-invariant" is exactly AdamP/SGDP's own test (:func:`adamp.scale_invariant`: channel view, then
layer view, ``max |cos(g, w)| < delta / sqrt(row length)``), evaluated on the tensor's current ``.grad`` with
the ``delta`` and ``eps`` of its param group when the optimizer has them (AdamP/SGDP), else the official
defaults 0.1 and 1e-8. So for AdamP/SGDP ``si_fraction`` is the fraction of tensors they project, and for any
other optimizer it is the fraction they *would* project. Tensors without a gradient are counted as not
flagged (no optimizer projects them this step). Without any flagged tensor the norm and step size are NaN.

The loop calls this after ``optimizer.step()``, so the test pairs the last gradient with the updated
weight; for a scale-invariant tensor the cosine is still of the order ``lr * ||g|| / ||w||`` and far below
the threshold. Nothing here writes to parameters, gradients or optimizer state; the values are gathered on
the device and copied to the host once per call.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: AdamP/SGDP's defaults of the test, used for optimizers whose param groups do not carry them
DEFAULT_DELTA = 0.1
DEFAULT_EPS = 1e-8


def _scale_invariant():
    from adamp import scale_invariant

    return scale_invariant


def _group_of(optimizer: Any) -> dict[int, dict[str, Any]]:
    """id(param) -> its param group (params the optimizer does not train are absent)."""
    out: dict[int, dict[str, Any]] = {}
    for group in getattr(optimizer, "param_groups", []):
        for p in group["params"]:
            out[id(p)] = group
    return out


@torch.no_grad()
def collect(model: nn.Module, optimizer: Any) -> dict[str, float]:
    """Diagnostics of the trained ``>= 2``-D tensors of ``model``; see the module docstring for the keys."""
    test = _scale_invariant()
    groups = _group_of(optimizer)
    rows: list[torch.Tensor] = []
    lrs: list[float] = []
    projects: list[bool] = []
    seen: set[int] = set()
    for p in model.parameters():
        if p.ndim < 2 or id(p) in seen or id(p) not in groups:
            continue
        seen.add(id(p))
        group = groups[id(p)]
        # Only the projecting optimizers define delta/eps for this test; Adam's eps is a different quantity.
        projecting = "delta" in group
        delta = float(group["delta"]) if projecting else DEFAULT_DELTA
        eps = float(group.get("eps", DEFAULT_EPS)) if projecting else DEFAULT_EPS
        w = p.detach().float()
        if p.grad is None:
            flag = torch.zeros((), dtype=torch.bool, device=w.device)
        else:
            flag = test(w, p.grad.detach().float(), delta=delta, eps=eps)
        rows.append(torch.stack((flag.reshape(()).float(), w.pow(2).sum())))
        lrs.append(float(group["lr"]))
        projects.append(projecting)
    if not rows:
        return {"si_weight_norm": math.nan, "effective_step_size": math.nan, "si_fraction": math.nan,
                "projected_fraction": math.nan, "si_count": 0.0, "tensors_2d": 0.0}
    # One device->host copy for everything (tensors may live on several devices under model parallelism).
    values = torch.stack([r.to(rows[0].device) for r in rows]).tolist()
    flagged = [(lr, norm_sq) for (flag, norm_sq), lr in zip(values, lrs) if flag > 0.5]
    count = len(flagged)
    if count:
        si_norm = sum(math.sqrt(n) for _, n in flagged) / count
        step = sum(lr / n if n > 0 else math.inf for lr, n in flagged) / count
    else:
        si_norm = step = math.nan
    return {
        "si_weight_norm": float(si_norm),
        "effective_step_size": float(step),
        "si_fraction": count / len(values),
        "projected_fraction": sum(1 for (flag, _), pr in zip(values, projects) if flag > 0.5 and pr) / len(values),
        "si_count": float(count),
        "tensors_2d": float(len(values)),
    }


__all__ = ["DEFAULT_DELTA", "DEFAULT_EPS", "collect"]
