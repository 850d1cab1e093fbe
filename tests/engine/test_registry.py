"""The optimizer registry: names, defaults from the signature, timm, import paths, no_decay_1d."""

from __future__ import annotations

import inspect

import pytest
import torch

from benchmarks.config.errors import ConfigError
from benchmarks.registry import build_optimizer, list_optimizers, lookup_optimizer, resolve_optimizer_config


def _signature_defaults(cls):
    return {p.name: p.default for p in list(inspect.signature(cls).parameters.values())[1:]
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("name", ["adam", "adamw", "adamp", "sgdp"])
def test_every_constructor_default_is_filled(name):
    cfg = {"name": name, "lr": 0.1} if name == "sgdp" else {"name": name}
    resolved = resolve_optimizer_config(cfg)
    cls = lookup_optimizer(name).cls
    for key, default in _signature_defaults(cls).items():
        if isinstance(default, (bool, int, float, str, type(None), tuple)):
            expected = list(default) if isinstance(default, tuple) else default
            assert resolved[key] == expected, key
    assert resolved["name"] == name and resolved["no_decay_1d"] is False


def test_registered_names_map_to_the_adamp_package_and_torch():
    from adamp import SGDP, AdamP

    assert lookup_optimizer("adamp").cls is AdamP and lookup_optimizer("sgdp").cls is SGDP
    assert lookup_optimizer("sgd").cls is torch.optim.SGD and lookup_optimizer("adamw").cls is torch.optim.AdamW


def test_torch_optim_class_names_and_import_paths():
    assert lookup_optimizer("RMSprop").cls is torch.optim.RMSprop
    assert lookup_optimizer("nadam").cls is torch.optim.NAdam
    assert lookup_optimizer("torch.optim:Adagrad").cls is torch.optim.Adagrad
    with pytest.raises(ConfigError, match=r"optimizer `torch.nn:Linear` is <class 'torch.nn.modules.linear.Linear'>, "
                                          r"not a torch.optim.Optimizer subclass"):
        lookup_optimizer("torch.nn:Linear")
    with pytest.raises(ConfigError, match=r"optimizer `nope.mod:X` at `optimizer.name` cannot be imported"):
        lookup_optimizer("nope.mod:X")


def test_timm_names_use_timm_factory_defaults_explicitly():
    import timm.optim

    resolved = resolve_optimizer_config({"name": "timm:adamp"})
    assert lookup_optimizer("timm:adamp").cls is timm.optim.AdamP
    assert resolved["wd_ratio"] == 0.01 and resolved["nesterov"] is True
    assert resolved["weight_decay"] == 0.0 and resolved["no_decay_1d"] is True
    sgdp = resolve_optimizer_config({"name": "timm:sgdp", "lr": 0.1})
    assert sgdp["momentum"] == 0.9 and sgdp["nesterov"] is True
    # explicit values win over timm's defaults
    assert resolve_optimizer_config({"name": "timm:adamp", "wd_ratio": 0.1})["wd_ratio"] == 0.1
    with pytest.raises(ConfigError, match=r"^unknown timm optimizer `adamq` at `optimizer.name`; did you mean `adam`\?"):
        resolve_optimizer_config({"name": "timm:adamq"})


def test_timm_optimizer_builds_like_create_optimizer_v2():
    import timm.optim

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    ours = build_optimizer({"name": "timm:adamp", "lr": 1e-3, "weight_decay": 0.05}, model.parameters())
    theirs = timm.optim.create_optimizer_v2(model, opt="adamp", lr=1e-3, weight_decay=0.05)
    def summary(opt):
        return sorted((len(g["params"]), g["weight_decay"], g["wd_ratio"], g["nesterov"]) for g in opt.param_groups)
    assert summary(ours) == summary(theirs)


def test_no_decay_1d_splits_groups():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = build_optimizer({"name": "adamw", "weight_decay": 0.1, "no_decay_1d": True}, model.parameters())
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.ndim > 1 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.ndim <= 1 for p in plain["params"])
    assert len(decayed["params"]) == 2 and len(plain["params"]) == 4
    # groups given by the task keep their own options
    groups = [{"params": [model[0].weight, model[0].bias], "lr": 0.5}]
    opt = build_optimizer({"name": "adamw", "no_decay_1d": True}, groups)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(0.5, 0.01), (0.5, 0.0)]


def test_build_passes_tuples_and_resolved_values():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer({"name": "adamp", "lr": 0.01, "betas": [0.8, 0.9], "weight_decay": 1e-2}, [p])
    group = opt.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and group["lr"] == 0.01 and group["wd_ratio"] == 0.1
    opt = build_optimizer({"name": "sgd", "lr": 0.1, "momentum": 0.9}, [p])
    assert opt.param_groups[0]["momentum"] == 0.9


def test_int_where_float_expected_is_normalised():
    a = resolve_optimizer_config({"name": "sgd", "lr": 1, "momentum": 0})
    b = resolve_optimizer_config({"name": "sgd", "lr": 1.0})
    assert a == b and isinstance(a["momentum"], float)


def test_list_optimizers():
    rows = list_optimizers()
    names = {r["name"] for r in rows}
    assert {"sgd", "sgdp", "adam", "adamw", "adamp", "RMSprop", "NAdam", "timm:adamp", "timm:lamb"} <= names
    assert {r["kind"] for r in rows} == {"registry", "torch.optim", "timm"}


@pytest.mark.parametrize("name, hint", [
    ("torch.optim:Nadam", "did you mean `torch.optim:NAdam`?"),
    ("torch.optim:AdamWW", "did you mean `AdamW`?"),
    ("myopts_not_here.signum:Signum", "PYTHONPATH"),
])
def test_import_errors_suggest_the_spelling_and_say_how_to_make_a_module_importable(name, hint):
    with pytest.raises(ConfigError) as info:
        lookup_optimizer(name)
    assert hint in str(info.value)
