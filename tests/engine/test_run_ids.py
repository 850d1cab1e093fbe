"""Run ids: stable, insensitive to how a default is written, sensitive to every real change."""

from __future__ import annotations

import re

from benchmarks.config.validate import resolve_config
from benchmarks.engine.spec import canonical_json, compute_run_id


def rid(cfg) -> str:
    return compute_run_id(resolve_config(cfg))


BASE = {"task": "tiny", "optimizer": {"name": "adamp", "lr": 1e-3}, "train": {"epochs": 2}}


def test_format(tiny):
    assert re.fullmatch(r"tiny-adamp-[0-9a-f]{12}", rid(BASE))
    path_task = {**BASE, "task": "tests.engine.tiny_task:TinyTask", "optimizer": {"name": "timm:adamp"}}
    assert re.fullmatch(r"tests.engine.tiny_task-TinyTask-timm-adamp-[0-9a-f]{12}", rid(path_task))


def test_same_config_same_id(tiny):
    assert rid(BASE) == rid({"train": {"epochs": 2}, "optimizer": {"lr": 1e-3, "name": "adamp"}, "task": "tiny"})


def test_known_id_is_stable_across_processes(tiny):
    # sha1 of canonical JSON: no hash randomisation, no dict-order dependence
    resolved = resolve_config(BASE)
    assert canonical_json({"b": 1, "a": [1.0, None]}) == '{"a":[1.0,null],"b":1}'
    assert rid(BASE) == compute_run_id(resolve_config(dict(reversed(list(BASE.items())))))
    assert compute_run_id(resolved) == compute_run_id(resolve_config(resolved))  # resolving is idempotent


def test_explicit_defaults_do_not_change_the_id(tiny):
    explicit = {
        "task": "tiny",
        "data": {"n": 64, "noise": 0.1},
        "model": {"hidden": 8, "extra": {"depth": 1}},
        "optimizer": {"name": "adamp", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0,
                      "delta": 0.1, "wd_ratio": 0.1, "nesterov": False, "no_decay_1d": False},
        "train": {"epochs": 2, "batch_size": 128, "seed": 0, "schedule": {"name": "constant", "warmup_epochs": 0}},
    }
    assert rid(explicit) == rid(BASE)


def test_every_real_change_changes_the_id(tiny):
    ids = {rid(BASE)}
    for change in ({"optimizer": {"name": "adamp", "lr": 2e-3}}, {"train": {"epochs": 2, "seed": 1}},
                   {"data": {"n": 32}}, {"model": {"extra": {"depth": 2}}},
                   {"optimizer": {"name": "adamp", "lr": 1e-3, "no_decay_1d": True}},
                   {"train": {"epochs": 2, "schedule": "cosine"}}):
        ids.add(rid({**BASE, **change}))
    assert len(ids) == 7


def test_slurm_name_and_tags_are_not_part_of_the_id(tiny):
    assert rid({**BASE, "slurm": {"partition": "gpu", "time": 60}, "name": "x", "tags": ["a"]}) == rid(BASE)
