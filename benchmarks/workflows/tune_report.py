"""The analysis part of a ``tune`` report: expected-best curves over the trials and time to target of the
final runs, each arm against a baseline arm (``adamp`` when the config has it). Reads the results store
through :mod:`benchmarks.analysis` only; compare-mine can call the same functions on its own arms.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd


def trial_frame(result: Any) -> pd.DataFrame:
    """One row per trial of a :class:`~benchmarks.workflows.tune.TuneResult`: task, method, trial, value.

    Unfinished trials (failed, missing) are not outcomes of the optimizer and are left out; diverged ones
    stay (with their value, NaN when they reported none)."""
    rows = []
    for arm in result.arms:
        for _, r in arm.trials.iterrows():
            if r["status"] in ("done", "diverged"):
                rows.append({"task": result.task, "method": arm.label, "trial": int(r["trial"]),
                             "value": float(r["value"])})
    return pd.DataFrame(rows, columns=["task", "method", "trial", "value"])


def final_times(result: Any, baseline: str, fraction: float = 0.9) -> tuple[pd.DataFrame, float]:
    """Time to target of every final run (``task, method, seed, run_id, reached, steps, time``) and the
    target (:func:`benchmarks.analysis.time_to_target.target_value` of the baseline arm's final runs)."""
    from benchmarks import store
    from benchmarks.analysis.time_to_target import target_value, time_to_target

    arms = {a.label: a for a in result.arms if a.final is not None and len(a.final)}
    if baseline not in arms:
        raise ValueError(f"no final runs of the baseline arm {baseline}")
    ids = [rid for a in arms.values() for rid in a.final["run_id"]]
    history = store.load_history(result.final_dir, ids)
    results = store.load_results(result.final_dir)
    base_done = arms[baseline].final[arms[baseline].final["status"] == "done"]
    target = target_value(history, list(base_done["run_id"]), result.metric, result.mode, fraction)
    parts = []
    for label, arm in arms.items():
        done = arm.final[arm.final["status"] == "done"]
        rows = results[results["run_id"].isin(done["run_id"])]
        t = time_to_target(history, rows, result.metric, result.mode, target)
        t = t.merge(done[["run_id", "seed"]], on="run_id")
        t.insert(0, "method", label)
        t.insert(0, "task", result.task)
        t["time"] = t["steps"]
        parts.append(t)
    return pd.concat(parts, ignore_index=True), target


def profile_over_tasks(results: Sequence[Any], baseline: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time to target of the final runs of several tunes (one per task) and the AlgoPerf-style performance
    profile of median steps to target over those tasks (:func:`benchmarks.analysis.time_to_target.time_profile`;
    draw it with :func:`benchmarks.analysis.plots.profile_figure`). Tasks without a target are left out."""
    from benchmarks.analysis.time_to_target import time_profile

    parts = []
    for result in results:
        try:
            parts.append(final_times(result, baseline)[0])
        except ValueError:
            continue
    times = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["task", "method", "seed", "run_id", "reached", "steps", "time"])
    return times, (time_profile(times) if len(times) else pd.DataFrame())


def report_lines(result: Any, out: Path, baseline: str | None = None, formats: Sequence[str] = ("png",)) -> list[str]:
    """Markdown lines: expected-best table, sentences and figure; time to target with the paired verdicts."""
    from benchmarks.analysis.expected_best import expected_best_curves, overtake_sentence, save_curve_figures
    from benchmarks.analysis.time_to_target import compare_times

    labels = [a.label for a in result.arms]
    if baseline is None:
        baseline = "adamp" if "adamp" in labels else labels[0]
    lines = ["", f"## Expected best {result.metric} over k trials (exact, k-subsets of the N trials without "
                 f"replacement; docs/tuning.md)", ""]
    trials = trial_frame(result)
    if trials.empty:
        return lines + ["no finished trials"]
    curves = expected_best_curves(trials, result.mode)
    ks = sorted(set(curves["k"]))
    lines.append("| method | " + " | ".join(f"k={k}" for k in ks) + " |")
    lines.append("| --- " * (len(ks) + 1) + "|")
    for method, c in curves.groupby("method", sort=False):
        vals = dict(zip(c["k"], c["expected"]))
        lines.append(f"| {method} | " + " | ".join("–" if k not in vals or math.isnan(vals[k]) else f"{vals[k]:.4g}"
                                                    for k in ks) + " |")
    lines.append("")
    for label in labels:
        if label != baseline and label in set(curves["method"]) and baseline in set(curves["method"]):
            lines.append(f"- {label} vs {baseline}: {overtake_sentence(curves, label, baseline, result.mode)}")
    paths = save_curve_figures(curves, {result.task: (result.metric, result.mode)}, Path(out) / "figures", formats)
    lines += [f"- figure: {p}" for p in paths]
    try:
        times, target = final_times(result, baseline)
    except ValueError as exc:
        return lines + ["", f"time to target: not computed ({exc})"]
    lines += ["", f"## Time to target: {result.metric} {'>=' if result.mode == 'max' else '<='} {target:.4g} "
                  f"(median over {baseline}'s final runs of its best value by 90% of the budget)", "",
              "| method | reached | median steps (censored = never) | median training s | paired vs " + baseline
              + " | why |", "| --- | --- | --- | --- | --- | --- |"]
    base = times[times["method"] == baseline]
    for label in labels:
        sub = times[times["method"] == label]
        if sub.empty:
            continue
        t = sub["steps"].where(sub["reached"].astype(bool), float("inf"))
        med = float(t.median())
        secs = float(sub["seconds"].where(sub["reached"].astype(bool), float("inf")).median())
        verdict, why = "–", ""
        if label != baseline:
            cmp = compare_times(sub, base)
            verdict, why = cmp.verdict, cmp.reason
        lines.append(f"| {label} | {int(sub['reached'].sum())} of {len(sub)} | "
                     f"{'never' if math.isinf(med) else f'{med:.0f}'} | "
                     f"{'never' if math.isinf(secs) else f'{secs:.3g}'} | {verdict} | {why} |")
    return lines


__all__ = ["final_times", "profile_over_tasks", "report_lines", "trial_frame"]
