"""``compare-mine --trials N``: the same tuning budget for both sides before the verdict.

On each task the baseline (AdamP, from its registry search space) and the user's optimizer (from ``--space`` or
the registry's default) each get N quasi-random trials at the tuning seed (:data:`TRIAL_SEED`), each side's
point is selected on the task's validation metric (``benchmarks.workflows.tune``), and the two selected
points run at the comparison's seeds, which the selection never saw. The verdict compares those final runs
exactly as an untuned comparison would; the report adds the selected points, the expected-best curves over
k = 1..N trials and the time to target (docs/tuning.md).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from . import battery as bat
from .mine_report import TaskPlan

#: every tuning trial runs at this seed; the comparison's seeds must differ from it
TRIAL_SEED = 999


#: the lr an arm is resolved with before its trials set their own (only when the search space has optimizer.lr)
STAND_IN_LR = 1.0e-3


def tuning_config(plan: TaskPlan, space: Any = None) -> tuple[dict[str, Any], list[str]]:
    """The task's config with both sides as two arms of a zip, and the arms' labels (baseline first).

    ``space``: the user's search space (None: the default, which searches the learning rate). An optimizer
    that requires ``lr`` gets :data:`STAND_IN_LR` in its arm when the space searches ``optimizer.lr``, since
    every trial then sets its own; otherwise its missing lr stays an error."""
    from .tune import arms_of

    mine = dict(plan.mine)
    searched = space is None or "optimizer.lr" in getattr(space, "keys", ())
    if "lr" not in mine and searched:
        mine["lr"] = STAND_IN_LR
    cfg = bat.with_optimizer(plan.cfg, plan.baseline)
    cfg["zip"] = {"optimizer": [dict(plan.baseline), mine]}
    labels = [label for label, _ in arms_of(cfg)]
    return cfg, labels


def profile_lines(results: Sequence[Any], baseline: str, out: Path) -> list[str]:
    """AlgoPerf-style performance profile of median steps to target over the tasks tuned so far."""
    from benchmarks.analysis import plots

    from .tune_report import profile_over_tasks

    times, profile = profile_over_tasks(results, baseline)
    if profile.empty:
        return []
    lines = ["", "## Performance profile over tasks (median steps to target of the final runs)", "",
             "rho(tau): share of tasks on which a method's median steps to target is within tau of the fastest "
             "(AlgoPerf's score; a method that never reaches a task's target counts as infinitely slow there).", "",
             "| tau | " + " | ".join(map(str, profile.columns)) + " |", "| --- " * (len(profile.columns) + 1) + "|"]
    for tau, row in profile.iterrows():
        if tau in (1.0, 1.25, 1.5, 2.0, 4.0) or tau == profile.index[-1]:
            lines.append(f"| {tau:g} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    paths = plots.save(plots.profile_figure(profile, f"Time-to-target profile ({times['task'].nunique()} tasks)",
                                            "time_to_target_profile"), out, formats=("png",))
    return lines + [f"- figure: {p}" for p in paths]


def run_tuned(plan: TaskPlan, args: argparse.Namespace, seeds: Sequence[int]) -> tuple[TaskPlan, Path, list[str]]:
    """Tune both sides of one task; the plan of the final runs, their folder and the report's lines."""
    from .tune import load_space, run_tuning
    from .tune_report import report_lines

    user_space = load_space(args.space) if args.space else None
    cfg, labels = tuning_config(plan, user_space)
    space = {labels[1]: user_space} if user_space is not None else None
    out = args.out / plan.task.name / "tune"
    result = run_tuning(cfg, trials=args.trials, out=out, space=space, executor=args.executor,
                        trial_seed=TRIAL_SEED, final_seeds=list(seeds),
                        options={"max_parallel": args.max_parallel, "progress": False},
                        source=str(plan.task.config))
    by_label = {arm.label: arm for arm in result.arms}
    lines = [f"### {plan.task.name}: {args.trials} trials per optimizer at seed {TRIAL_SEED}, selected on "
             f"{result.metric} ({result.metric_note or 'validation'})", ""]
    for side, label in zip(("AdamP", "yours"), labels):
        arm = by_label.get(label)
        point = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
                          for k, v in (arm.selected_point if arm else {}).items()) or "none (no trial finished)"
        lines.append(f"- {side} ({label}): space {arm.space_origin if arm else '?'}; selected trial "
                     f"{arm.selected if arm else '–'}: {point}")
    lines += report_lines(result, out, baseline=labels[0])
    if result.problems:
        lines += ["", "problems: " + "; ".join(result.problems)]
    lines.append("")
    paths = [out / "configs" / f"{label}-final.yaml" for label in labels]
    tuned = replace(plan, paths=paths)
    if not all(p.is_file() for p in paths):
        tuned = replace(plan, paths=[])
    plan.tune_result = result
    return tuned, out / "final", lines


__all__ = ["TRIAL_SEED", "profile_lines", "run_tuned", "tuning_config"]
