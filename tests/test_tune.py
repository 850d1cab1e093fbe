"""``tune`` (benchmarks/workflows/tune.py), its search spaces (benchmarks/config/search.py), expected-best
curves and time to target (benchmarks/analysis/)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmarks.config.errors import ConfigError
from benchmarks.config.search import parse_search
from tests.engine.tiny_task import TinyTask

TINY = "tests.engine.tiny_task:TinyTask"


class LrTask(TinyTask):
    """Validation prefers lr near 1e-2, the test metric prefers the largest lr: they disagree on purpose.
    The test metric is listed first, so a selection on the primary metric would pick by test."""

    name: ClassVar[str] = "lr_task"
    metrics: ClassVar[Mapping[str, str]] = {"test_score": "max", "val_score": "max"}
    selection_metric: ClassVar[str | None] = "val_score"

    def evaluate(self, model) -> dict[str, float]:
        lr = float(self.config["optimizer"]["lr"])
        return {"val_score": -abs(math.log10(lr) + 2.0), "test_score": math.log10(lr)}


def _config(task: str = TINY, **extra: Any) -> dict:
    cfg = {"task": task, "data": {"n": 16}, "optimizer": {"name": "sgd", "lr": 0.01},
           "train": {"epochs": 1, "batch_size": 16, "eval_every": 1, "num_threads": 1, "device": "cpu"}}
    cfg.update(extra)
    return cfg


SPACE = {"optimizer.lr": {"log_uniform": [1.0e-4, 1.0]}, "optimizer.momentum": {"uniform": [0.0, 0.9]},
         "train.batch_size": {"int_uniform": [4, 16]}, "optimizer.nesterov": {"choice": [False]}}


# -- search spaces ------------------------------------------------------------------------------------------

def test_points_distinct_in_bounds_reproducible_and_prefix_stable():
    space = parse_search(SPACE)
    eight = space.points(8, seed=3)
    four = space.points(4, seed=3)
    assert eight[:4] == four  # --trials 8 extends --trials 4
    assert space.points(8, seed=3) == eight  # reproducible
    assert space.points(8, seed=4) != eight  # the seed matters
    assert len({json.dumps(p, sort_keys=True) for p in eight}) == 8
    for p in space.points(64, seed=0):
        assert 1e-4 <= p["optimizer.lr"] <= 1.0
        assert 0.0 <= p["optimizer.momentum"] <= 0.9
        assert isinstance(p["train.batch_size"], int) and 4 <= p["train.batch_size"] <= 16
        assert p["optimizer.nesterov"] is False
    # a quasi-random sequence covers the range: both ends of the log range appear in 64 points
    lrs = np.log10([p["optimizer.lr"] for p in space.points(64, seed=0)])
    assert lrs.min() < -3.5 and lrs.max() > -0.5
    sizes = {p["train.batch_size"] for p in space.points(64, seed=0)}
    assert sizes == set(range(4, 17))


@pytest.mark.parametrize("section, words", [
    ({"optimizer.lr": {"loguniform": [1e-4, 1e-2]}}, ["optimizer.lr", "unknown distribution", "log_uniform"]),
    ({"optimizer.lr": {"log_uniform": [1e-2, 1e-4]}}, ["optimizer.lr", "low < high"]),
    ({"optimizer.lr": {"log_uniform": [0.0, 1e-2]}}, ["optimizer.lr", "0 < low"]),
    ({"train.epochs": {"int_uniform": [1.5, 3]}}, ["train.epochs", "integers"]),
    ({"optimizer.lr": [1e-4, 1e-2]}, ["optimizer.lr", "one distribution"]),
])
def test_bad_spaces_name_the_key(section, words):
    with pytest.raises(ConfigError) as err:
        parse_search(section, source="space.yaml")
    text = str(err.value)
    assert text.startswith("space.yaml: ")
    for w in words:
        assert w in text


def _cli(argv: list[str]) -> int:
    from benchmarks.cli import main

    return main(argv)


@pytest.mark.parametrize("search, key, words", [
    ("{optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}}", "optimizer.lr", "unknown distribution"),
    ("{optimizer.lrr: {log_uniform: [1.0e-4, 1.0e-2]}}", "optimizer.lrr", "did you mean `optimizer.lr`"),
    ("{model.widht: {int_uniform: [4, 8]}}", "model.widht", "not a key of the run config"),
])
def test_cli_exit_2_naming_file_and_key_before_anything_runs(tmp_path, capsys, search, key, words):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_config()) + f"search: {search}\n")
    out = tmp_path / "out"
    assert _cli(["tune", str(cfg), "--trials", "2", "--out", str(out), "--executor", "debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(cfg) in err and f"search.{key}" in err and words in err
    assert not (out / "trials").exists()


def test_a_point_the_optimizer_rejects_is_exit_2_with_nothing_written(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_config()) + "search: {optimizer.momentum: {uniform: [-0.9, -0.1]}}\n")
    out = tmp_path / "out"
    assert _cli(["tune", str(cfg), "--trials", "2", "--out", str(out), "--executor", "debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(cfg) in err and "optimizer.momentum=-" in err
    assert not out.exists()


def test_a_key_both_searched_and_varied_by_the_grid_is_refused(tmp_path):
    cfg = _config(grid={"optimizer.lr": [0.1, 0.01]}, search={"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}})
    with pytest.raises(ConfigError, match="both searched"):
        _tune(tmp_path, cfg, 2)
    assert not (tmp_path / "tune").exists()


def test_search_section_never_enters_a_run_id():
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.spec import compute_run_id

    plain = compute_run_id(resolve_config(_config()))
    with_search = compute_run_id(resolve_config(_config(search=SPACE)))
    assert plain == with_search


def test_every_registered_optimizer_has_a_default_space_that_checks():
    from benchmarks.config.search import check_keys
    from benchmarks.config.validate import resolve_config
    from benchmarks.registry import DEFAULT_SEARCH_SPACES, OPTIMIZERS, default_search_space, lookup_optimizer

    assert set(DEFAULT_SEARCH_SPACES) == set(OPTIMIZERS)
    for name in OPTIMIZERS:
        resolved = resolve_config(_config(optimizer={"name": name, "lr": 0.01}))
        section, origin = default_search_space(resolved["optimizer"])
        space = parse_search(section)
        entry = lookup_optimizer(name)
        check_keys(space, resolved, list(entry.defaults), entry.accepts_any_kwarg)
        lr = space.dims[0]
        assert (lr.key, lr.kind, lr.low, lr.high) == ("optimizer.lr", "log_uniform", 1e-3, 0.1), name
    section, origin = default_search_space({"name": "RMSprop", "lr": 0.01})
    assert section == {"optimizer.lr": {"log_uniform": [1e-5, 1e-1]}} and "default" in origin


# -- the workflow -------------------------------------------------------------------------------------------

def _tune(tmp_path, config, trials, **kw):
    from benchmarks.workflows.tune import run_tuning

    kw.setdefault("final_seeds", [5, 6])
    return run_tuning(config, trials=trials, out=tmp_path / "tune", executor="debug",
                      options={"progress": False}, **kw)


def test_selection_uses_validation_never_test(tmp_path):
    from benchmarks.workflows.tune import tuning_metric

    cfg = _config("tests.test_tune:LrTask")
    space = parse_search({"optimizer.lr": {"log_uniform": [1e-4, 1.0]}})
    result = _tune(tmp_path, cfg, 6, space=space)
    arm = result.arms[0]
    assert result.metric == "val_score"
    lrs = arm.trials["optimizer.lr"].to_numpy()
    by_val = int(np.argmin(np.abs(np.log10(lrs) + 2.0)))
    by_test = int(np.argmax(lrs))
    assert by_val != by_test  # the case is one where they disagree
    assert arm.selected == by_val
    assert arm.selected_point["optimizer.lr"] == lrs[by_val]
    # the final runs are at the selected point and at the fresh seeds, and report the test metric
    assert sorted(arm.final["seed"]) == [5, 6]
    assert np.allclose(arm.final["metrics.test_score"], math.log10(lrs[by_val]))
    with pytest.raises(ConfigError, match="test metric"):
        tuning_metric(LrTask, "test_score")
    with pytest.raises(ConfigError, match="trial seed"):
        _tune(tmp_path, cfg, 2, space=space, final_seeds=[0, 1])


class _Counter:
    def __init__(self, real, stop_after=None):
        self.real, self.stop_after, self.ran = real, stop_after, []

    def __call__(self, spec, *args, **kwargs):
        if self.stop_after is not None and len(self.ran) >= self.stop_after:
            raise KeyboardInterrupt
        self.ran.append(spec.run_id)
        return self.real(spec, *args, **kwargs)


def test_killed_tune_resumes_without_rerunning_finished_trials(tmp_path, monkeypatch):
    from benchmarks import store
    from benchmarks.engine import executors

    cfg = _config(search={"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}})
    killed = _Counter(executors.execute_run, stop_after=2)
    monkeypatch.setattr(executors, "execute_run", killed)
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, cfg, 4)
    assert len(killed.ran) == 2
    before = {rid: (store.run_path(tmp_path / "tune" / "trials", rid) / "record.json").stat().st_mtime_ns
              for rid in killed.ran}
    again = _Counter(killed.real)
    monkeypatch.setattr(executors, "execute_run", again)
    result = _tune(tmp_path, cfg, 4)
    trial_ids = list(result.arms[0].trials["run_id"])
    assert len(set(trial_ids)) == 4  # a trial's id depends on its point
    assert not set(killed.ran) & set(again.ran)  # nothing finished ran twice
    assert set(again.ran) == (set(trial_ids) - set(killed.ran)) | set(result.arms[0].final["run_id"])
    for rid, mtime in before.items():
        assert (store.run_path(tmp_path / "tune" / "trials", rid) / "record.json").stat().st_mtime_ns == mtime
    # extending the budget reuses the 4 trials: only the 2 new trials run (and the final runs if it moved)
    more = _Counter(killed.real)
    monkeypatch.setattr(executors, "execute_run", more)
    bigger = _tune(tmp_path, cfg, 6)
    assert list(bigger.arms[0].trials["run_id"])[:4] == trial_ids
    new_trials = set(bigger.arms[0].trials["run_id"]) - set(trial_ids)
    assert len(new_trials) == 2 and new_trials <= set(more.ran)
    assert set(more.ran) <= new_trials | set(bigger.arms[0].final["run_id"])
    record = store.read_record(store.run_path(tmp_path / "tune" / "trials", trial_ids[1]))
    assert record["config"]["tags"]["tune_trial"] == 1 and "optimizer.lr=" in record["config"]["tags"]["tune_point"]


def test_each_arm_of_a_zip_gets_its_own_default_space_and_budget(tmp_path):
    cfg = _config(zip={"optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adamp", "lr": 1e-3}]},
                  grid={"train.seed": [0, 1, 2]})
    mine = parse_search({"optimizer.lr": {"log_uniform": [1e-3, 2e-3]}}, source="mine.yaml")
    result = _tune(tmp_path, cfg, 3, space={"adamp": mine})
    assert [a.label for a in result.arms] == ["sgd", "adamp"]
    sgd, adamp = result.arms
    # sgd: the registry's default around its recipe (lr 0.1 -> [0.01, 1]); adamp: the space given for it
    assert sgd.space.dims[0].low == pytest.approx(0.01) and sgd.space.keys == ["optimizer.lr", "optimizer.weight_decay"]
    assert adamp.space is mine and adamp.trials["optimizer.lr"].between(1e-3, 2e-3).all()
    assert all(len(a.trials) == 3 and a.selected is not None and len(a.final) == 2 for a in result.arms)
    assert set(adamp.trials["status"]) == {"done"}


# -- expected best ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "min"])
def test_expected_best_equals_enumeration(mode):
    from benchmarks.analysis.expected_best import expected_best

    rng = np.random.default_rng(0)
    values = list(np.round(rng.normal(size=6), 1)) + [0.3, 0.3]  # ties on purpose
    best = max if mode == "max" else min
    n = len(values)
    without = expected_best(values, mode)
    with_rep = expected_best(values, mode, replacement=True)
    for k in range(1, n + 1):
        subsets = [best(c) for c in itertools.combinations(values, k)]
        draws = [best(c) for c in itertools.product(values, repeat=k)] if k <= 5 else None
        assert without.loc[k - 1, "expected"] == pytest.approx(np.mean(subsets), abs=1e-12)
        if draws is not None:
            assert with_rep.loc[k - 1, "expected"] == pytest.approx(np.mean(draws), abs=1e-12)
    assert without.iloc[-1]["expected"] == pytest.approx(best(values))


def test_expected_best_with_a_diverged_trial_is_undefined_until_a_finite_one_is_certain():
    from benchmarks.analysis.expected_best import expected_best

    curve = expected_best([1.0, float("nan"), 3.0], "max")
    assert math.isnan(curve.loc[0, "expected"]) and curve.loc[0, "p_no_finite"] == pytest.approx(1 / 3)
    # k = 2: every pair holds a finite value; enumeration with NaN ranked worst: (1, 3, 3) / 3
    assert curve.loc[1, "expected"] == pytest.approx(7 / 3) and curve.loc[1, "p_no_finite"] == 0


def test_overtake_sentences():
    from benchmarks.analysis.expected_best import overtake_sentence

    def curves(a, b):
        rows = [{"method": m, "k": k + 1, "expected": v} for m, vs in (("mine", a), ("adamp", b)) for k, v in enumerate(vs)]
        return pd.DataFrame(rows)

    assert overtake_sentence(curves([1, 2, 3], [2, 3, 4]), "mine", "adamp", "max", "yours", "AdamP") == \
        "AdamP is ahead at every budget up to 3 trials"
    assert overtake_sentence(curves([1, 2, 5, 6], [2, 3, 4, 4]), "mine", "adamp", "max", "yours", "AdamP") \
        .startswith("yours overtakes at k = 3")
    # "min" metrics: lower is ahead
    assert overtake_sentence(curves([1, 1], [2, 2]), "mine", "adamp", "min", "yours") == \
        "yours is ahead at every budget up to 2 trials"
    assert "more than once" in overtake_sentence(curves([1, 3, 1], [2, 2, 2]), "mine", "adamp", "max")
    # both reach the ceiling at the full budget: ahead below it, level there (no crossing)
    assert overtake_sentence(curves([99.8, 99.9, 100, 100], [99.4, 99.7, 99.9, 100]), "mine", "adamp", "max") == \
        "mine is ahead at k = 1-3 and level at k = 4"
    assert overtake_sentence(curves([1, 1, 3], [1, 2, 2]), "mine", "adamp", "max", "yours") == \
        "yours overtakes at k = 3 (adamp is ahead below that)"


# -- time to target -----------------------------------------------------------------------------------------

def _pairs(mine: list[tuple[float, bool]], base: list[tuple[float, bool]]):
    a = pd.DataFrame([{"seed": i, "steps": t, "reached": r} for i, (t, r) in enumerate(mine)])
    b = pd.DataFrame([{"seed": i, "steps": t, "reached": r} for i, (t, r) in enumerate(base)])
    return a, b


def test_a_censored_run_changes_the_verdict_the_way_it_should():
    from benchmarks.analysis.time_to_target import compare_times

    base = [(100.0, True)] * 7
    mine = [(50.0, True)] * 7
    assert compare_times(*_pairs(mine, base)).verdict == "faster"  # 7 of 7: p = 0.016
    # one of mine never reached the target within its 200 steps, where the baseline did at 100: that pair is
    # a loss for mine (6 vs 1, p = 0.125), not a dropped pair (6 of 6, p = 0.031 would say "faster")
    never = mine[:6] + [(200.0, False)]
    res = compare_times(*_pairs(never, base))
    assert (res.verdict, res.faster, res.slower, res.unknown) == ("inconclusive", 6, 1, 0)
    # mine stopped (diverged) at step 60 without reaching: the order is unknown and counts against the claim
    stopped = mine[:6] + [(60.0, False)]
    res = compare_times(*_pairs(stopped, base))
    assert (res.verdict, res.unknown) == ("inconclusive", 1)
    # the baseline censored at 100 while mine reached at 50: a known win for mine, the verdict stands
    res = compare_times(*_pairs(mine, base[:6] + [(100.0, False)]))
    assert (res.verdict, res.faster) == ("faster", 7)
    slower = compare_times(*_pairs(base, mine))
    assert slower.verdict == "slower"


def test_time_to_target_verdict_error_rate_under_the_null():
    """Same distribution of times for both, censored at a budget: false verdicts at most alpha."""
    from benchmarks.analysis.time_to_target import compare_times

    rng = np.random.default_rng(1)
    reps, wrong = 2000, 0
    for _ in range(reps):
        t = np.exp(rng.normal(5.0, 0.5, size=(2, 8)))
        budget = 200.0  # about a quarter of the runs never reach the target
        rows = [[(min(x, budget), x <= budget) for x in side] for side in t]
        wrong += compare_times(*_pairs(*rows)).verdict != "inconclusive"
    assert wrong / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_time_to_target_from_history_and_target_rule():
    from benchmarks.analysis.time_to_target import target_value, time_to_target, time_profile

    hist = []
    curves = {"b0": [0.5, 0.7, 0.8, 0.9, 0.9], "b1": [0.4, 0.6, 0.85, 0.8, 0.95], "m0": [0.6, 0.88, 0.9, 0.9, 0.9],
              "m1": [0.1, 0.2, 0.3, 0.4, 0.5]}
    for rid, vals in curves.items():
        for i, v in enumerate(vals):
            hist.append({"run_id": rid, "step": 10 * (i + 1), "epoch": i + 1, "split": "val", "metric": "acc", "value": v})
    hist = pd.DataFrame(hist)
    # by 90% of 50 steps (step 45 -> evaluations up to step 40): running best 0.9 and 0.85 -> median 0.875
    target = target_value(hist, ["b0", "b1"], "acc", "max")
    assert target == pytest.approx(0.875)
    results = pd.DataFrame({"run_id": list(curves), "timing.step_time_s": [0.1, 0.1, 0.2, 0.2]})
    t = time_to_target(hist, results, "acc", "max", target).set_index("run_id")
    assert t.loc["b0", "steps"] == 40 and t.loc["m0", "steps"] == 20 and t.loc["m0", "seconds"] == pytest.approx(4.0)
    assert not t.loc["m1", "reached"] and t.loc["m1", "steps"] == 50  # censored at its last evaluation
    times = t.reset_index().assign(task="x", method=["b", "b", "m", "m"], time=t["steps"].to_numpy())
    profile = time_profile(times)
    # median times: b: 45, m: (20, inf) -> inf: m never reaches within the profile
    assert profile["b"].iloc[0] == 1.0 and profile["m"].max() == 0.0


def test_report_and_profile_of_a_two_arm_tune(tmp_path):
    from benchmarks.workflows.tune_report import profile_over_tasks, report_lines

    cfg = _config(zip={"optimizer": [{"name": "sgd", "lr": 0.05}, {"name": "adamp", "lr": 1e-2}]})
    cfg["train"] = {**cfg["train"], "epochs": 5}
    result = _tune(tmp_path, cfg, 3, final_seeds=[5, 6, 7])
    text = "\n".join(report_lines(result, tmp_path / "tune", baseline="adamp"))
    assert "Expected best val_loss" in text and "- sgd vs adamp: " in text
    assert "## Time to target: val_loss <=" in text and "| sgd | " in text
    assert (tmp_path / "tune" / "figures" / "expected_best_tests.engine.tiny_task_TinyTask.png").is_file()
    times, profile = profile_over_tasks([result], "adamp")
    assert set(times["method"]) == {"sgd", "adamp"} and len(times) == 6
    assert set(profile.columns) == {"adamp", "sgd"}
    # the fastest method (median time) is within a factor 1 on the only task
    assert profile.iloc[0].max() == 1.0
    summary = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert [a["label"] for a in summary["arms"]] == ["sgd", "adamp"]
    assert summary["arms"][1]["selected_point"] == result.arms[1].selected_point
