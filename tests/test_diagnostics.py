"""Scale-invariance diagnostics: which tensors are flagged, the values on a hand-built case, no side effects."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from adamp import SGDP
from benchmarks.training.diagnostics import collect


def _backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()


def test_conv_weights_followed_by_batchnorm_are_flagged_the_head_is_not() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _backward(model, torch.randn(16, 3, 10, 10), torch.randint(0, 4, (16,)))
    out = collect(model, optimizer)
    assert out["tensors_2d"] == 3 and out["si_count"] == 2
    assert out["si_fraction"] == pytest.approx(2 / 3)
    conv_norms = [model[0].weight.norm().item(), model[3].weight.norm().item()]
    assert out["si_weight_norm"] == pytest.approx(sum(conv_norms) / 2, rel=1e-6)
    assert out["effective_step_size"] == pytest.approx(sum(0.1 / n**2 for n in conv_norms) / 2, rel=1e-6)


def test_plain_linear_net_without_normalisation_is_not_flagged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _backward(model, torch.randn(32, 6), torch.randint(0, 3, (32,)))
    out = collect(model, optimizer)
    assert out["tensors_2d"] == 3 and out["si_count"] == 0 and out["si_fraction"] == 0.0
    assert math.isnan(out["si_weight_norm"]) and math.isnan(out["effective_step_size"])


class _Hand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # grad orthogonal: flagged, ||a|| = 5
        self.b = nn.Parameter(torch.tensor([[0.0, 2.0]]))  # grad orthogonal: flagged, ||b|| = 2
        self.c = nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # grad parallel: not flagged
        self.bias = nn.Parameter(torch.tensor([1.0, -1.0]))  # 1-D: never counted

    def set_grads(self, c_grad: torch.Tensor | None = None) -> None:
        self.a.grad = torch.tensor([[4.0, -3.0]])
        self.b.grad = torch.tensor([[1.0, 0.0]])
        self.c.grad = self.c.detach().clone() if c_grad is None else c_grad
        self.bias.grad = torch.ones(2)


def test_values_on_a_hand_built_case_with_per_group_learning_rates() -> None:
    model = _Hand()
    model.set_grads()
    optimizer = torch.optim.SGD([{"params": [model.a, model.c, model.bias], "lr": 0.5},
                                 {"params": [model.b], "lr": 0.1}], lr=1.0)
    out = collect(model, optimizer)
    assert out["tensors_2d"] == 3 and out["si_count"] == 2
    assert out["si_fraction"] == pytest.approx(2 / 3)
    assert out["si_weight_norm"] == pytest.approx((5.0 + 2.0) / 2)
    assert out["effective_step_size"] == pytest.approx((0.5 / 25.0 + 0.1 / 4.0) / 2)


def test_parameters_outside_the_optimizer_or_without_grad() -> None:
    model = _Hand()
    model.set_grads()
    model.b.grad = None  # no gradient: counted, not flagged
    optimizer = torch.optim.SGD([model.a, model.b, model.bias], lr=0.5)  # c is not trained: ignored
    out = collect(model, optimizer)
    assert out["tensors_2d"] == 2 and out["si_count"] == 1
    assert out["si_weight_norm"] == pytest.approx(5.0)


def test_delta_comes_from_the_projecting_optimizers_param_group() -> None:
    # |cos(g, w)| = 0.05: below 0.1 / sqrt(2) = 0.0707 (default delta), above 0.05 / sqrt(2) = 0.0354
    model = _Hand()
    model.set_grads()
    angle = math.acos(0.05)
    model.a.data = torch.tensor([[1.0, 0.0]])
    model.a.grad = torch.tensor([[math.cos(angle), math.sin(angle)]])
    only_a = [model.a]
    assert collect(model, torch.optim.SGD(only_a, lr=0.1))["si_count"] == 1
    assert collect(model, SGDP(only_a, lr=0.1))["si_count"] == 1
    assert collect(model, SGDP(only_a, lr=0.1, delta=0.05))["si_count"] == 0


def test_collect_changes_no_optimizer_state_parameter_or_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    optimizer = SGDP(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(8, 2, 6, 6), torch.randint(0, 2, (8,))
    for _ in range(3):
        _backward(model, x, y)
        optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad.clone() for p in model.parameters()]
    first = collect(model, optimizer)
    second = collect(model, optimizer)
    assert first == second
    after = optimizer.state_dict()
    for key, value in state["state"].items():
        for name, tensor in value.items():
            assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(after["state"][key][name]))
    assert state["param_groups"] == after["param_groups"]
    assert all(torch.equal(a, p) for a, p in zip(params, model.parameters()))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_toy_weight_is_flagged_every_step_when_collected_before_the_update() -> None:
    """The test pairs a gradient with a weight: AdamP/SGDP pair g_t with w_t (before the update). On the 2-D
    toy one update turns w by up to ~0.3 rad, so g_t paired with w_{t+1} fails the test although the weight is
    scale-invariant: diagnostics must be collected between backward() and step() to report what the
    optimizer sees."""
    from benchmarks.tasks.toy import CosineToy

    model = CosineToy(90.0, 1.0)
    optimizer = SGDP(model.parameters(), lr=0.04, momentum=0.9)
    before, after = [], []
    for _ in range(20):
        optimizer.zero_grad()
        model().backward()
        before.append(collect(model, optimizer)["si_fraction"])
        optimizer.step()
        after.append(collect(model, optimizer)["si_fraction"])
    assert before == [1.0] * 20
    assert min(after) == 0.0  # the post-update pairing misses the toy weight


def test_non_projecting_optimizers_project_nothing():
    # SGD/Adam's diagnostics said "fraction projected 0.80": they project nothing; si_fraction is what AdamP
    # would project, projected_fraction what the optimizer really does
    from adamp import AdamP

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for cls, projects in ((torch.optim.SGD, False), (torch.optim.Adam, False), (AdamP, True)):
        out = collect(model, cls(model.parameters(), lr=0.1))
        assert out["si_fraction"] == pytest.approx(0.5)  # the conv weight (before BN) yes, the linear one no
        assert out["projected_fraction"] == (pytest.approx(0.5) if projects else 0.0)
