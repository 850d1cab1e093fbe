"""Which implementation a param group runs, and why: a pure function of what is known without touching a
device, so that the choice for a CUDA device is testable on a machine without one.

Defaults (``foreach=None, fused=None``), measured (docs/performance.md):

* CUDA with Triton: the Triton kernels (adamp/_triton.py), 1.4-1.8x torch's fused AdamW on one H200, where
  the multi-tensor path took 8-13x and the inductor-compiled path compiled for a minute per model;
* CUDA without Triton, a group with tensor subclasses (DTensor shards), or a layout the kernels decline at
  step time: the multi-tensor (``foreach``) path, with its batched projection;
* the CPU: the multi-tensor path (per-tensor projection), the fastest that needs no compilation (ResNet-50
  on the shared 2-core machine: 132 ms against 240 ms for the single-tensor path);
* other devices: torch's own rule (multi-tensor where torch's optimizers default to it, else single-tensor).

``fused=True`` runs the Triton kernels where they run and otherwise falls back exactly like the default;
the inductor-compiled path (``torch.compile`` of the multi-tensor step; seconds to minutes of compilation on
the first step) runs only when asked for with ``ADAMP_FUSED_BACKEND=inductor`` (or
``adamp._fused.BACKEND = "inductor"``). ``foreach=True`` / ``foreach=False`` keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Choice:
    impl: str  # "single", "foreach", "fused": the functional implementation that runs
    backend: str | None  # for "fused": "triton" or "inductor"
    reason: str
    #: the caller asked for a faster path (fused=True, or the CUDA default) than the one that runs
    fallback: bool = False

    @property
    def label(self) -> str:
        return f"fused ({self.backend})" if self.impl == "fused" else self.impl


def choose(device_type: str, triton_available: bool, foreach: bool | None, fused: bool | None,
           plain_tensors: bool, backend: str = "triton", torch_foreach_default: bool = True) -> Choice:
    """The implementation for one param group.

    Args:
        device_type: the group's device type ("cuda", "cpu", ...).
        triton_available: whether the Triton kernels can run there (``adamp._triton.available``).
        foreach, fused: the group's flags.
        plain_tensors: all params are plain tensors or ``nn.Parameter`` (no subclass such as DTensor).
        backend: ``adamp._fused.BACKEND`` ("triton" or "inductor").
        torch_foreach_default: torch's own default for this device (used only for devices other than CUDA
            and the CPU).
    """
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if foreach:
        return Choice("foreach", None, "foreach=True")
    if foreach is False and not fused:
        return Choice("single", None, "foreach=False")
    asked = "fused=True" if fused else f"the default on {device_type}"
    if fused is None or fused is False:
        if device_type == "cpu":
            return Choice("foreach", None, "the default on the CPU: the fastest implementation that needs no "
                                           "compilation")
        if device_type != "cuda":
            impl = "foreach" if torch_foreach_default else "single"
            return Choice(impl, None, f"the default on {device_type} (torch's rule)")
    if backend == "inductor":
        return Choice("fused", "inductor", f"{asked} with ADAMP_FUSED_BACKEND=inductor (compiles on the first "
                                           "step)")
    if not triton_available:
        return Choice("foreach", None, f"{asked}, but the Triton kernels cannot run on {device_type} (no "
                                       "Triton, or not a CUDA device); ADAMP_FUSED_BACKEND=inductor compiles "
                                       "the step instead", fallback=True)
    if not plain_tensors:
        return Choice("foreach", None, f"{asked}, but the group holds tensor subclasses (e.g. DTensor), which "
                                       "the Triton kernels do not take", fallback=True)
    return Choice("fused", "triton", f"{asked}: the Triton kernels")


def choose_for(params: list[Tensor], foreach: bool | None, fused: bool | None) -> Choice:
    """:func:`choose` for a param group's tensors (all on one device): what it needs is read off them."""
    from . import _fused, _triton  # the Triton module imports triton: only once a step asks

    device = params[0].device
    return choose(device.type, _triton.available(device), foreach, fused, _triton.plain(params), _fused.backend(),
                  torch_foreach_default=device.type in ("cpu", "cuda") or default_to_foreach(params))


def default_to_foreach(params: list[Tensor]) -> bool:
    """Same rule as torch.optim (multi-tensor by default on CUDA and other native devices, not on the CPU)."""
    from torch.optim.optimizer import _default_to_fused_or_foreach

    _, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
    return bool(foreach)
