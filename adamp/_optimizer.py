"""The base class of AdamP and SGDP: a ``torch.optim.Optimizer`` that collects the params with grads, asks
:mod:`adamp._dispatch` which implementation runs each group, and steps it (or runs the Triton plan of
:mod:`adamp._plan` for the whole optimizer). The classes in ``adamp.py`` and ``sgdp.py`` derive from it."""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _dispatch
from ._rules import LOW_PRECISION, state_dtype


class ProjectedOptimizer(Optimizer):
    """Base of AdamP and SGDP: collects the params that have grads and checks what they support."""

    _name = "ProjectedOptimizer"

    def __init__(self, params, defaults: dict[str, Any]):
        if defaults.get("fused") and defaults.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._plan = None
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("nesterov", False)
            for key, value in self._extra_defaults().items():
                group.setdefault(key, value)

    def _extra_defaults(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict``, except that the state of half-precision params stays float32.

        torch casts every floating state tensor to its param's dtype: the float32 moments of an fp16/bf16
        param would come back rounded to half precision (fp16 flushes small second moments to zero) and the
        resumed run would differ from the uninterrupted one. The saved tensors are put back in float32
        instead; half-precision state (the official package's, or torch's own) is upcast, so it loads too.
        """
        saved_state = state_dict["state"]
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            if p.dtype not in LOW_PRECISION or saved_id not in saved_state:
                continue
            state = self.state[p]
            for key, value in saved_state[saved_id].items():
                if key != "step" and isinstance(value, Tensor) and value.is_floating_point():
                    # a copy, as torch's cast makes one: the state must not alias the caller's dict
                    state[key] = value.to(device=p.device, dtype=state_dtype(p), copy=True)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        plan = getattr(self, "_plan", None)
        if plan is not None and plan.valid():  # the Triton step with every launch input cached
            plan.run()
            return loss
        self._plan = None
        kernels, complete = [], True
        for group in self.param_groups:
            params, grads = self._params_with_grad(group)
            complete = complete and len(params) == len(group["params"])
            if not params:
                continue
            choice = self._choice(group, params)
            if choice.backend == "triton" and not torch.compiler.is_compiling():
                kernels.append((group, params, grads))
            else:
                complete = False
                self._step_group(group, params, grads)
        if kernels:
            from . import _plan

            plan, declined = _plan.build(self, kernels)
            plan.run()
            for group, params, grads in declined:  # layouts the kernels do not take: the fused path's fallback
                self._step_group(group, params, grads)
            if complete and not declined:
                self._plan = plan
        return loss

    def _choice(self, group: dict[str, Any], params: list[Tensor]):
        """Which implementation runs this group (adamp._dispatch.choose_for), said once per optimizer."""
        choice = _dispatch.choose_for(params, group.get("foreach"), group.get("fused"))
        self._report(choice.label, choice.reason, choice.fallback)
        return choice

    def _report(self, impl: str, why: str, fallback: bool = False) -> None:
        """Say once per optimizer which implementation runs and why: a log line (logger "adamp"), and a
        warning when it is not the one asked for (fused=True, or the CUDA default, running another)."""
        said = self.__dict__.setdefault("_said", set())
        if (impl, why) in said:
            return
        said.add((impl, why))
        message = f"{self._name}: the {impl} implementation runs: {why}"
        logging.getLogger("adamp").info(message)
        if fallback:
            warnings.warn(message, stacklevel=4)

    # The Triton step of a whole optimizer (adamp/_plan.py): what each optimizer provides.
    _triton_algo: int = -1
    #: group keys the scalar table is computed from, and those the tables' structure depends on
    _plan_scalar_keys: tuple[str, ...] = ()
    _plan_structural: tuple[str, ...] = ("delta", "nesterov", "maximize", "foreach", "fused")

    def _plan_state(self, group: dict[str, Any], params: list[Tensor]):
        """(state 1, state 2, step counts before this step or None) of ``params``, created if missing."""
        raise NotImplementedError

    def _plan_flags(self, group: dict[str, Any]) -> tuple[bool, bool, bool]:
        return bool(group["nesterov"]), bool(group["maximize"]), bool(group.get("project_buffer", True))

    def _plan_scalars(self, group: dict[str, Any], step: int | None) -> list[float]:
        raise NotImplementedError

    def _step_group(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        raise NotImplementedError

    def _params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        params, grads = [], []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(f"{self._name} does not support sparse gradients")
            if p.is_complex() or grad.is_complex():
                raise RuntimeError(f"{self._name} does not support complex parameters or gradients")
            params.append(p)
            grads.append(grad)
        return params, grads

    def _state_tensor(self, state: dict[str, Any], key: str, p: Tensor) -> Tensor:
        """The state tensor ``key`` of ``p``, created as zeros or moved to the precision we compute in.

        A state dict saved by the official package holds moments in the param's dtype; torch's
        ``load_state_dict`` also casts to the param's dtype. Half-precision moments are upcast here, once.
        """
        dtype = state_dtype(p)
        value = state.get(key)
        if value is None:
            value = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            state[key] = value
        elif value.dtype != dtype or value.device != p.device:
            value = value.to(device=p.device, dtype=dtype)
            state[key] = value
        return value

    def _implementation(self, group: dict[str, Any], params: list[Tensor]) -> str:
        return self._choice(group, params).impl
