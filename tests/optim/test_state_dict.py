"""State dicts that must round-trip exactly (half-precision params keep float32 state), the official package's
half-precision state dicts, and param-group options torch users rely on (SGDP's per-group lr)."""

from __future__ import annotations

import copy

import pytest
import torch

import adamp
from benchmarks.reference import load_reference
from tests.optim.cases import OPTIMS
from tests.optim.test_behaviour import CASES, IDS, _kwargs

HALF = [torch.float16, torch.bfloat16]
HALF_IDS = ["fp16", "bf16"]


def _params(dtype):
    g = torch.Generator().manual_seed(0)
    shapes = [(16, 8), (6, 3, 3, 3), (8,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in shapes]


def _grads(params, step, scale):
    g = torch.Generator().manual_seed(100 + step)
    return [(scale * torch.randn(p.shape, generator=g)).to(p.dtype) for p in params]


def _run(opt, params, steps, scale=1e-4):
    # by default small gradients: their squares (the second moments) underflow in fp16 and lose digits in
    # bf16, where a float32 state is what keeps them
    for step in steps:
        for p, g in zip(params, _grads(params, step, scale)):
            p.grad = g
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_half_precision_round_trip_continues_bit_identically(info, impl, dtype):
    """torch's load_state_dict casts state to the param dtype; ours keeps the float32 state of fp16/bf16
    params, so a resumed run equals the uninterrupted one bit for bit."""
    params = _params(dtype)
    opt = info.cls(params, **_kwargs(info, impl))
    _run(opt, params, range(3))
    saved = copy.deepcopy(opt.state_dict())
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    expected = _run(opt, params, range(3, 6))

    resumed = info.cls(resumed_params, **_kwargs(info, impl))
    resumed.load_state_dict(saved)
    for p in resumed_params:
        for key, value in resumed.state[p].items():
            if torch.is_tensor(value):
                assert value.dtype == torch.float32, key
    got = _run(resumed, resumed_params, range(3, 6))
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    for p, q in zip(params, resumed_params):
        for key in info.state_keys:
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(resumed.state[q][key])), key


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
def test_loaded_state_does_not_alias_the_state_dict(info):
    params = _params(torch.bfloat16)
    opt = info.cls(params, **_kwargs(info, "single"))
    _run(opt, params, range(2))
    saved = opt.state_dict()  # no copy: the live optimizer's own tensors
    other = info.cls([torch.nn.Parameter(p.detach().clone()) for p in params], **_kwargs(info, "single"))
    other.load_state_dict(saved)
    key = [k for k in info.state_keys if k != "step"][0]
    before = opt.state[params[0]][key].clone()
    other.state[other.param_groups[0]["params"][0]][key].add_(1.0)
    assert torch.equal(opt.state[params[0]][key], before)


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_official_half_precision_state_dicts_load_upcast(info, dtype):
    """The official package keeps its moments in the param dtype: they load as float32 (exact upcast) and
    training continues as from the same values given in float32."""
    reference = load_reference()[info.reference_index]
    kwargs = {k: v for k, v in _kwargs(info, "single").items() if k not in info.ours_only}
    params = _params(dtype)
    # the official fp16 step turns some weights into inf (its eps of 1e-8 is 0 in fp16) while its moments stay
    # finite: ours continue from the initial weights, with the official moments
    initial = [p.detach().clone() for p in params]
    official = reference(params, **kwargs)
    _run(official, params, range(3), scale=1.0)  # in fp16 its moments of 1e-4 gradients would be 0
    saved = copy.deepcopy(official.state_dict())
    for state in saved["state"].values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                assert value.dtype == dtype  # what the official package saves
    upcast = copy.deepcopy(saved)
    for state in upcast["state"].values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.float()

    runs = []
    for state_dict in (saved, upcast):
        ours_params = [torch.nn.Parameter(p.clone()) for p in initial]
        ours = info.cls(ours_params, **_kwargs(info, "single"))
        ours.load_state_dict(state_dict)
        for p, state in zip(ours_params, saved["state"].values()):
            for key, value in state.items():
                if torch.is_tensor(value) and key != "step":
                    assert ours.state[p][key].dtype == torch.float32
                    assert torch.equal(ours.state[p][key], value.float())
        runs.append(_run(ours, ours_params, range(3, 6), scale=1.0))
    for a, b in zip(*runs):
        assert torch.isfinite(a).all() and torch.equal(a, b)


def test_sgdp_learning_rate_given_per_group_only():
    """As torch's SGD: no default lr is needed when every group has its own (``required`` per group)."""
    a, b = _params(torch.float64)[:2], _params(torch.float64)[:2]
    groups = adamp.SGDP([{"params": a[:1], "lr": 0.01}, {"params": a[1:], "lr": 0.1}], momentum=0.9)
    plain = adamp.SGDP([{"params": b[:1]}, {"params": b[1:], "lr": 0.1}], lr=0.01, momentum=0.9)
    assert [g["lr"] for g in groups.param_groups] == [0.01, 0.1]
    _run(groups, a, range(3))
    _run(plain, b, range(3))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    torch_sgd = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.01}], momentum=0.9)
    assert torch_sgd.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("groups,message", [
    ([{"params": [torch.nn.Parameter(torch.zeros(2))]}],
     "Invalid lr: SGDP requires a learning rate: pass lr=... or set 'lr' in every param group "
     "(param group 0 has none)"),
    ([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1}, {"params": [torch.nn.Parameter(torch.zeros(2))]}],
     "Invalid lr: SGDP requires a learning rate: pass lr=... or set 'lr' in every param group "
     "(param group 1 has none)"),
    ([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": -0.1}], "Invalid lr: -0.1; expected a number >= 0.0"),
], ids=["no-lr", "second-group-no-lr", "negative-group-lr"])
def test_sgdp_group_without_lr_is_an_error_naming_the_group(groups, message):
    with pytest.raises(ValueError) as excinfo:
        adamp.SGDP(groups, momentum=0.9)
    assert str(excinfo.value) == message
    opt = adamp.SGDP([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1}])
    with pytest.raises(ValueError, match=r"param group 1 has none"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
