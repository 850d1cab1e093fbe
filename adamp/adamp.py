"""AdamP: Adam with the radial component of the update removed on scale-invariant weights."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterable

import torch
from torch import Tensor

from . import _fused
from ._optimizer import ProjectedOptimizer
from ._rules import LOW_PRECISION, check_number, functional_impl, projectable
from ._multi_tensor import chunks_by_numel, split_by_ndim, work_copies
from ._projection import add_scaled_, decay_scale, project_and_decay_, single_tensor_projection

__all__ = ["AdamP", "adamp"]


class AdamP(ProjectedOptimizer):
    r"""AdamP (Heo et al., ICLR 2021), numerically identical to the official ``adamp==0.3.0``.

    .. math::
        \begin{aligned}
        &m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        &d_t = \frac{\sqrt{v_t}}{\sqrt{1-\beta_2^t}} + \epsilon, \qquad
          u_t = \begin{cases} (\beta_1 m_t + (1-\beta_1) g_t) / d_t & \text{nesterov} \\
                              m_t / d_t & \text{otherwise} \end{cases} \\
        &\text{for } w \text{ with } \ge 2 \text{ dims, views } V \in (\text{channel}, \text{layer}),
          \text{ first that fires:} \\
        &\qquad \max_k |\cos(g_{t,k}, w_{t,k})| < \delta / \sqrt{\dim V}
          \;\Rightarrow\; u_{t,k} \leftarrow u_{t,k} - (\hat w_{t,k}\cdot u_{t,k})\,\hat w_{t,k},
          \quad \hat w_{t,k} = \frac{w_{t,k}}{\|w_{t,k}\| + \epsilon},\quad r = \text{wd\_ratio} \\
        &\text{otherwise } r = 1 \\
        &w_{t+1} = w_t (1 - \eta \lambda r) - \frac{\eta}{1-\beta_1^t} u_t
        \end{aligned}

    where :math:`g_t` is the raw gradient (negated with ``maximize``), :math:`\eta` is ``lr`` and
    :math:`\lambda` is ``weight_decay``; decay is decoupled and multiplied by the learning rate, so
    ``lr=1e-3, weight_decay=0.1`` here is a decay of 1e-4 in the AdamW paper's notation.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate :math:`\eta` (default 1e-3).
        betas: coefficients :math:`(\beta_1, \beta_2)` of the running averages (default (0.9, 0.999)).
        eps: added to the denominator, to the row norms of the projection, and the lower clamp of the norms
            in the cosine similarity (default 1e-8).
        weight_decay: decoupled decay :math:`\lambda`, multiplied by ``lr`` (default 0).
        delta: threshold :math:`\delta` of the scale-invariance test (default 0.1).
        wd_ratio: factor applied to the decay of tensors that were projected (default 0.1).
        nesterov: Nesterov-style update direction (default False).
        maximize: maximise the objective instead of minimising it (default False).
        foreach: ``True``: the multi-tensor implementation (on CUDA and XPU it projects all tensors at once
            with segmented reductions, elsewhere tensor by tensor; ``adamp._projection.SEGMENTED`` forces
            either); ``False``: the single-tensor one.
        fused: ``True``: the Triton kernels (:mod:`adamp._triton`, four launches per step for all groups of a
            device and dtype) where they run (CUDA with Triton), else the multi-tensor implementation, with
            a warning; the ``torch.compile``-d step only with ``ADAMP_FUSED_BACKEND=inductor``.
            With neither flag set (default): the Triton kernels on CUDA, the multi-tensor implementation on
            the CPU (see ``adamp/_dispatch.py`` and docs/performance.md). The choice and its reason are logged
            once per optimizer (logger ``"adamp"``); a fallback from the kernels is also a warning.

    Half-precision (fp16/bf16) params keep their state in float32 and are updated with float32 math.
    ``step()`` never synchronises the device with the host.
    """

    _name = "AdamP"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        check_number("lr", lr)
        check_number("eps", eps)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas!r}; expected a pair (beta1, beta2)")
        check_number("betas[0]", betas[0], high=1.0)
        check_number("betas[1]", betas[1], high=1.0)
        check_number("weight_decay", weight_decay)
        check_number("delta", delta)
        check_number("wd_ratio", wd_ratio, high=1.0, high_inclusive=True)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, delta=delta,
                        wd_ratio=wd_ratio, nesterov=nesterov, maximize=maximize, foreach=foreach,
                        fused=fused)
        super().__init__(params, defaults)

    _triton_algo = 0  # adamp._triton.ADAMP
    _plan_scalar_keys = ("lr", "betas", "eps", "weight_decay", "wd_ratio")

    def _plan_state(self, group, params):
        state = self.state
        exp_avgs = [self._state_tensor(state[p], "exp_avg", p) for p in params]
        exp_avg_sqs = [self._state_tensor(state[p], "exp_avg_sq", p) for p in params]
        return exp_avgs, exp_avg_sqs, [int(state[p].get("step", 0)) for p in params]

    def _plan_scalars(self, group, step):
        beta1, beta2 = group["betas"]
        return triton_scalars(group["lr"], beta1, beta2, group["eps"], group["weight_decay"], group["wd_ratio"],
                              step)

    def _step_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            exp_avgs.append(self._state_tensor(state, "exp_avg", p))
            exp_avg_sqs.append(self._state_tensor(state, "exp_avg_sq", p))
            state["step"] = int(state.get("step", 0)) + 1
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adamp(params, grads, exp_avgs, exp_avg_sqs, steps, impl=self._implementation(group, params),
              lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
              delta=group["delta"], wd_ratio=group["wd_ratio"], nesterov=group["nesterov"],
              maximize=group["maximize"], _report=self._report)


@torch.no_grad()
def adamp(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[int],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    impl: str | None = None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    delta: float,
    wd_ratio: float,
    nesterov: bool,
    maximize: bool = False,
    _report=None,
) -> None:
    """Functional AdamP (see :class:`AdamP`): updates ``params``, ``exp_avgs`` and ``exp_avg_sqs`` in place.

    ``state_steps`` holds each parameter's step count *after* this update (1 on the first step).
    ``impl`` ("single", "foreach", "fused") overrides ``foreach``/``fused``; by default the single-tensor
    implementation runs unless ``foreach`` or ``fused`` is set. ``fused`` runs the Triton kernels where they
    run, the eager multi-tensor path where not (with a warning), inductor with ``ADAMP_FUSED_BACKEND=inductor``.
    """
    impl = impl or functional_impl(foreach, fused)
    fn = {"single": _single_tensor_adamp, "foreach": _multi_tensor_adamp, "fused": _fused_adamp}[impl]
    extra = {"_report": _report} if impl == "fused" else {}
    fn(params, grads, exp_avgs, exp_avg_sqs, state_steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
       weight_decay=weight_decay, delta=delta, wd_ratio=wd_ratio, nesterov=nesterov, maximize=maximize, **extra)


def _single_tensor_adamp(params, grads, exp_avgs, exp_avg_sqs, state_steps, *, lr, beta1, beta2, eps,
                         weight_decay, delta, wd_ratio, nesterov, maximize):
    scale_projected = 1 - lr * weight_decay * wd_ratio
    scale_plain = 1 - lr * weight_decay * 1
    for p, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs, state_steps):
        low = p.dtype in LOW_PRECISION
        w = p.float() if low else p
        grad = grad.float() if low else grad
        if maximize:
            grad = -grad
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step

        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
        step_size = lr / bias_correction1
        if nesterov:
            update = (beta1 * exp_avg + (1 - beta1) * grad) / denom
        else:
            update = exp_avg / denom

        if projectable(w):
            projected = single_tensor_projection(w, grad, update, delta, eps)
            if weight_decay > 0:
                w.mul_(decay_scale(projected, w, scale_projected, scale_plain))
        elif weight_decay > 0:
            w.mul_(scale_plain)
        w.add_(update, alpha=-step_size)
        if low:
            p.copy_(w)


def triton_scalars(lr, beta1, beta2, eps, weight_decay, wd_ratio, step) -> list[float]:
    """The scalar row of the Triton kernels (adamp._triton.step) for one group and step count."""
    return [beta1, 1 - beta1, beta2, 1 - beta2, math.sqrt(1 - beta2**step), eps, -lr / (1 - beta1**step),
            1 - lr * weight_decay * wd_ratio, 1 - lr * weight_decay * 1]


def _multi_tensor_adamp(params, grads, exp_avgs, exp_avg_sqs, state_steps, *, lr, beta1, beta2, eps,
                        weight_decay, delta, wd_ratio, nesterov, maximize, _compiled=False, _report=None):
    # Tensors are grouped by device, dtype and step count (normally one group each) and the scalars that
    # change during training (lr, bias corrections) computed here. The compiled step receives them as 0-d
    # device tensors, so it neither recompiles when they change nor copies them from the host.
    by_key: dict[tuple, list[int]] = {}
    for i, (p, s) in enumerate(zip(params, state_steps)):
        by_key.setdefault((p.device, p.dtype, int(s)), []).append(i)
    for (device, dtype, step), idx in by_key.items():
        scalars = dict(step_size=-lr / (1 - beta1**step), sqrt_bc2=math.sqrt(1 - beta2**step),
                       scale_projected=1 - lr * weight_decay * wd_ratio, scale_plain=1 - lr * weight_decay * 1)
        pick = (lambda lst: [lst[i] for i in idx]) if len(by_key) > 1 else (lambda lst: lst)
        compiled = _compiled
        if _compiled:
            how, why = _fused.mode(pick(params))
            if how == "triton":
                from . import _triton

                if _triton.step(_triton.ADAMP, pick(params), pick(grads), pick(exp_avgs), pick(exp_avg_sqs),
                                triton_scalars(lr, beta1, beta2, eps, weight_decay, wd_ratio, step),
                                delta=delta, nesterov=nesterov, maximize=maximize):
                    continue
                how, why = "eager", _triton.DECLINED
            compiled = how == "inductor"
            if how == "eager":
                _fused.report(_report, "foreach", why)
        core = _fused.compiled("adamp", _multi_tensor_adamp_core) if compiled else _multi_tensor_adamp_core
        layouts = None
        if compiled:
            scalars = _fused.as_device_scalars(scalars, device, dtype)
            if _fused.SEGMENTED:
                layouts = [_fused.segmented_layout([pick(params)[i] for i in chunk], delta)
                           for chunk in chunks_by_numel(pick(params))]
        with _fused.recompile_budget() if compiled else contextlib.nullcontext():
            core(pick(params), pick(grads), pick(exp_avgs), pick(exp_avg_sqs), **scalars, beta1=beta1,
                 beta2=beta2, eps=eps, apply_decay=weight_decay > 0, delta=delta, nesterov=nesterov,
                 maximize=maximize, layouts=layouts)


def _multi_tensor_adamp_core(ps, gs, ms, vs, *, step_size, sqrt_bc2, scale_projected, scale_plain, beta1,
                             beta2, eps, apply_decay, delta, nesterov, maximize, layouts=None):
    """One device, one dtype, one step count; scalars are Python numbers or 0-d tensors; ``layouts``: one
    precomputed segmented layout per chunk (compiled segmented variant) or None."""
    ws, gs = work_copies(ps, gs, maximize)

    torch._foreach_mul_(ms, beta1)
    torch._foreach_add_(ms, gs, alpha=1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)

    for k, idx in enumerate(chunks_by_numel(ws)):
        w, g, m, v = ([lst[i] for i in idx] for lst in (ws, gs, ms, vs))
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, sqrt_bc2)
        torch._foreach_add_(denom, eps)
        if nesterov:
            update = torch._foreach_mul(m, beta1)
            torch._foreach_add_(update, torch._foreach_mul(g, 1 - beta1))
            torch._foreach_div_(update, denom)
        else:
            update = torch._foreach_div(m, denom)
        del denom

        multi, flat = split_by_ndim(list(range(len(idx))), w)
        project_and_decay_([w[i] for i in multi], [g[i] for i in multi], [update[i] for i in multi], delta, eps,
                           apply_decay, scale_projected, scale_plain, layouts[k] if layouts else None)
        if flat and apply_decay:
            torch._foreach_mul_([w[i] for i in flat], scale_plain)
        add_scaled_(w, update, step_size)
    if ws is not ps:
        torch._foreach_copy_(ps, ws)


def _fused_adamp(params, grads, exp_avgs, exp_avg_sqs, state_steps, *, lr, beta1, beta2, eps,
                 weight_decay, delta, wd_ratio, nesterov, maximize, _report=None):
    _multi_tensor_adamp(params, grads, exp_avgs, exp_avg_sqs, state_steps, lr=lr, beta1=beta1, beta2=beta2,
                        eps=eps, weight_decay=weight_decay, delta=delta, wd_ratio=wd_ratio, nesterov=nesterov,
                        maximize=maximize, _compiled=True, _report=_report)
