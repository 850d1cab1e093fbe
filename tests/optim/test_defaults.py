"""Which implementation runs by default and on request (adamp/_dispatch.py), said once per optimizer, and
the cached Triton step of a whole optimizer (adamp/_plan.py): reused while nothing changes, rebuilt when
something it was built from does, and equal to the single-tensor path."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch

import adamp
from adamp import _dispatch, _fused, _plan, _triton
from adamp._dispatch import choose
from tests.optim.cases import max_rel_diff

# --- the decision, for every device without touching one ------------------------------------------------------

CUDA_TRITON = dict(device_type="cuda", triton_available=True, plain_tensors=True)


@pytest.mark.parametrize("fused", [None, True])
def test_cuda_with_triton_runs_the_kernels_by_default_and_with_fused(fused):
    choice = choose(**CUDA_TRITON, foreach=None, fused=fused)
    assert (choice.impl, choice.backend, choice.fallback) == ("fused", "triton", False)


def test_cuda_foreach_true_keeps_the_multi_tensor_path_and_false_the_single_one():
    assert choose(**CUDA_TRITON, foreach=True, fused=None).impl == "foreach"
    assert choose(**CUDA_TRITON, foreach=False, fused=None).impl == "single"
    assert choose(**CUDA_TRITON, foreach=False, fused=True).backend == "triton"


@pytest.mark.parametrize("fused", [None, True])
def test_cuda_without_triton_or_with_subclasses_falls_back_to_foreach_never_to_a_compilation(fused):
    no_triton = choose("cuda", False, None, fused, True)
    subclass = choose("cuda", True, None, fused, False)
    for choice in (no_triton, subclass):
        assert (choice.impl, choice.backend, choice.fallback) == ("foreach", None, True)
    assert "cannot run on cuda" in no_triton.reason and "subclasses" in subclass.reason


def test_inductor_only_on_request():
    for fused in (None, True):
        choice = choose(**CUDA_TRITON, foreach=None, fused=fused, backend="inductor")
        assert (choice.impl, choice.backend) == ("fused", "inductor")
    assert choose("cpu", False, None, True, True, backend="inductor").backend == "inductor"
    # the CPU default never compiles, whatever the backend
    assert choose("cpu", False, None, None, True, backend="inductor").impl == "foreach"


def test_cpu_default_is_foreach_and_fused_without_triton_falls_back_with_a_warning():
    assert choose("cpu", False, None, None, True) == _dispatch.Choice(
        "foreach", None, "the default on the CPU: the fastest implementation that needs no compilation")
    assert choose("cpu", True, None, None, True).impl == "foreach"  # Triton's interpreter is for tests only
    fused = choose("cpu", False, None, True, True)
    assert (fused.impl, fused.fallback) == ("foreach", True)
    assert choose("cpu", True, None, True, True).backend == "triton"  # fused=True under the interpreter


def test_other_devices_follow_torchs_rule():
    assert choose("mps", False, None, None, True, torch_foreach_default=True).impl == "foreach"
    assert choose("mps", False, None, None, True, torch_foreach_default=False).impl == "single"


def test_fused_and_foreach_together_is_an_error():
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        choose(**CUDA_TRITON, foreach=True, fused=True)


# --- the optimizers on the CPU ---------------------------------------------------------------------------------

def _problem(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in ((6, 3, 3, 3), (5, 7), (7,))]
    for p in params:
        p.grad = torch.zeros_like(p)
    return params


def _set_grads(params, step):
    for i, p in enumerate(params):  # in place: the grads keep their addresses, as autograd's usually do
        p.grad.copy_(torch.sin(3.0 * p.detach() + 0.1 * step + i))


@pytest.mark.parametrize("cls,kw", [(adamp.AdamP, dict(lr=1e-2)), (adamp.SGDP, dict(lr=0.1, momentum=0.9))],
                         ids=["AdamP", "SGDP"])
def test_cpu_default_runs_foreach_and_says_so_once(cls, kw, caplog, monkeypatch):
    ran = []
    for module, name in ((adamp.adamp, "_multi_tensor_adamp"), (adamp.sgdp, "_multi_tensor_sgdp")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, **k: ran.append("foreach") or real(*a, **k))
    params = _problem()
    opt = cls(params, **kw)
    with caplog.at_level(logging.INFO, logger="adamp"), warnings.catch_warnings():
        warnings.simplefilter("error")  # the default is no fallback: no warning
        for step in range(3):
            _set_grads(params, step)
            opt.step()
    assert ran == ["foreach"] * 3
    said = [r.getMessage() for r in caplog.records if r.name == "adamp"]
    assert said == [f"{cls.__name__}: the foreach implementation runs: the default on the CPU: the fastest "
                    "implementation that needs no compilation"]


def test_kernels_asked_for_without_triton_warn_once_and_never_compile(monkeypatch):
    monkeypatch.setattr(_triton, "available", lambda device: False)
    monkeypatch.setattr(_fused, "compiled", lambda *a, **k: pytest.fail("compiled without being asked"))
    params = _problem()
    opt = adamp.AdamP(params, lr=1e-2, fused=True)
    with pytest.warns(UserWarning, match="AdamP: the foreach implementation runs: fused=True, but the Triton "
                                         "kernels cannot run on cpu") as seen:
        for step in range(3):
            _set_grads(params, step)
            opt.step()
    assert len(seen) == 1


def test_inductor_backend_compiles_when_asked(monkeypatch):
    compiled = []
    monkeypatch.setattr(_fused, "BACKEND", "inductor")
    monkeypatch.setattr(_fused, "compiled", lambda kind, fn: compiled.append(kind) or fn)  # no real compile
    params = _problem()
    opt = adamp.SGDP(params, lr=0.1, fused=True)
    _set_grads(params, 0)
    opt.step()
    assert compiled == ["sgdp"]


# --- the cached Triton step (in Triton's interpreter on the CPU) -----------------------------------------------

needs_kernels = pytest.mark.skipif(not _triton.available(torch.device("cpu")),
                                   reason="Triton's interpreter is off on machines with a GPU (CUDA tests)")

OPTIMIZERS = [(adamp.AdamP, dict(lr=1e-2, weight_decay=1e-2)),
              (adamp.SGDP, dict(lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True))]


def _groups(params, **second):
    return [dict(params=params[:2]), dict(params=params[2:], **second)]


@pytest.fixture
def counted(monkeypatch):
    """Counts of plan builds and of launch sequences."""
    counts = {"build": 0, "launch": 0}
    real_build, real_launch = _plan.build, _triton.launch
    monkeypatch.setattr(_plan, "build", lambda *a, **k: counts.__setitem__("build", counts["build"] + 1)
                        or real_build(*a, **k))
    monkeypatch.setattr(_triton, "launch", lambda *a, **k: counts.__setitem__("launch", counts["launch"] + 1)
                        or real_launch(*a, **k))
    return counts


@needs_kernels
@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=["AdamP", "SGDP"])
def test_plan_is_reused_merges_groups_and_follows_the_lr(cls, kw, counted):
    """Two groups with different hyper-parameters share one launch sequence; the plan is built once; an lr
    schedule changes only the scalar table; results equal the single-tensor path's (float64)."""
    kernels, single = _problem(), _problem()
    opt = cls(_groups(kernels, weight_decay=0.0, lr=kw["lr"] / 2), **kw, fused=True)
    ref = cls(_groups(single, weight_decay=0.0, lr=kw["lr"] / 2), **kw, foreach=False)
    schedules = [torch.optim.lr_scheduler.StepLR(o, 2, 0.5) for o in (opt, ref)]
    for step in range(5):
        for o, ps, sched in zip((opt, ref), (kernels, single), schedules):
            _set_grads(ps, step)
            o.step()
            sched.step()
    assert counted == {"build": 1, "launch": 5}
    assert max_rel_diff(single, kernels) <= 1e-12
    if cls is adamp.AdamP:
        assert [opt.state[p]["step"] for p in kernels] == [5, 5, 5]


@needs_kernels
@pytest.mark.parametrize("change", ["param data", "grad moved", "add_param_group", "delta", "load_state_dict",
                                    "grad none"])
def test_plan_is_rebuilt_when_what_it_was_built_from_changes(change, counted):
    kernels, single = _problem(), _problem()
    opt = adamp.AdamP(kernels, lr=1e-2, weight_decay=1e-2, fused=True)
    ref = adamp.AdamP(single, lr=1e-2, weight_decay=1e-2, foreach=False)
    for step in range(2):
        for o, ps in ((opt, kernels), (ref, single)):
            _set_grads(ps, step)
            o.step()
    assert counted["build"] == 1
    extra = []
    for o, ps in ((opt, kernels), (ref, single)):
        if change == "param data":
            ps[1].data = ps[1].data.clone()
        elif change == "grad moved":
            ps[0].grad = ps[0].grad.clone()
        elif change == "add_param_group":
            new = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.float64))
            new.grad = torch.full_like(new, 0.5)
            o.add_param_group(dict(params=[new]))
            extra.append(new)
        elif change == "delta":
            o.param_groups[0]["delta"] = 0.5
        elif change == "load_state_dict":
            o.load_state_dict(copy.deepcopy(o.state_dict()))
        elif change == "grad none":
            ps[2].grad = None
        _set_grads([p for p in ps if p.grad is not None], 2)
        o.step()
    # a moved grad needs only new address tables, everything else a new plan
    assert counted["build"] == (1 if change == "grad moved" else 2)
    assert max_rel_diff(single, kernels) <= 1e-12
    assert max_rel_diff(extra[1:], extra[:1]) <= 1e-12


# --- on a CUDA device (the GPU check runs these) ---------------------------------------------------------------

def _convnet(device):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).to(device, torch.float64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=["AdamP", "SGDP"])
def test_cuda_default_runs_the_cached_kernels_without_a_sync_and_matches_single(cls, kw, counted):
    """The CUDA default: the Triton kernels through one cached plan (autograd's grads come back at the same
    addresses step after step), no device-to-host synchronisation after the first step, and the result of
    the single-tensor path (float64)."""
    assert _triton.available(torch.device("cuda"))
    x = torch.randn(8, 3, 10, 10, device="cuda", dtype=torch.float64)
    y = torch.randint(0, 4, (8,), device="cuda")
    results = []
    for flags in ({}, {"foreach": False}):
        model = _convnet("cuda")
        opt = cls(model.parameters(), **kw, **flags)
        for step in range(4):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            if step > 0 and not flags:
                torch.cuda.set_sync_debug_mode("error")
            try:
                opt.step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        if not flags:
            assert counted == {"build": 1, "launch": 4}
        results.append(list(model.parameters()))
    assert max_rel_diff(*results) <= 1e-12
