"""The comparison battery (issue 26): battery files, the probes, per-task keyword arguments, sensitivity cards."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.analysis import sensitivity
from benchmarks.config import expand, resolve_config
from benchmarks.config.errors import ConfigError
from benchmarks.workflows import battery as bat
from benchmarks.workflows import mine

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "task": "classification",
    "data": {"name": "digits", "val_size": 0.2, "split_seed": 0, "augment": "none"},
    "model": {"name": "digits_cnn", "width": 0.25},
    "optimizer": {"name": "adamp", "lr": 1.0e-2, "weight_decay": 1.0e-2},
    "train": {"epochs": 3, "batch_size": 128, "eval_every": 1, "log_every": 5, "num_threads": 1, "device": "cpu"},
    "grid": {"train.seed": [0, 1, 2]},
}


def write_battery(folder: Path, tasks: dict[str, dict], toy: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, cfg in tasks.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        entries[name] = {"config": f"{name}.yaml", "what": f"test task {name}", "ceiling": 100}
    body = {"tasks": entries}
    if toy:
        body["toy"] = str(ROOT / "configs" / "toy" / "toy2d.yaml")
    path = folder / "battery.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_the_shipped_battery_follows_the_contract_and_takes_any_optimizer():
    battery = bat.load_battery()
    assert len(battery.tasks) >= 4 and battery.toy is not None
    for task in battery.tasks:
        cfg = bat.load_task_config(task)
        assert cfg["optimizer"]["name"] == "adamp", task.name  # the battery's baseline is AdamP
        mine_cfg = bat.with_optimizer(cfg, {"name": "torch.optim:NAdam", "lr": 2e-3}, [0, 1, 2])
        runs = [resolve_config(run) for run, _ in expand(mine_cfg)]
        assert {r["optimizer"]["name"] for r in runs} == {"torch.optim:NAdam"}
        assert sorted(r["train"]["seed"] for r in runs) == [0, 1, 2]
        for probe in bat.PROBES:
            opt = bat.probe_optimizer(probe, cfg["optimizer"])
            probe_runs = [resolve_config(run) for run, _ in
                          expand(bat.with_optimizer(cfg, opt, bat.probe_seeds(probe, [0, 1])))]
            assert len(probe_runs) == 2


@pytest.mark.parametrize("change, message", [
    ({"zip": {"optimizer.lr": [1e-3, 2e-3]}}, "no `zip:`"),
    ({"grid": {"train.seed": [0], "optimizer.lr": [1e-3]}}, "varies only"),
    ({"optimizer": {"name": "adamp"}}, "learning rate"),
    ({"optimizer": {"name": "adamp", "lr": -1.0}}, "learning rate"),
])
def test_a_battery_config_outside_the_contract_is_refused_naming_the_file(tmp_path, change, message):
    path = write_battery(tmp_path, {"t": {**TINY, **change}})
    with pytest.raises(ConfigError, match=message) as err:
        bat.load_task_config(bat.load_battery(path).tasks[0])
    assert "t.yaml" in str(err.value)


@pytest.mark.parametrize("body, message", [
    ({"tasks": {}}, "tasks:"),
    ({"tasks": {"a": {"config": "missing.yaml"}}}, "is not a file"),
    ({"tasks": {"a": {"config": "a.yaml", "ceilin": 1}}}, "unknown key"),
    ({"tasks": {"a": {"config": "a.yaml", "ceiling": "high"}}}, "must be a number"),
    ({"tasks": {"toy": {"config": "a.yaml"}}}, "not a valid task name"),
    ({"tasks": {"a": {"config": "a.yaml"}}, "extra": 1}, "unknown key"),
])
def test_bad_battery_files_are_config_errors(tmp_path, body, message):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=message):
        bat.load_battery(tmp_path / "b.yaml")


def test_probes():
    base = {"name": "adamp", "lr": 3e-3, "weight_decay": 1e-2}
    assert bat.probe_optimizer("broken", base) == {"name": "sgd", "lr": 1e-4, "momentum": 0.0}
    assert bat.probe_optimizer("moderate", base) == {"name": "adamp", "lr": pytest.approx(1e-3), "weight_decay": 1e-2}
    assert bat.probe_optimizer("aa", base) == base
    assert bat.probe_seeds("aa", [0, 1]) == [bat.AA_SEED_OFFSET, bat.AA_SEED_OFFSET + 1]
    with pytest.raises(ConfigError, match="A/A"):
        bat.parse_seeds(f"0,{bat.AA_SEED_OFFSET}", [0])


def _args(tmp_path: Path, battery: Path, **kw) -> argparse.Namespace:
    return argparse.Namespace(optimizer="torch.optim:SGD", out=tmp_path / "out", cards=tmp_path / "cards",
                              with_suite=kw.get("with_suite", False), battery=battery)


def test_per_task_keyword_arguments_replace_kw_on_the_tasks_they_name(tmp_path):
    path = write_battery(tmp_path, {"a": TINY, "b": TINY})
    battery = bat.load_battery(path)
    kw_file = tmp_path / "kw.yaml"
    kw_file.write_text("a: {lr: 0.5, momentum: 0.9}\n")
    per_task = mine.read_kw_file(kw_file, battery.names())
    plans = mine.plan_tasks(_args(tmp_path, path), battery, list(battery.tasks), {"lr": 0.01}, per_task, [0, 1, 2])
    by_name = {p.task.name: p for p in plans}
    assert by_name["a"].mine == {"name": "torch.optim:SGD", "lr": 0.5, "momentum": 0.9}
    assert by_name["b"].mine == {"name": "torch.optim:SGD", "lr": 0.01}
    written = yaml.safe_load((tmp_path / "out" / "configs" / "a-mine.yaml").read_text())
    assert written["optimizer"] == by_name["a"].mine and written["grid"] == {"train.seed": [0, 1, 2]}
    kw_file.write_text("c: {lr: 0.5}\n")
    with pytest.raises(ConfigError, match="unknown task"):
        mine.read_kw_file(kw_file, battery.names())
    kw_file.write_text("a: {name: sgd}\n")
    with pytest.raises(ConfigError, match="must not set `name`"):
        mine.read_kw_file(kw_file, battery.names())


@pytest.mark.parametrize("text, expected", [
    (None, {}), ("lr: 1.0e-3", {"lr": 1e-3}), ("{lr: 0.1, momentum: 0.9}", {"lr": 0.1, "momentum": 0.9}),
])
def test_kwargs(text, expected):
    assert mine.parse_kwargs(text) == expected


@pytest.mark.parametrize("text", ["lr", "[1, 2]", "name: sgd", "lr: [", "1: 2"])
def test_bad_kwargs_are_refused(text):
    with pytest.raises(ConfigError, match="--kw"):
        mine.parse_kwargs(text)


# ---- sensitivity cards ---------------------------------------------------------------------------------------
def _series(values, offset=0):
    return pd.Series(np.asarray(values, dtype=float), index=np.arange(len(values)) + offset)


def _values(rng, base_sd=1.0, broken=-50.0, moderate=-3.0, n=5, noise=1.0):
    base = _series(80 + rng.normal(0, base_sd, n))
    return {
        "baseline": base,
        "broken": base + broken + _series(rng.normal(0, noise, n)),
        "moderate": base + moderate + _series(rng.normal(0, noise, n)),
        "aa": base + _series(rng.normal(0, noise, n)),
        "untrained": _series(np.full(n, 10.0)),
    }


def test_a_card_says_what_the_probes_showed():
    card = sensitivity.build_card(_values(np.random.default_rng(0)), "max", 0.01, ceiling=100)
    assert card["sees"] and card["moderate_detected"] and not card["aa_false_verdict"]
    assert card["probes"]["broken"]["at_n3"]["n"] == 3 and card["probes"]["moderate"]["at_n5"]["n"] == 5
    assert card["headroom"]["to_ceiling"] == pytest.approx(100 - card["baseline"]["mean"])
    assert card["headroom"]["to_untrained"] == pytest.approx(card["baseline"]["mean"] - 10.0)
    assert card["mde"]["3"] > card["mde"]["5"] > card["mde"]["10"] > 0
    assert "a non-training optimizer is a loss here" in sensitivity.card_line(card, 3)


def test_a_task_that_cannot_tell_the_broken_probe_does_not_see():
    # the broken probe is worse on average, but the seed noise is as large as the effect
    card = sensitivity.build_card(_values(np.random.default_rng(1), broken=-5.0, noise=8.0), "max", 0.01)
    assert not card["sees"]
    assert sensitivity.card_line(card).startswith("cannot see")


def test_a_lower_is_better_metric_turns_the_signs():
    rng = np.random.default_rng(2)
    vals = _values(rng, broken=+50.0, moderate=+3.0)  # perplexity: the probes are higher = worse
    card = sensitivity.build_card(vals, "min", 0.01, ceiling=1.0)
    assert card["sees"] and card["moderate_detected"]
    assert card["headroom"]["to_ceiling"] == pytest.approx(card["baseline"]["mean"] - 1.0)


def test_the_minimum_detectable_effect_has_its_power():
    # a true effect of exactly the MDE is found by the paired t-test about 80% of the time (simulated)
    rng = np.random.default_rng(3)
    from benchmarks.analysis import stats

    for n, alpha in ((3, 0.01), (5, 0.01), (10, 0.05)):
        effect = sensitivity.mde(1.0, n, alpha)
        hits = 0
        trials = 3000
        for _ in range(trials):
            t = stats.paired_t(rng.normal(effect, 1.0, n), confidence=1 - alpha)
            hits += t.p < alpha
        assert abs(hits / trials - 0.8) < 0.03, (n, alpha, hits / trials)  # 3 sd of a binomial at 3,000


def test_probe_values_pair_the_aa_stream_with_the_baseline_seeds():
    rows = []
    for probe, seeds in (("baseline", [0, 1, 2]), ("aa", [1000, 1001, 1002])):
        for s in seeds:
            rows.append({"task": "classification", "tags.probe": probe, "train.seed": s, "status": "done",
                         "metrics.top1": float(s % 1000), "primary_metric": "top1",
                         "metric_modes.top1": "max"})
    metric, mode, values = sensitivity.probe_values(pd.DataFrame(rows), "classification", 1000)
    assert (metric, mode) == ("top1", "max")
    assert list(values["aa"].index) == [0, 1, 2] and list(values["aa"]) == list(values["baseline"])


def test_cards_markdown_has_one_row_per_task():
    card = sensitivity.build_card(_values(np.random.default_rng(4)), "max", 0.01, ceiling=100)
    card["metric"] = "top1"
    text = sensitivity.cards_markdown({"a": card, "b": card}, "# cards")
    assert text.count("\n| a |") == 1 and text.count("\n| b |") == 1 and "higher is better" in text
    assert not any(math.isnan(v) for v in card["mde"].values())


@pytest.mark.parametrize("items, message", [
    (["zz=1"], "unknown task"), (["a=1", "a=2"], "given twice"), (["a=-1"], "finite number >= 0"),
])
def test_compare_mine_margins_are_compares_with_the_battery_tasks(items, message):
    assert mine._margins(["0.5", "a=1"], ["a", "b"]) == {"*": 0.5, "a": 1.0}
    with pytest.raises(ConfigError, match=message):
        mine._margins(items, ["a", "b"])
