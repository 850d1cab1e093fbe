"""The verdicts of ``compare-mine``: one task's paired comparison, its table row, the toy row, the overall line
and ``OUT/report.md``.

Each run is assigned to a side (baseline, mine, suite) by its run id, computed from the config that side
wrote, never by matching optimizer names: a user's optimizer may share the baseline's name (AdamP at other
settings), and identical settings give identical run ids, which is reported as such.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from benchmarks.analysis.sensitivity import card_line, direction_words

from .battery import BatteryTask

@dataclass
class TaskPlan:
    task: BatteryTask
    cfg: dict[str, Any]
    baseline: dict[str, Any]
    mine: dict[str, Any]
    paths: list[Path]
    card: dict[str, Any] | None
    seconds_per_run: float | None = None
    to_run: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    #: report lines of the tuning (selected points, expected-best curves, time to target) with --trials
    tuning: list[str] = field(default_factory=list)
    #: with --trials: the TuneResult of this task (for the profile over tasks)
    tune_result: Any = None


SIDES = ("baseline", "mine", "suite")
_WORDS = {"win": "yours better", "loss": "AdamP better", "tie": "equivalent", "inconclusive": "inconclusive"}


def _run_ids(path: Path) -> list[str]:
    from benchmarks.engine.sweep import resolve_file
    from benchmarks.engine.spec import compute_run_id

    runs, _ = resolve_file(path, (), False, check_data=False)
    return [compute_run_id(resolved) for resolved, _ in runs]


def side_frame(plan: TaskPlan, folder: Path):
    """The task's runs with a ``side`` column (baseline, mine, suite); runs of no side are left out."""
    import pandas as pd

    from benchmarks.store import load_results

    frame = load_results(folder)
    if frame.empty or "run_id" not in frame.columns:
        return frame.assign(side=pd.Series(dtype=object)), set()
    ids = {side: set(_run_ids(path)) for side, path in zip(SIDES, plan.paths)}
    shared = ids["baseline"] & ids["mine"]
    side = pd.Series(None, index=frame.index, dtype=object)
    for name in reversed(SIDES):  # the baseline wins a shared id: identical settings are the baseline's runs
        side[frame["run_id"].isin(ids.get(name, set()))] = name
    return frame.assign(side=side)[side.notna()], shared


def judge_task(plan: TaskPlan, folder: Path, optimizer: str, alpha: float,
               margins: Mapping[str, float]) -> dict[str, Any]:
    """The paired comparison of the user's runs with the baseline's on one task (see the module doc)."""
    from benchmarks.analysis.metric_choice import done_runs, primary_metric
    from benchmarks.analysis.paired import CompareSettings, paired_comparison

    frame, shared = side_frame(plan, folder)
    out: dict[str, Any] = {"outcome": "no verdict", "reason": "", "card": card_line(plan.card, None, alpha)}
    if shared:
        out["reason"] = ("your settings are the baseline's: the same configs, the same runs (identical to the "
                         "baseline's runs)")
        return out
    if frame.empty or not (frame["side"] == "mine").any() or not (frame["side"] == "baseline").any():
        out["reason"] = "missing runs: rerun the same command (see `python -m benchmarks status` on the folder)"
        return out
    task = str(frame["task"].iloc[0])
    metric, mode = primary_metric(frame, task)
    col = f"metrics.{metric}"
    done = done_runs(frame, col)
    values = {s: {int(r["train.seed"]): float(r[col]) for _, r in done[done["side"] == s].iterrows()}
              for s in SIDES}
    judged = frame.assign(**{"optimizer.name": frame["side"]})
    judged = judged[judged["side"].isin(("baseline", "mine"))]
    margin = margins.get(plan.task.name, margins.get("*", 0.0))
    settings = CompareSettings(baseline="baseline", methods=("mine",), confidence=1.0 - alpha,
                               margins={task: margin} if margin else {})
    table = paired_comparison(judged, settings)
    out.update(metric=metric, mode=mode, values=values, n_failed=int(
        frame["status"].isin(("failed", "diverged")).sum()) if "status" in frame.columns else 0)
    if table.empty:
        out["reason"] = "no seed finished on both sides"
        return out
    r = table.iloc[0]
    n = int(r["n_pairs"])
    out.update(n=n, delta=float(r["delta"]), ci=(float(r["ci_lo"]), float(r["ci_hi"])),
               mean_mine=float(r["mean_method"]), mean_base=float(r["mean_baseline"]),
               card=card_line(plan.card, n, alpha))
    if plan.card is not None and not plan.card.get("sees"):
        out["reason"] = ("this task cannot see: in calibration an optimizer that barely trains was no loss at 3 "
                         "seeds, so no verdict is given here")
        return out
    out["outcome"], out["reason"] = str(r["outcome"]), str(r["reason"])
    return out


def summary_header(alpha: float | None = None) -> str:
    ci = "CI" if alpha is None else f"{100 * (1 - alpha):.3g}% CI"
    return (f"| task | metric | n | yours − AdamP | {ci} | verdict | why | what this task detects |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |")


def _num(x: Any, fmt: str = "+.4g") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def task_row(plan: TaskPlan, alpha: float) -> str:
    r = plan.result
    metric = f"{r['metric']} ({direction_words(r['mode'])})" if "metric" in r else "–"
    ci = f"[{_num(r['ci'][0], '+.3g')}, {_num(r['ci'][1], '+.3g')}]" if "ci" in r else "–"
    verdict = _WORDS.get(r["outcome"], r["outcome"])
    return (f"| {plan.task.name} | {metric} | {r.get('n', '–')} | {_num(r.get('delta'))} | {ci} | **{verdict}** | "
            f"{r['reason']} | {r['card']} |")


def toy_row(folder: Path, optimizer: str) -> str:
    """The 2-D toy: did the user's optimizer converge, at which lr, and how did the weight norm grow?"""
    from benchmarks.store import load_results

    frame = load_results(folder)
    if frame.empty or "metrics.norm_growth" not in frame.columns:
        return "| toy (2-D) | – | – | – | – | no finished runs | | |"
    frame = frame[frame["status"] == "done"]

    def describe(rows, who: str) -> str:
        if rows.empty:
            return f"{who}: no finished run"
        r = rows.iloc[0]
        steps = float(r.get("metrics.steps_to_converge", -1))
        lr = r.get("optimizer.lr")
        growth = float(r["metrics.norm_growth"])
        conv = (f"converged after {steps:.0f} steps" if steps >= 0 else
                f"did not converge (final angle {float(r.get('metrics.angle_deg', float('nan'))):.3g}°)")
        return f"{who} (lr {lr:g}): {conv}, ‖w‖ grew ×{growth:.3g}" if isinstance(lr, (int, float)) else \
            f"{who}: {conv}, ‖w‖ grew ×{growth:.3g}"

    names = frame["optimizer.name"].astype(str)
    mine = frame[names == optimizer]
    base = frame[(names == "sgdp") & (frame.get("optimizer.momentum") == 0.9)]
    return (f"| toy (2-D) | angle to w* ≤ 1° | 1 | – | – | values, no verdict | deterministic | "
            f"{describe(mine, 'yours')}; {describe(base.head(1), 'SGDP, momentum 0.9')} |")


def overall_line(plans: Sequence[TaskPlan], optimizer: str) -> str:
    counts = {"loss": 0, "win": 0, "tie": 0, "inconclusive": 0, "none": 0}
    for p in plans:
        outcome = p.result.get("outcome")
        counts[outcome if outcome in counts else "none"] += 1
    text = (f"Overall: AdamP better on {counts['loss']} task(s), no difference detectable on "
            f"{counts['inconclusive']}, yours ({optimizer}) better on {counts['win']}")
    if counts["tie"]:
        text += f", equivalent within the margin on {counts['tie']}"
    if counts["none"]:
        text += f"; no verdict on {counts['none']} (see why)"
    return text + "."


def write_report(path: Path, args: argparse.Namespace, plans: Sequence[TaskPlan], rows: Sequence[str],
                 skipped: Mapping[str, str], alpha: float, seeds: Sequence[int], tail: Sequence[str] = ()) -> None:
    from benchmarks.atomic import write_text_atomic

    done = [p for p in plans if p.result]
    lines = [f"# compare-mine: {args.optimizer}", "",
             f"Seeds {', '.join(map(str, seeds))}. Each task's verdict: paired t-test over the seeds at α = "
             f"{alpha:.3g} (0.05 / {len(plans)} tasks: the chance of any false win or loss in this table is ≤ 5%), "
             "test metrics from the model selected on validation or the last model (the task's train.select). "
             "What each task can detect comes from its sensitivity card (results/battery/cards.md)."
             + (f" Budget: each optimizer {args.trials} trials per task, selected on validation, then compared at "
                "these seeds." if getattr(args, "trials", None) else " Both sides at one setting each (no tuning)."),
             "",
             "## Verdicts", "", summary_header(alpha), *rows, ""]
    if done:
        lines.append(overall_line(done, args.optimizer) + ("" if len(done) == len(plans) else
                                                             f" ({len(done)} of {len(plans)} tasks finished)"))
        lines.append("")
    for name, why in skipped.items():
        lines += [f"- {name}: not run: {why}"]
    lines += ["## Settings of both sides", ""]
    for p in plans:
        lines += [f"### {p.task.name}: {p.task.what}", "",
                  f"- baseline: `{yaml.safe_dump(p.baseline, default_flow_style=True).strip()}`",
                  f"- yours: `{yaml.safe_dump(p.mine, default_flow_style=True).strip()}`",
                  f"- config: `{p.task.config}`; runs: `{args.out / p.task.name}`"]
        values = p.result.get("values")
        if values:
            seeds_all = sorted(set(values["baseline"]) | set(values["mine"]))
            lines += ["", "| seed | AdamP | yours |" + (" AdamW (not judged) |" if values.get("suite") else ""),
                      "| --- | --- | --- |" + (" --- |" if values.get("suite") else "")]
            for s in seeds_all:
                extra = f" {_num(values['suite'].get(s), '.4g')} |" if values.get("suite") else ""
                lines.append(f"| {s} | {_num(values['baseline'].get(s), '.4g')} | "
                             f"{_num(values['mine'].get(s), '.4g')} |{extra}")
        lines.append("")
    tuned = [line for p in plans for line in p.tuning]
    if tuned:
        lines += [f"## Tuning: each optimizer got {args.trials} trials per task", "", *tuned, ""]
        lines += list(tail)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines) + "\n")


__all__ = ["judge_task", "overall_line", "side_frame", "summary_header", "task_row", "toy_row", "write_report"]
