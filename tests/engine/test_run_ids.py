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


def test_data_root_is_not_part_of_the_id_and_other_ids_are_unchanged(tmp_path):
    """Moving a data set must not orphan its results; every other id stays what it was (computed on main at
    556bb3b; the roots of the last two were null there, which is how a root is hashed now)."""
    from pathlib import Path

    from benchmarks.engine.sweep import resolve_file

    root = Path(__file__).resolve().parents[2]
    known = {
        "configs/demo/digits.yaml": "classification-sgd-afc040624980",
        "configs/lm/synthetic_demo.yaml": "language_model-adamw-56cfca8da90a",
        "configs/paper/table1_resnet18.yaml": "classification-sgd-80dcd21f0d9b",
        "configs/paper/table7_transformer_xl.yaml": "language_model-adamw-ab13a5a595be",
        "configs/retrieval/digits_demo.yaml": "retrieval-adam-ab3a3845f49b",
        "configs/toy/toy2d.yaml": "toy2d-sgd-69eb9c2bacbe",
        "configs/paper/table5_speech_commands.yaml": "audio-adam-ed811410977d",
        "configs/paper/table6_cub_triplet.yaml": "retrieval-adam-396d7cd31a1f",
    }
    # the LM and audio configs report the best-validation model now (train.select: best, their recipes' rule):
    # other metrics, so other ids; with select: last they are the runs they were
    selecting = {"configs/lm/synthetic_demo.yaml", "configs/paper/table7_transformer_xl.yaml",
                 "configs/paper/table5_speech_commands.yaml"}
    for path, run_id in known.items():
        runs, _ = resolve_file(root / path, check_data=False)
        if path in selecting:
            assert runs[0][0]["train"]["select"] == "best" and compute_run_id(runs[0][0]) != run_id, path
            runs, _ = resolve_file(root / path, ["train.select=last"], check_data=False)
        assert compute_run_id(runs[0][0]) == run_id, path
    for path in ("configs/paper/table1_resnet18.yaml", "configs/paper/table5_speech_commands.yaml"):
        ids = [compute_run_id(resolve_file(root / path, [f"data.root={r}"], check_data=False)[0][0][0])
               for r in ("/mnt/a/data", "/scratch/b", "null")]
        assert len(set(ids)) == 1, path


def test_data_root_is_still_stored_with_the_run(tiny):
    from benchmarks.config.validate import hashed_view

    resolved = resolve_config({**BASE, "task": "classification", "data": {"name": "imagefolder", "root": "/d"},
                               "model": {"name": "resnet18"}})
    assert resolved["data"]["root"] == "/d" and hashed_view(resolved)["data"]["root"] is None
