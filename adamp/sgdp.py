"""SGDP: SGD (with momentum) with the radial component of the update removed on scale-invariant weights."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable

import torch
from torch import Tensor
from torch.optim.optimizer import required

from . import _fused
from ._optimizer import ProjectedOptimizer
from ._rules import LOW_PRECISION, check_number, functional_impl, projectable
from ._multi_tensor import chunks_by_numel, group_by_device_and_dtype, split_by_ndim, work_copies
from ._projection import add_scaled_, decay_scale, project_and_decay_, single_tensor_projection

__all__ = ["SGDP", "sgdp"]


class SGDP(ProjectedOptimizer):
    r"""SGDP (Heo et al., ICLR 2021), numerically identical to the official ``adamp==0.3.0``.

    .. math::
        \begin{aligned}
        &b_t = \mu b_{t-1} + (1-\tau) g_t \quad (b_0 = 0), \qquad
          u_t = \begin{cases} g_t + \mu b_t & \text{nesterov} \\ b_t & \text{otherwise} \end{cases} \\
        &\text{projection of } u_t \text{ and ratio } r \text{ exactly as in } \mathrm{AdamP} \\
        &w_{t+1} = w_t \left(1 - \frac{\eta \lambda r}{1-\mu}\right) - \eta u_t
        \end{aligned}

    with momentum :math:`\mu`, dampening :math:`\tau`, learning rate :math:`\eta`, weight decay
    :math:`\lambda` (decoupled, multiplied by ``lr`` and divided by :math:`1-\mu`).

    Without Nesterov the official code projects the stored momentum buffer itself (``u_t`` *is*
    :math:`b_t`), so the next step starts from the projected buffer. That is the default here
    (``project_buffer=True``). ``project_buffer=False`` keeps the buffer unprojected and projects only the
    step, as in the paper's Algorithm 1 (and timm / pytorch-optimizer). With ``nesterov=True`` both agree.

    Args:
        params: iterable of parameters or param-group dicts.
        lr: learning rate :math:`\eta`; required unless every param group sets its own ``lr`` (as in
            :class:`torch.optim.SGD`).
        momentum: momentum factor :math:`\mu` (default 0).
        dampening: dampening :math:`\tau`, applied from the first step (default 0).
        weight_decay: decoupled decay :math:`\lambda` (default 0); needs ``momentum < 1``.
        nesterov: Nesterov momentum (default False).
        eps: added to the row norms of the projection and the lower clamp of the cosine similarity's norms
            (default 1e-8).
        delta: threshold :math:`\delta` of the scale-invariance test (default 0.1).
        wd_ratio: factor applied to the decay of tensors that were projected (default 0.1).
        project_buffer: project the momentum buffer in place (official, default) or not (paper).
        maximize, foreach, fused: as in :class:`torch.optim.SGD` / :class:`adamp.AdamP`.

    Half-precision params keep the buffer in float32 and are updated with float32 math.
    """

    _name = "SGDP"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = required,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        eps: float = 1e-8,
        delta: float = 0.1,
        wd_ratio: float = 0.1,
        *,
        project_buffer: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        if lr is not required:  # like torch's SGD: without a default, every param group must set its own
            check_number("lr", lr)
        check_number("momentum", momentum)
        check_number("dampening", dampening)
        check_number("weight_decay", weight_decay)
        check_number("eps", eps)
        check_number("delta", delta)
        check_number("wd_ratio", wd_ratio, high=1.0, high_inclusive=True)
        if weight_decay > 0 and momentum >= 1:
            raise ValueError(
                f"Invalid momentum: {momentum} with weight_decay={weight_decay}; SGDP divides the decay by "
                "(1 - momentum), so momentum must be < 1 when weight_decay > 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio,
                        project_buffer=project_buffer, maximize=maximize, foreach=foreach, fused=fused)
        super().__init__(params, defaults)

    def _extra_defaults(self) -> dict[str, Any]:
        return {"project_buffer": True}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, with the learning rate checked per group (torch's ``required``)."""
        if isinstance(param_group, dict):
            if "lr" in param_group:
                check_number("lr", param_group["lr"])
            elif self.defaults.get("lr") is required:
                raise ValueError(f"Invalid lr: SGDP requires a learning rate: pass lr=... or set 'lr' in every "
                                 f"param group (param group {len(self.param_groups)} has none)")
        super().add_param_group(param_group)

    _triton_algo = 1  # adamp._triton.SGDP
    _plan_scalar_keys = ("lr", "momentum", "dampening", "weight_decay", "wd_ratio", "eps")
    _plan_structural = ("delta", "nesterov", "maximize", "project_buffer", "foreach", "fused")

    def _plan_state(self, group, params):
        self._check_momentum(group)
        bufs = [self._state_tensor(self.state[p], "momentum", p) for p in params]
        return bufs, bufs, None

    def _plan_scalars(self, group, step):
        return triton_scalars(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                              group["wd_ratio"], group["eps"])

    @staticmethod
    def _check_momentum(group: dict[str, Any]) -> None:
        if group["weight_decay"] > 0 and group["momentum"] >= 1:
            raise ValueError(f"Invalid momentum: {group['momentum']} with weight_decay="
                             f"{group['weight_decay']}; momentum must be < 1 when weight_decay > 0")

    def _step_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        if group["weight_decay"] > 0 and group["momentum"] >= 1:
            raise ValueError(f"Invalid momentum: {group['momentum']} with weight_decay="
                             f"{group['weight_decay']}; momentum must be < 1 when weight_decay > 0")
        bufs = [self._state_tensor(self.state[p], "momentum", p) for p in params]
        sgdp(params, grads, bufs, impl=self._implementation(group, params), lr=group["lr"],
             momentum=group["momentum"], dampening=group["dampening"], weight_decay=group["weight_decay"],
             nesterov=group["nesterov"], eps=group["eps"], delta=group["delta"], wd_ratio=group["wd_ratio"],
             project_buffer=group["project_buffer"], maximize=group["maximize"], _report=self._report)


@torch.no_grad()
def sgdp(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    impl: str | None = None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    eps: float,
    delta: float,
    wd_ratio: float,
    project_buffer: bool = True,
    maximize: bool = False,
    _report=None,
) -> None:
    """Functional SGDP (see :class:`SGDP`): updates ``params`` and ``momentum_buffers`` in place.

    Buffers start as zeros (dampening applies from the first step, as in the official package).
    """
    impl = impl or functional_impl(foreach, fused)
    fn = {"single": _single_tensor_sgdp, "foreach": _multi_tensor_sgdp, "fused": _fused_sgdp}[impl]
    extra = {"_report": _report} if impl == "fused" else {}
    fn(params, grads, momentum_buffers, lr=lr, momentum=momentum, dampening=dampening,
       weight_decay=weight_decay, nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio,
       project_buffer=project_buffer, maximize=maximize, **extra)


def _decay_scales(lr, weight_decay, wd_ratio, momentum):
    return (1 - lr * weight_decay * wd_ratio / (1 - momentum),
            1 - lr * weight_decay * 1 / (1 - momentum)) if weight_decay > 0 else (1.0, 1.0)


def _single_tensor_sgdp(params, grads, momentum_buffers, *, lr, momentum, dampening, weight_decay,
                        nesterov, eps, delta, wd_ratio, project_buffer, maximize):
    scale_projected, scale_plain = _decay_scales(lr, weight_decay, wd_ratio, momentum)
    for p, grad, buf in zip(params, grads, momentum_buffers):
        low = p.dtype in LOW_PRECISION
        w = p.float() if low else p
        grad = grad.float() if low else grad
        if maximize:
            grad = -grad
        buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        if nesterov:
            update = grad + momentum * buf
        else:
            update = buf if project_buffer else buf.clone()

        if projectable(w):
            projected = single_tensor_projection(w, grad, update, delta, eps)
            if weight_decay > 0:
                w.mul_(decay_scale(projected, w, scale_projected, scale_plain))
        elif weight_decay > 0:
            w.mul_(scale_plain)
        w.add_(update, alpha=-lr)
        if low:
            p.copy_(w)


def triton_scalars(lr, momentum, dampening, weight_decay, wd_ratio, eps) -> list[float]:
    """The scalar row of the Triton kernels (adamp._triton.step) for one group."""
    scale_projected, scale_plain = _decay_scales(lr, weight_decay, wd_ratio, momentum)
    return [momentum, 1 - dampening, 0.0, 0.0, 1.0, eps, -lr, scale_projected, scale_plain]


def _multi_tensor_sgdp(params, grads, momentum_buffers, *, lr, momentum, dampening, weight_decay,
                       nesterov, eps, delta, wd_ratio, project_buffer, maximize, _compiled=False, _report=None):
    # As in AdamP: per (device, dtype) group, with lr-dependent scalars as 0-d tensors when compiled.
    scale_projected, scale_plain = _decay_scales(lr, weight_decay, wd_ratio, momentum)
    for ps, gs, bufs in group_by_device_and_dtype([params, grads, momentum_buffers]):
        scalars = dict(neg_lr=-lr, scale_projected=scale_projected, scale_plain=scale_plain)
        compiled = _compiled
        if _compiled:
            how, why = _fused.mode(ps)
            if how == "triton":
                from . import _triton

                if _triton.step(_triton.SGDP, ps, gs, bufs, bufs,
                                triton_scalars(lr, momentum, dampening, weight_decay, wd_ratio, eps),
                                delta=delta, nesterov=nesterov, maximize=maximize, project_buffer=project_buffer):
                    continue
                how, why = "eager", _triton.DECLINED
            compiled = how == "inductor"
            if how == "eager":
                _fused.report(_report, "foreach", why)
        core = _fused.compiled("sgdp", _multi_tensor_sgdp_core) if compiled else _multi_tensor_sgdp_core
        layouts = None
        if compiled:
            scalars = _fused.as_device_scalars(scalars, ps[0].device, ps[0].dtype)
            if _fused.SEGMENTED:
                layouts = [_fused.segmented_layout([ps[i] for i in chunk], delta) for chunk in chunks_by_numel(ps)]
        with _fused.recompile_budget() if compiled else contextlib.nullcontext():
            core(ps, gs, bufs, **scalars, momentum=momentum, dampening=dampening, apply_decay=weight_decay > 0,
                 nesterov=nesterov, eps=eps, delta=delta, project_buffer=project_buffer, maximize=maximize,
                 layouts=layouts)


def _multi_tensor_sgdp_core(ps, gs, bufs, *, neg_lr, scale_projected, scale_plain, momentum, dampening,
                            apply_decay, nesterov, eps, delta, project_buffer, maximize, layouts=None):
    """One device and dtype; ``layouts``: one precomputed segmented layout per chunk (compiled segmented
    variant) or None."""
    ws, gs = work_copies(ps, gs, maximize)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, gs, alpha=1 - dampening)
    for k, idx in enumerate(chunks_by_numel(ws)):
        w, g, b = ([lst[i] for i in idx] for lst in (ws, gs, bufs))
        if nesterov:
            updates = torch._foreach_mul(b, momentum)
            torch._foreach_add_(updates, g)
        else:
            updates = b if project_buffer else torch._foreach_mul(b, 1.0)

        multi, flat = split_by_ndim(list(range(len(w))), w)
        project_and_decay_([w[i] for i in multi], [g[i] for i in multi], [updates[i] for i in multi], delta,
                           eps, apply_decay, scale_projected, scale_plain, layouts[k] if layouts else None)
        if flat and apply_decay:
            torch._foreach_mul_([w[i] for i in flat], scale_plain)
        if updates is b:
            # the buffer is state: scale a copy of it, not the buffer itself
            updates = torch._foreach_mul(b, 1.0) if isinstance(neg_lr, torch.Tensor) else b
        add_scaled_(w, updates, neg_lr)
    if ws is not ps:
        torch._foreach_copy_(ps, ws)


def _fused_sgdp(params, grads, momentum_buffers, *, lr, momentum, dampening, weight_decay, nesterov, eps,
                delta, wd_ratio, project_buffer, maximize, _report=None):
    _multi_tensor_sgdp(params, grads, momentum_buffers, lr=lr, momentum=momentum, dampening=dampening,
                       weight_decay=weight_decay, nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio,
                       project_buffer=project_buffer, maximize=maximize, _compiled=True, _report=_report)
