"""Which metric a comparison reads, in which direction, and which runs count: the primary metric of each
task, the declared direction of every metric, and the finished runs (definitions in
:mod:`benchmarks.analysis.compare`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: task name -> (primary metric, "max" | "min"); mirrors ``Task.metrics`` (first entry) of each task. Used
#: only for records written before records carried ``primary_metric`` themselves.
PRIMARY_METRICS: dict[str, tuple[str, str]] = {
    "toy2d": ("cosine_similarity", "max"),
    "toy3d": ("objective", "min"),
    "classification": ("top1", "max"),
    "retrieval": ("recall_at_1", "max"),
    "language_model": ("test_ppl", "min"),
    "audio": ("test_score", "max"),
    "rebias": ("unbiased_acc", "max"),
    "adversarial": ("attacked_acc", "max"),
    "detection": ("ap", "max"),
}

#: task name -> {metric: direction}: the full ``Task.metrics`` of each registered task (a test keeps them in
#: sync), for records written before records carried ``metric_modes`` themselves
METRIC_MODES: dict[str, dict[str, str]] = {
    "toy2d": {"cosine_similarity": "max", "angle_deg": "min", "w_norm": "min", "norm_growth": "min",
              "loss": "min", "steps_to_converge": "min", "steps_to_reach": "min", "max_norm": "min"},
    "toy3d": {"objective": "min", "distance": "min", "r": "min", "max_r": "min", "max_r_step": "min",
              "steps_to_converge": "min", "steps_to_reach": "min"},
    "classification": {"top1": "max", "top5": "max", "val_loss": "min"},
    "retrieval": {f"recall_at_{k}": "max" for k in (1, 2, 4, 8, 10, 20, 30, 40, 50, 100, 1000)} | {"nmi": "max"},
    "language_model": {"test_ppl": "min", "val_ppl": "min"},
    "audio": {f"{split}_{m}": "max" for split in ("test", "val") for m in ("score", "accuracy", "roc_auc", "pr_auc", "f1")}
    | {"test_f1_macro": "max", "val_loss": "min", "skipped_files": "min"},
    "rebias": {"unbiased_acc": "max", "biased_acc": "max", "imagenet_a_acc": "max"},
    "adversarial": {"attacked_acc": "max", "standard_acc": "max"},
    "detection": {m: "max" for m in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")},
}

#: metrics the shared training loop adds to every run, with their direction
LOOP_METRIC_MODES: dict[str, str] = {"train_loss": "min"}

#: statuses whose metrics count
DONE = "done"
#: every status the suite writes (``benchmarks.store.STATUSES``); any other word is named and left out
KNOWN_STATUSES = ("queued", "running", "done", "diverged", "failed", "interrupted")
#: status of a run whose record.json cannot be read (``benchmarks.store.UNREADABLE``)
UNREADABLE = "unreadable"
#: statuses that count as an optimizer's failure (reported beside the comparison, never silently dropped)
FAILED_STATUSES = ("diverged", "failed")


def declared_modes(results: pd.DataFrame, task: str | None = None) -> dict[str, str]:
    """Every metric direction the runs of ``task`` declare: the records' ``metric_modes.*`` columns, then
    :data:`METRIC_MODES` for the task (older records), then the loop's own metrics; ``last_<m>`` and
    ``best_<m>`` inherit the direction of ``<m>``.

    Raises ``ValueError`` when runs of one task declare different directions for one metric (two versions of
    a task in one folder): that is ambiguous and is never resolved silently.
    """
    rows = results if task is None or "task" not in results.columns else results[results["task"] == task]
    modes: dict[str, str] = dict(LOOP_METRIC_MODES)
    if task is not None:
        modes.update(METRIC_MODES.get(task, {}))
    for col in sorted(c for c in rows.columns if c.startswith("metric_modes.")):
        found = {str(v) for v in rows[col].dropna()}
        name = col.removeprefix("metric_modes.")
        if len(found) > 1:
            raise ValueError(f"runs of task {task!r} declare different directions for metric {name!r}: "
                             f"{', '.join(sorted(found))}; compare them separately (--where)")
        if found:
            modes[name] = found.pop()
    for name in [c.removeprefix("metrics.") for c in rows.columns if c.startswith("metrics.")]:
        for prefix in ("last_", "best_"):
            if name.startswith(prefix) and name not in modes and name.removeprefix(prefix) in modes:
                modes[name] = modes[name.removeprefix(prefix)]
    return modes


def primary_metric(
    results: pd.DataFrame, task: str | None = None, metric: str | None = None, mode: str | None = None
) -> tuple[str, str]:
    """Return ``(metric name without the "metrics." prefix, "max" | "min")`` for the runs of ``task``.

    See the module docstring: the direction always comes from the task's declaration. Raises ``KeyError``
    for a metric that no run has, or one with no declared direction and no ``mode``; ``ValueError`` when
    ``mode`` contradicts the declaration.
    """
    if mode is not None and mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    rows = results if task is None or "task" not in results.columns else results[results["task"] == task]
    metric_cols = [c for c in rows.columns if c.startswith("metrics.") and rows[c].notna().any()]
    present = ", ".join(c.removeprefix("metrics.") for c in metric_cols) or "(none)"
    if metric is None:
        for name_col in ("primary_metric", "primary_metric.name"):
            if name_col in rows.columns and rows[name_col].notna().any():
                names = sorted({str(v) for v in rows[name_col].dropna()})
                if len(names) > 1:
                    raise ValueError(f"runs of task {task!r} name different primary metrics ({', '.join(names)}); "
                                     "pass --metric NAME")
                metric = names[0]
                break
        else:
            if task is not None and task in PRIMARY_METRICS:
                metric = PRIMARY_METRICS[task][0]
            else:
                raise KeyError(f"no primary metric known for task {task!r}: pass --metric NAME; metrics in these "
                               f"results: {present}")
    metric = metric.removeprefix("metrics.")
    if f"metrics.{metric}" not in metric_cols:
        raise KeyError(f"no run of task {task!r} has the metric {metric!r}; metrics in these results: {present}")
    declared = declared_modes(results, task).get(metric)
    if declared is None:
        if mode is None:
            raise KeyError(f"metric {metric!r} of task {task!r} has no declared direction (the task's `metrics` "
                           "do not list it): pass --mode max or --mode min")
        return metric, mode
    if mode is not None and mode != declared:
        raise ValueError(f"--mode {mode} contradicts task {task!r}, which declares {metric!r} as {declared!r} "
                         f"({'higher' if declared == 'max' else 'lower'} is better); drop --mode")
    return metric, declared


def number(value: Any) -> float | None:
    """``value`` as a float when it is a number (int or float, not a boolean, not text); else None. The
    analysis never coerces: a metric stored as the text "95.8" is not a number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    return float(value)


def numbers(values: pd.Series) -> pd.Series:
    """:func:`number` of every cell (NaN where a cell is not a number)."""
    return values.map(lambda v: np.nan if number(v) is None else number(v)).astype(float)


def done_runs(results: pd.DataFrame, metric_col: str | None = None) -> pd.DataFrame:
    """Runs with status "done" (and a finite number as ``metric_col`` when given; :func:`metric_left_out`
    names the done runs this leaves out)."""
    out = results[results["status"] == DONE] if "status" in results.columns else results
    if metric_col is not None:
        if metric_col not in out.columns:
            return out.iloc[0:0]
        out = out[np.isfinite(numbers(out[metric_col]).to_numpy(dtype=float))]
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def metric_left_out(runs: pd.DataFrame, metric_col: str) -> list[tuple[str, str]]:
    """``(run id, reason)`` for every done run of ``runs`` that :func:`done_runs` leaves out: a metric that is
    missing, not a number, or not finite."""
    done = runs[runs["status"] == DONE] if "status" in runs.columns else runs
    name = metric_col.removeprefix("metrics.")
    out = []
    for _, row in done.iterrows():
        value = row.get(metric_col)
        if metric_col not in done.columns or value is None or (isinstance(value, float) and np.isnan(value)):
            reason = f"non-finite or missing metric {name} (nan)"
        elif number(value) is None:
            reason = f"metric {name} is not a number ({_shown(value)})"
        elif not np.isfinite(number(value)):
            reason = f"non-finite metric {name} ({number(value)})"
        else:
            continue
        out.append((str(row.get("run_id")), reason))
    return out


def split_unanalysable(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs the analysis can use, left out)``: unreadable records and runs whose status is not one the
    suite writes are left out of every table and comparison, each with its reason (``run_id``, ``reason``)."""
    cols = ["run_id", "reason"]
    if results.empty or "status" not in results.columns:
        return results, pd.DataFrame(columns=cols)
    status = results["status"]
    known = status.map(lambda s: isinstance(s, str) and s in KNOWN_STATUSES)
    rows = []
    for _, row in results[~known].iterrows():
        if row["status"] == UNREADABLE:
            error = str(row.get("error") or "").split("; a rerun", 1)[0].removeprefix("unreadable ")
            rows.append((str(row.get("run_id")), f"unreadable: {error}"))
        else:
            rows.append((str(row.get("run_id")), f"unknown status {_shown(row['status'])}"))
    return results[known.to_numpy(dtype=bool)], pd.DataFrame(rows, columns=cols)
