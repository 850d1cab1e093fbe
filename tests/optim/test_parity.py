"""Parity with the official adamp==0.3.0 over the whole matrix, for every implementation of ours."""

from __future__ import annotations

import copy

import pytest
import torch

import adamp
from tests.optim.cases import OPTIMS, PROBLEM, max_rel_diff, run_steps
from benchmarks.reference import load_reference

STEPS = 50
# "single-select": the single-tensor path with the device-side selection it uses on GPUs / under compile;
# "foreach-segmented": the multi-tensor path with the batched projection it uses on GPUs
# "fused-triton": the fused path's Triton kernels (through Triton's interpreter on the CPU);
# "default": foreach=None, fused=None (on the CPU the multi-tensor path, adamp/_dispatch.py)
IMPLS = ["default", "single", "single-select", "foreach", "foreach-segmented", "fused", "fused-segmented",
         "fused-triton"]
MATRIX = [(info, vid, impl) for info in OPTIMS for vid in info.variants for impl in IMPLS]


@pytest.fixture(scope="module")
def reference():
    return load_reference()


def _impl_kwargs(impl: str) -> dict:
    if impl == "default":
        return {}
    return {"foreach": impl.startswith("foreach"), "fused": impl.startswith("fused")}  # "single*": neither


def _pair(info, reference, kwargs, impl, dtype=torch.float64):
    ours_params = PROBLEM.make_params(dtype)
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in ours_params]
    ref_kwargs = {k: v for k, v in kwargs.items() if k not in info.ours_only}
    ours = info.cls(ours_params, **kwargs, **_impl_kwargs(impl))
    ref = reference[info.reference_index](ref_params, **ref_kwargs)
    return ours, ours_params, ref, ref_params


def _state_tensors(opt, params, keys):
    return [opt.state[p][k] for p in params if p in opt.state for k in keys if k != "step"]


def test_problem_exercises_every_branch():
    """The parity problem really contains tensors for which each branch of the test fires."""
    params = PROBLEM.make_params(torch.float64)
    grads = PROBLEM.grad_fn(0, params)
    for p, g, expected in zip(params, grads, PROBLEM.expected):
        if expected is None:
            continue
        flag = bool(adamp.scale_invariant(p.detach(), g, delta=0.1, eps=1e-8))
        assert flag == (expected != "none"), (tuple(p.shape), expected)
        rows = p.shape[0]
        cos = torch.nn.functional.cosine_similarity(g.reshape(rows, -1), p.detach().reshape(rows, -1),
                                                    dim=1, eps=1e-8).abs()
        channel = bool(cos.max() < 0.1 / (p[0].numel() ** 0.5))
        assert channel == (expected == "channel"), (tuple(p.shape), expected)


@pytest.mark.parametrize("info,variant,impl", MATRIX,
                         ids=[f"{i.name}-{v}-{m}" for i, v, m in MATRIX])
def test_matches_reference_float64(reference, info, variant, impl):
    kwargs = info.variants[variant]
    ours, ours_params, ref, ref_params = _pair(info, reference, kwargs, impl)
    run_steps(ours, ours_params, PROBLEM.grad_fn, STEPS)
    run_steps(ref, ref_params, PROBLEM.grad_fn, STEPS)
    if impl == "default":
        assert {impl for impl, _ in ours._said} == {"foreach"}  # the CPU default, and only it, ran
    assert max_rel_diff(ref_params, ours_params) <= 1e-12
    ref_state = _state_tensors(ref, ref_params, info.state_keys)
    ours_state = _state_tensors(ours, ours_params, info.state_keys)
    assert len(ref_state) == len(ours_state) > 0
    assert max_rel_diff(ref_state, ours_state) <= 1e-12
    assert ours.state_dict()["state"].keys() == ref.state_dict()["state"].keys()


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
def test_several_param_groups_match_reference(reference, info):
    variants = list(info.variants.values())
    params = PROBLEM.make_params(torch.float64)
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    split = [params[:4], params[4:]]
    ref_split = [ref_params[:4], ref_params[4:]]
    base, other = variants[1], variants[2]
    strip = lambda kw: {k: v for k, v in kw.items() if k not in info.ours_only}  # noqa: E731
    ours = info.cls([{"params": split[0]}, {"params": split[1], **other}], **base)
    ref = reference[info.reference_index]([{"params": ref_split[0]}, {"params": ref_split[1], **strip(other)}],
                                          **strip(base))
    run_steps(ours, params, PROBLEM.grad_fn, STEPS)
    run_steps(ref, ref_params, PROBLEM.grad_fn, STEPS)
    assert max_rel_diff(ref_params, params) <= 1e-12


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
@pytest.mark.parametrize("direction", ["reference_to_ours", "ours_to_reference"])
def test_state_dict_interchange(reference, info, direction):
    """A state dict saved by one package loads into the other and training continues identically."""
    kwargs = list(info.variants.values())[1]
    ours, ours_params, ref, ref_params = _pair(info, reference, kwargs, "single")
    first, second = (ref, ours) if direction == "reference_to_ours" else (ours, ref)
    first_params = ref_params if first is ref else ours_params
    run_steps(first, first_params, PROBLEM.grad_fn, 20)
    # continue the uninterrupted run, and a copy that goes through the other package
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in first_params]
    resumed_cls = type(second)
    strip = kwargs if second is ours else {k: v for k, v in kwargs.items() if k not in info.ours_only}
    resumed = resumed_cls(resumed_params, **strip)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    run_steps(first, first_params, PROBLEM.grad_fn, 30, start=20)
    run_steps(resumed, resumed_params, PROBLEM.grad_fn, 30, start=20)
    assert max_rel_diff(first_params, resumed_params) <= 1e-12


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
@pytest.mark.parametrize("impl", ["foreach", "foreach-segmented", "fused", "fused-segmented", "fused-triton"])
def test_float32_paths_agree_with_single(info, impl):
    kwargs = list(info.variants.values())[1]
    single_params = PROBLEM.make_params(torch.float32)
    other_params = [torch.nn.Parameter(p.detach().clone()) for p in single_params]
    single = info.cls(single_params, **kwargs, foreach=False)
    other = info.cls(other_params, **kwargs, **_impl_kwargs(impl))
    for step in range(20):
        grads = PROBLEM.grad_fn(step, single_params)
        flags = [None if g is None or p.ndim < 2 else bool(adamp.scale_invariant(p.detach(), g))
                 for p, g in zip(single_params, grads)]
        other_grads = PROBLEM.grad_fn(step, other_params)
        other_flags = [None if g is None or p.ndim < 2 else bool(adamp.scale_invariant(p.detach(), g))
                       for p, g in zip(other_params, other_grads)]
        assert flags == other_flags, step
        for p, g in zip(single_params, grads):
            p.grad = g
        for p, g in zip(other_params, other_grads):
            p.grad = g
        single.step()
        other.step()
    assert max_rel_diff(single_params, other_params) <= 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_sgdp_paper_variant_differs_where_it_should(reference, impl):
    """project_buffer=False (paper) differs from the official rule only on projected tensors, and only
    without Nesterov."""
    ref_cls = reference[1]
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=1e-3)
    official = PROBLEM.make_params(torch.float64)
    paper = [torch.nn.Parameter(p.detach().clone()) for p in official]
    run_steps(ref_cls(official, **kwargs), official, PROBLEM.grad_fn, 30)
    opt = adamp.SGDP(paper, **kwargs, project_buffer=False, **_impl_kwargs(impl))
    run_steps(opt, paper, PROBLEM.grad_fn, 30)
    for i, expected in enumerate(PROBLEM.expected):
        diff = max_rel_diff([official[i]], [paper[i]])
        if expected in ("channel", "layer") and i != 6 and i != 7:
            assert diff > 1e-6, (i, expected, diff)
        elif expected in (None, "none") or i == 7:
            assert diff <= 1e-12, (i, expected, diff)
    # The buffer keeps its radial component in the paper variant.
    w, buf = paper[0].detach().reshape(6, -1), opt.state[paper[0]]["momentum"].reshape(6, -1)
    cos = torch.nn.functional.cosine_similarity(w, buf, dim=1).abs().max()
    assert cos > 1e-3

    nesterov = dict(kwargs, nesterov=True)
    a = PROBLEM.make_params(torch.float64)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    run_steps(ref_cls(a, **nesterov), a, PROBLEM.grad_fn, 30)
    run_steps(adamp.SGDP(b, **nesterov, project_buffer=False, **_impl_kwargs(impl)), b, PROBLEM.grad_fn, 30)
    assert max_rel_diff(a, b) <= 1e-12
