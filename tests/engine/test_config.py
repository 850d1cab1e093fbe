"""Config files: YAML errors, base inheritance, --set overrides, grid and zip expansion."""

from __future__ import annotations

import pytest

from benchmarks.config.errors import ConfigError
from benchmarks.config.grid import expand, grid_points
from benchmarks.config.loader import load_config, parse_override


def test_yaml_syntax_error_names_file_and_line(write):
    path = write("bad.yaml", "task: tiny\noptimizer: {name: adam\ntrain: {epochs: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: YAML syntax error at line 3, column 6: expected ',' or '}}', but got ':'"
    )


def test_top_level_must_be_a_mapping(write):
    path = write("list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: a config file must be a mapping of sections"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: /nonexistent/x.yaml"):
        load_config("/nonexistent/x.yaml")


def test_scientific_notation_without_dot_is_a_float(write):
    path = write("f.yaml", "optimizer: {lr: 1e-3, wd: 5E-4, n: 10}\n")
    cfg = load_config(path)
    assert cfg["optimizer"] == {"lr": 1e-3, "wd": 5e-4, "n": 10}


def test_base_inheritance_is_relative_to_the_file_and_deep_merges(write):
    write("tasks/base.yaml", "task: tiny\ndata: {n: 32, dim: 3}\noptimizer: {name: adam, lr: 0.1}\n")
    write("tasks/mid.yaml", "base: base.yaml\ndata: {dim: 5}\ntrain: {epochs: 2}\n")
    top = write("exp/top.yaml", "base: ../tasks/mid.yaml\noptimizer: {lr: 0.01}\n")
    cfg = load_config(top)
    assert cfg == {"task": "tiny", "data": {"n": 32, "dim": 5}, "optimizer": {"name": "adam", "lr": 0.01},
                   "train": {"epochs": 2}}


def test_base_list_later_wins(write):
    write("a.yaml", "train: {epochs: 1, seed: 1}\n")
    write("b.yaml", "train: {epochs: 2}\n")
    top = write("top.yaml", "base: [a.yaml, b.yaml]\n")
    assert load_config(top)["train"] == {"epochs": 2, "seed": 1}


def test_base_cycle_and_missing_base(write):
    a = write("a.yaml", "base: b.yaml\n")
    b = write("b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(a)
    assert str(info.value) == f"{b}: `base:` inheritance cycle: {a.resolve()} -> {b.resolve()} -> {a.resolve()}"
    c = write("c.yaml", "base: nope.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(c)
    assert str(info.value) == (
        f"{c}: `base: nope.yaml` not found (looked for {c.parent / 'nope.yaml'}; paths are relative to this file)"
    )


def test_overrides_are_yaml_typed(write):
    path = write("c.yaml", "optimizer: {name: adam}\ntrain: {epochs: 1}\n")
    cfg = load_config(path, ["optimizer.lr=1e-3", "train.epochs=3", "train.grad_clip=null", "tags=[a, b]",
                             "model.hidden=8", "train.deterministic=true", "name=run one"])
    assert cfg["optimizer"] == {"name": "adam", "lr": 1e-3}
    assert cfg["train"] == {"epochs": 3, "grad_clip": None, "deterministic": True}
    assert cfg["tags"] == ["a", "b"] and cfg["model"] == {"hidden": 8} and cfg["name"] == "run one"


def test_override_of_a_grid_axis(write):
    path = write("g.yaml", "grid:\n  train.seed: [0, 1]\n")
    cfg = load_config(path, ["grid.train.seed=[5, 6, 7]"])
    assert cfg["grid"] == {"train.seed": [5, 6, 7]}


@pytest.mark.parametrize("text, message", [
    ("optimizer.lr", "--set 'optimizer.lr': expected KEY=VALUE with a dotted key, e.g. --set optimizer.lr=0.01"),
    ("=3", "--set '=3': expected KEY=VALUE with a dotted key, e.g. --set optimizer.lr=0.01"),
    ("a..b=1", "--set 'a..b=1': empty part in the dotted key 'a..b'"),
])
def test_bad_override_format(text, message):
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert str(info.value) == message


def test_override_into_a_scalar_is_an_error(write):
    path = write("c.yaml", "optimizer: adam\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optimizer.lr=1"])
    assert str(info.value) == (
        "--set 'optimizer.lr=1' sets `optimizer.lr` but `optimizer` is a str ('adam'), not a section"
    )


def test_grid_is_cartesian_last_key_fastest():
    cfg = {"task": "t", "grid": {"optimizer.name": ["sgd", "sgdp"], "train.seed": [0, 1, 2]}}
    runs = expand(cfg)
    assert [(r["optimizer"]["name"], r["train"]["seed"]) for r, _ in runs] == [
        ("sgd", 0), ("sgd", 1), ("sgd", 2), ("sgdp", 0), ("sgdp", 1), ("sgdp", 2)]
    assert all("grid" not in r and r["task"] == "t" for r, _ in runs)
    assert runs[4][1] == {"optimizer.name": "sgdp", "train.seed": 1}


def test_zip_pairs_values_and_crosses_with_grid():
    cfg = {"optimizer": {"name": "adam", "weight_decay": 0.0},
           "grid": {"train.seed": [0, 1]},
           "zip": {"optimizer.name": ["sgd", "adam"], "optimizer.lr": [0.1, 0.001]}}
    runs = [r for r, _ in expand(cfg)]
    assert [(r["train"]["seed"], r["optimizer"]["name"], r["optimizer"]["lr"]) for r in runs] == [
        (0, "sgd", 0.1), (0, "adam", 0.001), (1, "sgd", 0.1), (1, "adam", 0.001)]
    assert all(r["optimizer"]["weight_decay"] == 0.0 for r in runs)  # untouched keys are kept


def test_several_zip_groups():
    cfg = {"zip": [{"a.x": [1, 2], "a.y": [3, 4]}, {"b": [5, 6, 7]}]}
    assert len(grid_points(cfg)) == 6


def test_grid_section_value_replaces_the_section_and_runs_are_independent():
    cfg = {"optimizer": {"name": "adamp", "lr": 1e-3, "weight_decay": 1e-2},
           "grid": {"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "sgdp", "lr": 0.1}], "optimizer.momentum": [0.9]}}
    runs = [r for r, _ in expand(cfg)]
    assert [r["optimizer"] for r in runs] == [{"name": "sgd", "lr": 0.1, "momentum": 0.9},
                                              {"name": "sgdp", "lr": 0.1, "momentum": 0.9}]
    runs[0]["optimizer"]["lr"] = 5.0
    assert runs[1]["optimizer"]["lr"] == 0.1 and cfg["optimizer"]["lr"] == 1e-3


def test_no_grid_is_one_run():
    assert expand({"task": "t"}) == [({"task": "t"}, {})]


@pytest.mark.parametrize("cfg, message", [
    ({"zip": {"a": [1, 2], "b": [1, 2, 3]}}, "`zip` lists must all have the same length: `a` has 2, `b` has 3"),
    ({"grid": {"a": []}}, "`grid.a` is an empty list: it would expand to zero runs"),
    ({"grid": {"a": 3}}, "`grid.a` must be a list of values, got int 3 (write `a: [3]` for a single value)"),
    ({"grid": {"a": [1]}, "zip": {"a": [1]}}, "`a` is varied twice (in `grid` and in `zip`); vary each key once"),
    ({"grid": [1, 2]}, "`grid` must map dotted keys to lists of values, got a list"),
])
def test_grid_errors(cfg, message):
    with pytest.raises(ConfigError) as info:
        expand(cfg)
    assert str(info.value) == message


def test_configs_and_docs_cite_no_path_outside_the_repository():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = sorted(root.glob("configs/**/*.yaml")) + sorted(root.glob("docs/*.md"))
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "/work/" not in text and "shared/paper" not in text, path
        for base in re.findall(r"^base: ([^\s#]+)", text, re.M):
            # docs show a file at the repository root or in configs/<family>/ inheriting a shared base
            parents = [path.parent] if path.suffix == ".yaml" else [root, root / "configs" / "paper"]
            assert any((parent / base).is_file() for parent in parents), (path, base)
