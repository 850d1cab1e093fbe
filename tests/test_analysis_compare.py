"""benchmarks.analysis.compare: bootstrap CIs, paired comparison, performance profile, cost, CLI."""

from __future__ import annotations

import argparse
import importlib
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.analysis import commands, compare


def run(
    opt: str,
    seed: int,
    value: float | None,
    *,
    task: str = "classification",
    status: str = "done",
    metric: str = "top1",
    wall: float = 3600.0,
    device: str = "cpu (x86_64, 2 cores)",
    **extra,
) -> dict:
    row = {
        "run_id": f"{task}-{opt}-{seed}-{len(extra)}-{status}",
        "status": status,
        "task": task,
        "data.name": "digits",
        "model.name": "digits_cnn",
        "optimizer.name": opt,
        "optimizer.lr": 0.01,
        "train.seed": seed,
        "train.device": "cpu",
        f"metrics.{metric}": value,
        "timing.wall_s": wall,
        "timing.step_time_s": 0.01,
        "timing.steps": 100,
        "env.device": device,
    }
    row.update(extra)
    return row


# ---------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_constant_differences_give_zero_width_ci():
    lo, hi = compare.bootstrap_ci([0.7, 0.7, 0.7, 0.7])
    assert lo == pytest.approx(0.7) and hi == pytest.approx(0.7)


def test_bootstrap_matches_direct_numpy_computation():
    x = np.array([0.31, -0.137, 0.529, 0.2113, 0.4471])
    lo, hi = compare.bootstrap_ci(x, n_resamples=2000, confidence=0.9, seed=7)
    rng = np.random.default_rng(7)
    means = x[rng.integers(0, 5, size=(2000, 5))].mean(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert x.min() <= lo < x.mean() < hi <= x.max()
    # the same seed gives the same interval; another seed a (slightly) different one
    assert compare.bootstrap_ci(x, 2000, 0.9, 7) == (lo, hi)
    assert compare.bootstrap_ci(x, 2000, 0.9, 8) != (lo, hi)


def test_bootstrap_two_points_hand_computed():
    # two values: each resample mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so a 50% CI is [0.5, 0.5]
    # up to resampling noise while a 99% CI spans [0, 1]
    lo, hi = compare.bootstrap_ci([0.0, 1.0], n_resamples=20_000, confidence=0.99, seed=0)
    assert (lo, hi) == (0.0, 1.0)
    lo, hi = compare.bootstrap_ci([0.0, 1.0], n_resamples=20_000, confidence=0.4, seed=0)
    assert (lo, hi) == (0.5, 0.5)


def test_bootstrap_rejects_bad_input_and_single_value_is_nan():
    assert all(math.isnan(v) for v in compare.bootstrap_ci([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        compare.bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        compare.bootstrap_ci([1.0, 2.0], confidence=1.5)


@pytest.mark.parametrize(
    "lo, hi, mode, n, expected",
    [
        (0.1, 0.3, "max", 3, "win"),
        (0.1, 0.3, "min", 3, "loss"),
        (-0.3, -0.1, "min", 3, "win"),
        (-0.1, 0.2, "max", 3, "tie"),
        (0.0, 0.0, "max", 3, "tie"),
        (0.1, 0.2, "max", 1, "inconclusive"),
    ],
)
def test_outcome(lo, hi, mode, n, expected):
    assert compare.outcome(lo, hi, mode, n) == expected


# ---------------------------------------------------------------------------------------- paired comparison
def test_paired_comparison_pairs_matched_seeds_only():
    rows = [run("adamp", s, 90.0 + s) for s in range(3)]
    rows += [run("sgd", s, 89.0 + s) for s in (0, 1)]  # constant difference -1 on matched seeds
    rows += [run("sgd", 5, 10.0)]  # seed 5 has no adamp partner: ignored in the pairs
    rows += [run("sgd", 2, None, status="diverged")]  # counted as a failure, never paired
    frame = pd.DataFrame(rows)
    out = compare.paired_comparison(frame, compare.CompareSettings(baseline="adamp"))
    assert len(out) == 1
    row = out.iloc[0]
    assert row["method"] == "sgd" and row["n_pairs"] == 2 and row["seeds"] == "0,1"
    assert row["delta"] == pytest.approx(-1.0)
    assert row["ci_lo"] == pytest.approx(-1.0) and row["ci_hi"] == pytest.approx(-1.0)
    assert row["outcome"] == "loss"
    assert row["failed_method"] == 1 and row["failed_baseline"] == 0
    assert row["unmatched"] == 2  # seed 5 (sgd only) and seed 2 (adamp only)
    assert row["mean_method"] == pytest.approx(89.5) and row["mean_baseline"] == pytest.approx(90.5)


def test_min_metric_lower_is_a_win_and_groups_are_separate():
    rows = []
    for s in range(3):
        rows += [
            run("adamw", s, 30.0 + 0.1 * s, task="language_model", metric="test_ppl"),
            run("adamp", s, 29.0 + 0.1 * s + 0.01 * s * s, task="language_model", metric="test_ppl"),
            run("adamw", s, 50.0 + s),
            run("adamp", s, 50.0 + s),
        ]
    out = compare.paired_comparison(pd.DataFrame(rows), compare.CompareSettings(baseline="adamw"))
    by_task = out.set_index("task")
    assert by_task.loc["language_model", "metric"] == "test_ppl" and by_task.loc["language_model", "mode"] == "min"
    assert by_task.loc["language_model", "outcome"] == "win"
    assert by_task.loc["classification", "outcome"] == "tie"  # identical runs: zero-width CI at 0
    wins = compare.win_tie_loss(out).set_index("method")
    assert wins.loc["adamp", ["win", "tie", "loss", "inconclusive", "tasks"]].tolist() == [1, 1, 0, 0, 2]


def test_duplicate_runs_of_a_seed_are_averaged():
    rows = [
        run("adamp", 0, 1.0),
        run("adamp", 1, 1.0),
        run("sgd", 0, 2.0),
        run("sgd", 0, 4.0, **{"env.host": "b"}),
        run("sgd", 1, 2.0),
    ]
    out = compare.paired_comparison(pd.DataFrame(rows), compare.CompareSettings(baseline="adamp"))
    assert out.iloc[0]["n_pairs"] == 2 and out.iloc[0]["delta"] == pytest.approx((2.0 + 1.0) / 2)


@pytest.mark.parametrize("spelling", ["torch.optim:NAdam", "torch.optim.NAdam", "NAdam", "nadam"])
def test_baseline_by_import_path(spelling):
    rows = [run("torch.optim:NAdam", s, 1.0 + s) for s in range(2)] + [run("adamp", s, 2.0 + s) for s in range(2)]
    out = compare.paired_comparison(pd.DataFrame(rows), compare.CompareSettings(baseline=spelling))
    assert out["method"].tolist() == ["adamp"] and out.iloc[0]["delta"] == pytest.approx(1.0)


def test_unknown_baseline_lists_the_optimizers():
    frame = pd.DataFrame([run("adamp", 0, 1.0), run("sgd", 0, 1.0)])
    with pytest.raises(KeyError, match="adamp, sgd"):
        compare.paired_comparison(frame, compare.CompareSettings(baseline="lion"))


def test_method_labels_show_varying_hyperparameters_within_a_group():
    rows = [
        run("adamp", 0, 1.0, **{"optimizer.lr": 0.1}),
        run("adamp", 0, 1.0, **{"optimizer.lr": 0.01}),
        run("sgd", 0, 1.0),
        run("sgd", 0, 1.0, task="retrieval", **{"optimizer.lr": 0.5}),
    ]
    labels = compare.method_labels(pd.DataFrame(rows)).tolist()
    assert labels == ["adamp[lr=0.1]", "adamp[lr=0.01]", "sgd", "sgd"]  # sgd's lr differs only across tasks


def test_several_baseline_settings_are_refused():
    rows = [
        run("adamp", 0, 1.0, **{"optimizer.lr": 0.1}),
        run("adamp", 0, 1.0, **{"optimizer.lr": 0.01}),
        run("sgd", 0, 1.0),
    ]
    with pytest.raises(ValueError, match="--where"):
        compare.paired_comparison(pd.DataFrame(rows), compare.CompareSettings(baseline="adamp"))
    kept = compare.filter_where(pd.DataFrame(rows), ["optimizer.lr=0.01"])
    assert len(kept) == 2
    assert compare.paired_comparison(kept, compare.CompareSettings(baseline="adamp"))["n_pairs"].tolist() == [1]


def test_group_labels_split_on_settings_not_on_seed_or_device():
    rows = [
        run("adamp", 0, 1.0, **{"train.epochs": 5}),
        run("adamp", 1, 1.0, **{"train.epochs": 5, "train.device": "cuda"}),
        run("adamp", 0, 1.0, **{"train.epochs": 10}),
    ]
    labels = compare.group_labels(pd.DataFrame(rows)).tolist()
    assert labels[0] == labels[1] != labels[2]
    assert "train.epochs=10" in labels[2]


# ---------------------------------------------------------------------------------------- primary metric
def test_primary_metric_sources():
    frame = pd.DataFrame([run("adamp", 0, 1.0)])
    assert compare.primary_metric(frame, "classification") == ("top1", "max")
    assert compare.primary_metric(frame, "classification", metric="metrics.val_loss") == ("val_loss", "min")
    assert compare.primary_metric(frame, "classification", metric="top5", mode="min") == ("top5", "min")
    stored = frame.assign(**{"primary_metric": "top5", "primary_mode": "max"})
    assert compare.primary_metric(stored, "classification") == ("top5", "max")
    unknown = pd.DataFrame(
        [
            run("adamp", 0, 1.0, task="newtask", metric="score"),
        ]
    )
    assert compare.primary_metric(unknown, "newtask") == ("score", "max")
    two = unknown.assign(**{"metrics.other_loss": 1.0})
    with pytest.raises(KeyError, match="--metric"):
        compare.primary_metric(two, "newtask")


@pytest.mark.parametrize("task", sorted(compare.PRIMARY_METRICS))
def test_primary_metric_mapping_mirrors_task_metrics(task):
    """The fallback mapping must equal Task.primary_metric() of the registered task (analysis never imports
    tasks at run time, so this test is what keeps the two in sync)."""
    tasks = importlib.import_module("benchmarks.tasks")
    if task not in tasks.TASKS:
        pytest.fail(f"PRIMARY_METRICS names {task!r}, which is not a registered task")
    assert compare.PRIMARY_METRICS[task] == tasks.get_task(task).primary_metric()


# ---------------------------------------------------------------------------------------- performance profile
def test_performance_ratios_and_profile_by_hand():
    scores = pd.DataFrame(
        {"a": [90.0, 20.0, 50.0], "b": [80.0, 10.0, np.nan], "c": [72.0, 40.0, 40.0]}, index=["p1", "p2", "p3"]
    )
    modes = pd.Series({"p1": "max", "p2": "min", "p3": "max"})
    r = compare.performance_ratios(scores, modes)
    expected = pd.DataFrame(
        {"a": [1.0, 2.0, 1.0], "b": [90 / 80, 1.0, np.inf], "c": [1.25, 4.0, 1.25]}, index=["p1", "p2", "p3"]
    )
    pd.testing.assert_frame_equal(r, expected)
    prof = compare.performance_profile(r, taus=[1.0, 1.2, 1.25, 2.0, 4.0])
    assert prof["a"].tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1.0, 1.0])
    assert prof["b"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])  # inf never counts
    assert prof["c"].tolist() == pytest.approx([0.0, 0.0, 2 / 3, 2 / 3, 1.0])
    default = compare.performance_profile(r)
    assert (
        default.index[0] == 1.0
        and default.index[-1] >= 4.0
        and set(np.round([1.125, 1.25], 6)) <= set(np.round(default.index, 6))
    )


def test_performance_ratios_need_positive_scores():
    scores = pd.DataFrame({"a": [0.0, 2.0], "b": [1.0, 1.0]}, index=["p", "q"])
    modes = pd.Series({"p": "min", "q": "min"})
    with pytest.raises(ValueError, match="positive"):
        compare.performance_ratios(scores, modes, on_nonpositive="raise")
    ratios = compare.performance_ratios(scores, modes)
    assert ratios.index.tolist() == ["q"] and ratios.attrs["dropped"] == ["p"]
    assert ratios.loc["q"].tolist() == [2.0, 1.0]


def test_score_matrix_uses_finished_runs():
    rows = [run("adamp", 0, 2.0), run("adamp", 1, 4.0), run("sgd", 0, 1.0), run("sgd", 1, None, status="diverged")]
    scores, modes = compare.score_matrix(pd.DataFrame(rows))
    assert scores.loc["classification / digits / digits_cnn"].to_dict() == {"adamp": 3.0, "sgd": 1.0}
    assert modes.to_dict() == {"classification / digits / digits_cnn": "max"}


# ---------------------------------------------------------------------------------------- cost
def test_run_costs_and_summary():
    rows = [
        run("adamp", 0, 1.0, wall=7200.0, device="NVIDIA H100 80GB HBM3"),
        run("adamp", 1, 1.0, wall=3600.0, device="NVIDIA H100 80GB HBM3", **{"env.world_size": 4}),
        run("sgd", 0, 1.0, wall=1800.0),
    ]
    costs = compare.run_costs(pd.DataFrame(rows))
    assert costs["gpus"].tolist() == [1, 4, 0]
    assert costs["gpu_hours"].tolist() == pytest.approx([2.0, 4.0, 0.0])
    assert costs["device_hours"].tolist() == pytest.approx([2.0, 4.0, 0.5])
    summary = compare.cost_summary(pd.DataFrame(rows)).set_index("method")
    assert summary.loc["adamp", "gpu_hours"] == pytest.approx(6.0) and summary.loc["adamp", "runs"] == 2
    assert summary.loc["sgd", "total_wall_h"] == pytest.approx(0.5)


def test_estimate_cost_from_measured_step_times():
    measured = pd.DataFrame(
        [
            run(
                "adamp",
                0,
                1.0,
                **{"timing.step_time_s": 0.2, "timing.steps": 50, "train.epochs": 1, "train.batch_size": 32},
            ),
            run(
                "adamp",
                1,
                1.0,
                **{"timing.step_time_s": 0.4, "timing.steps": 50, "train.epochs": 1, "train.batch_size": 32},
            ),
            run(
                "sgd",
                0,
                1.0,
                **{"timing.step_time_s": 0.1, "timing.steps": 50, "train.epochs": 1, "train.batch_size": 32},
            ),
        ]
    )
    plan = pd.DataFrame(
        [
            {
                "task": "classification",
                "model.name": "digits_cnn",
                "optimizer.name": "adamp",
                "steps": 36_000,
                "runs": 3,
            },
            {"task": "classification", "model.name": "digits_cnn", "optimizer.name": "lion", "train.epochs": 10},
            {"task": "retrieval", "model.name": "x", "optimizer.name": "sgd", "steps": 10},
        ]
    )
    est = compare.estimate_cost(plan, measured)
    assert est.loc[0, "step_time_s"] == pytest.approx(0.3)  # median of 0.2 and 0.4
    assert est.loc[0, "est_hours"] == pytest.approx(0.3 * 36_000 * 3 / 3600)
    # an unmeasured optimizer falls back to the task+model median (0.2), and epochs -> 50 steps each
    assert est.loc[1, "step_time_s"] == pytest.approx(0.2) and est.loc[1, "steps"] == pytest.approx(500)
    assert est.loc[1, "source"].startswith("task+model.name")
    assert math.isnan(est.loc[2, "est_hours"]) and est.loc[2, "source"] == "none"


# ---------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_help_describes_every_command(capsys):
    parser = _parser()
    for name in ("tables", "plots", "compare", "report"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert "DIR" in text and "--where" in text and "example" in text


def test_cli_compare_missing_folder_and_unknown_baseline(tmp_path, capsys):
    parser = _parser()
    args = parser.parse_args(["compare", str(tmp_path / "nope")])
    assert args.func(args) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    args = parser.parse_args(["compare", str(tmp_path)])
    assert args.func(args) == 1  # an empty folder: nothing to compare


def test_primary_metric_mapping_covers_every_registered_task():
    tasks = importlib.import_module("benchmarks.tasks")
    assert set(tasks.TASKS) <= set(compare.PRIMARY_METRICS)
