"""Validation: every error message (exact text), defaults filled in, recipe-pitfall warnings."""

from __future__ import annotations

import pytest

from benchmarks.config.errors import ConfigError
from benchmarks.config.validate import apply_smoke, recipe_warnings, resolve_config
from benchmarks.engine.sweep import plan_sweep
from benchmarks.registry import _torch_optimizers
from benchmarks.tasks import TASKS
from benchmarks.training.keys import LOOP_DEFAULTS

#: what the messages list (computed, so that a newly registered task or torch class does not break them)
REGISTERED_TASKS = ", ".join(sorted({*TASKS, "tiny"}))
TORCH_OPTIMIZERS = ", ".join(sorted(_torch_optimizers()))

OK = {"task": "tiny", "optimizer": {"name": "adam"}}


def error_of(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_config(cfg)
    return str(info.value)


TRAIN_KEYS = ("`batch_size`, `channels_last`, `checkpoint_every_minutes`, `checkpoint_every_steps`, `deterministic`, "
              "`device`, `diagnostics`, `epochs`, `eval_batch_size`, `eval_every`, `grad_clip`, `log_every`, "
              "`logger`, `max_steps`, `num_threads`, `num_workers`, `precision`, `seed`, `select`")


@pytest.mark.parametrize("cfg, message", [
    ({"task": "tiny", "optimzer": {"name": "adam"}},
     "unknown key `optimzer` at `optimzer`; did you mean `optimizer`? Valid keys: `base`, `data`, `grid`, `model`, "
     "`name`, `optimizer`, `slurm`, `tags`, `task`, `train`, `zip`."),
    ({**OK, "data": {"nn": 3}},
     "unknown key `nn` at `data.nn` (task `tiny`); did you mean `n`? Valid keys: `dim`, `fail_at_step`, `n`, "
     "`nan_at_step`, `noise`, `preempt_at_step`, `sleep_s`."),
    ({**OK, "model": {"extra": {"dept": 2}}},
     "unknown key `dept` at `model.extra.dept` (task `tiny`); did you mean `depth`? Valid keys: `depth`."),
    ({**OK, "train": {"batchsize": 3}},
     f"unknown key `batchsize` at `train.batchsize` (task `tiny`); did you mean `batch_size`? Valid keys: {TRAIN_KEYS}."),
    ({**OK, "train": {"zzz": 3}},
     f"unknown key `zzz` at `train.zzz` (task `tiny`). Valid keys: {TRAIN_KEYS}."),
    ({**OK, "train": {"epochs": "ten"}}, "`train.epochs` must be an integer, got str 'ten'"),
    ({**OK, "train": {"epochs": 2.5}}, "`train.epochs` must be an integer, got float 2.5"),
    ({**OK, "train": {"epochs": 0}}, "`train.epochs` must be >= 1, got 0"),
    ({**OK, "train": {"grad_clip": 0}}, "`train.grad_clip` must be > 0, got 0.0"),
    ({**OK, "train": {"grad_clip": "x"}}, "`train.grad_clip` must be a number, got str 'x'"),
    ({**OK, "train": {"channels_last": 1}}, "`train.channels_last` must be a boolean (true/false), got int 1"),
    ({**OK, "train": {"precision": "fp61"}},
     "`train.precision` must be one of fp32, bf16, fp16; got 'fp61'; did you mean `fp16`?"),
    ({**OK, "train": {"device": "gpu"}}, "`train.device` must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ({**OK, "train": {"schedule": {"name": "cosin"}}},
     "unknown schedule `cosin` at `train.schedule.name`; did you mean `cosine`? Known schedules: constant, step, "
     "multistep, cosine."),
    ({**OK, "train": {"schedule": {"name": "step", "milestones": [1]}}},
     "unknown key `milestones` at `train.schedule.milestones` (schedule `step`). Valid keys: `gamma`, `name`, "
     "`step_size`, `warmup_epochs`."),
    ({**OK, "train": {"schedule": {"name": "multistep", "milestones": [5, 2]}}},
     "`train.schedule.milestones` must be increasing epoch numbers, got [5, 2]"),
    ({"task": "tiny2", "optimizer": {"name": "adam"}},
     f"unknown task `tiny2` at `task`; did you mean `tiny`? Registered tasks: {REGISTERED_TASKS}."),
    ({"task": "tiny", "optimizer": {"name": "adamq"}},
     "unknown optimizer `adamq` at `optimizer.name`; did you mean `adam`? Registered: adam, adamp, adamw, sgd, sgdp; "
     f"also any torch.optim class ({TORCH_OPTIMIZERS}), `timm:<name>` (see `python -m benchmarks optimizers`) or an "
     "importable class as `package.module:Class`."),
    ({"task": "tiny", "optimizer": {"name": "adam", "lrr": 0.1}},
     "unknown key `lrr` at `optimizer.lrr` (torch.optim.adam:Adam); did you mean `lr`? Valid keys: `amsgrad`, "
     "`betas`, `capturable`, `decoupled_weight_decay`, `differentiable`, `eps`, `foreach`, `fused`, `lr`, "
     "`maximize`, `name`, `no_decay_1d`, `weight_decay`."),
    ({"task": "tiny", "optimizer": {"name": "adam", "lr": "fast"}},
     "`optimizer.lr` (Adam default: 0.001) must be a number, got str 'fast'"),
    ({"task": "tiny", "optimizer": {"name": "adam", "betas": [0.9]}},
     "`optimizer.betas` (Adam default: [0.9, 0.999]) must be a list of 2 values, got list [0.9]"),
    ({"task": "tiny", "optimizer": {"name": "adam", "betas": [0.9, 1.5]}},
     "`optimizer` (adam) rejects these settings: Invalid beta parameter at index 1: 1.5"),
    ({"task": "tiny", "optimizer": {"name": "sgd", "lr": 0.1, "nesterov": True}},
     "`optimizer` (sgd) rejects these settings: Nesterov momentum requires a momentum and zero dampening"),
    ({"task": "tiny", "optimizer": {"name": "sgd"}},
     "`optimizer.lr` is required for optimizer `sgd` (SGD); set it, e.g. `--set optimizer.lr=...`"),
    ({"task": "tiny", "optimizer": {"lr": 0.1}},
     "`optimizer.name` is missing: name the optimizer, e.g. `optimizer: {name: adamp}`"),
    ({"task": "tiny", "optimizer": "adam"},
     "`optimizer` must be a mapping like {name: adamp, lr: 1.0e-3}, got str 'adam'"),
    ({"task": "tiny"}, "`optimizer` is missing: add e.g. `optimizer: {name: adamp, lr: 1.0e-3}`"),
    ({"optimizer": {"name": "adam"}},
     f"`task` is missing; registered tasks: {REGISTERED_TASKS}"),
    ({**OK, "tags": 3}, "`tags` must be a list of strings or a mapping of names to strings/numbers, got 3"),
    ({**OK, "tags": {"table": [1]}},
     "`tags` must be a list of strings or a mapping of names to strings/numbers, got {'table': [1]}"),
    ({**OK, "slurm": [1]}, "`slurm` must be a mapping of executor settings, got [1]"),
    ({**OK, "grid": {}}, "`grid` is only allowed at the top of a config file"),
])
def test_error_messages(tiny, cfg, message):
    assert error_of(cfg) == message


def test_errors_from_a_file_name_the_file_and_grid_point(tiny, write, tmp_path):
    path = write("exp.yaml", "task: tiny\noptimizer: {name: adam}\ngrid:\n  train.epochs: [1, 0]\n")
    with pytest.raises(ConfigError) as info:
        plan_sweep([path], out_dir=tmp_path / "out")
    assert str(info.value) == f"{path}: `train.epochs` must be >= 1, got 0 (grid point: train.epochs=0)"
    assert not (tmp_path / "out").exists()


def test_resolution_fills_every_default(tiny):
    r = resolve_config({"task": "tiny", "optimizer": {"name": "adamw", "lr": 1}, "data": {"n": 8}})
    assert list(r) == ["task", "data", "model", "optimizer", "train"]
    assert r["data"] == {"n": 8, "dim": 4, "noise": 0.1, "nan_at_step": None, "fail_at_step": None, "sleep_s": 0.0,
                         "preempt_at_step": None}
    assert r["model"] == {"hidden": 8, "extra": {"depth": 1}}
    assert set(r["train"]) == set(LOOP_DEFAULTS) | {"eval_batch_size"}
    assert r["train"]["schedule"] == {"name": "constant", "warmup_epochs": 0.0}
    assert r["optimizer"]["lr"] == 1.0 and isinstance(r["optimizer"]["lr"], float)
    assert r["optimizer"]["betas"] == [0.9, 0.999] and r["optimizer"]["weight_decay"] == 0.01
    assert r["optimizer"]["no_decay_1d"] is False


def test_schedule_shorthand_and_defaults(tiny):
    r = resolve_config({**OK, "train": {"schedule": "cosine"}})
    assert r["train"]["schedule"] == {"name": "cosine", "warmup_epochs": 0.0, "min_factor": 0.0}
    r = resolve_config({**OK, "train": {"schedule": {"name": "multistep", "milestones": [30, 60]}}})
    assert r["train"]["schedule"] == {"name": "multistep", "warmup_epochs": 0.0, "milestones": [30.0, 60.0],
                                      "gamma": 0.1}


def test_name_tags_slurm_are_kept(tiny):
    r = resolve_config({**OK, "name": "x", "tags": "paper", "slurm": {"partition": "gpu"}})
    assert r["name"] == "x" and r["tags"] == ["paper"] and r["slurm"] == {"partition": "gpu"}
    r = resolve_config({**OK, "tags": {"table": "t01", "model": "ResNet18"}})
    assert r["tags"] == {"table": "t01", "model": "ResNet18"}


def test_smoke_overrides(tiny):
    cfg = apply_smoke({**OK, "train": {"epochs": 50}})
    assert cfg["train"] == {"epochs": 1, "max_steps": 2} and cfg["data"] == {"n": 16}
    assert OK.get("train") is None  # the input is not modified


def _warnings(opt):
    return recipe_warnings(resolve_config({"task": "tiny", "optimizer": opt}), opt)


def test_warns_about_paper_notation_weight_decay(tiny):
    assert _warnings({"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4}) == [
        "optimizer `adamw`: weight_decay=0.0001 with lr=0.001 looks like the paper's notation (decay not multiplied "
        "by lr, as in the AdamW paper). PyTorch multiplies it by lr, so this decays weights by only 1e-07 per step. "
        "In PyTorch notation the paper's values are e.g. weight_decay=0.1 for AdamW at lr=1e-3 (= 1e-4 in paper "
        "notation, clovaai/AdamP#10) and 1e-2 for AdamP; if 0.0001 is meant in paper notation, use "
        "weight_decay=0.1 (= 0.0001 / lr)."]
    assert len(_warnings({"name": "adamp", "lr": 1e-3, "weight_decay": 5e-4})) == 1
    assert _warnings({"name": "adamw", "lr": 1e-3, "weight_decay": 0.1}) == []
    assert _warnings({"name": "adamp", "lr": 1e-3, "weight_decay": 1e-2}) == []
    assert _warnings({"name": "adamp", "lr": 1e-3, "weight_decay": 0}) == []
    assert _warnings({"name": "adamw", "lr": 0.1, "weight_decay": 1e-4}) == []  # large lr: plausible as is
    assert _warnings({"name": "sgd", "lr": 0.1, "weight_decay": 1e-4}) == []  # SGD's L2 notation is the paper's


def test_warns_about_timm_adamp_defaults(tiny):
    assert _warnings({"name": "timm:adamp", "lr": 1e-3}) == [
        "optimizer `timm:adamp` applies timm's factory defaults wd_ratio=0.01, nesterov=true, no_decay_1d=true, "
        "which differ from the AdamP constructor defaults (wd_ratio=0.1, nesterov=false, no_decay_1d=false). The "
        "official AdamP defaults (and the paper's recommendation, \"use the default values\") are wd_ratio=0.1, "
        "nesterov=false: use `adamp` or set them explicitly. Set these keys explicitly to silence this warning."]
    assert _warnings({"name": "timm:adamp", "wd_ratio": 0.1, "nesterov": False, "no_decay_1d": False}) == []


def test_warns_about_sgdp_momentum_one_with_weight_decay(tiny):
    warnings = _warnings({"name": "timm:sgdp", "lr": 0.1, "momentum": 1.0, "weight_decay": 1e-5,
                          "nesterov": True, "no_decay_1d": True})
    assert warnings == [
        "optimizer `timm:sgdp`: momentum=1 with weight_decay=1e-05: SGDP divides its decoupled weight decay by "
        "(1 - momentum), which is zero here (infinite or negative decay); use momentum < 1."]


def test_sgdp_rejects_momentum_one_with_weight_decay_before_launch(tiny):
    message = error_of({"task": "tiny", "optimizer": {"name": "sgdp", "lr": 0.1, "momentum": 1.0,
                                                      "weight_decay": 1e-5}})
    assert message.startswith("`optimizer` (sgdp) rejects these settings: ")
    assert "momentum" in message


def test_warnings_reach_the_plan(tiny, write, tmp_path):
    path = write("w.yaml", "task: tiny\noptimizer: {name: adamw, lr: 1.0e-3, weight_decay: 1.0e-4}\n"
                           "grid:\n  train.seed: [0, 1, 2]\n")
    plan = plan_sweep([path], out_dir=tmp_path / "o")
    assert len(plan.warnings) == 1 and plan.warnings[0].startswith(f"{path}: optimizer `adamw`: weight_decay=0.0001")
