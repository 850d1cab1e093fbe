"""A fair comparison of optimizers on the runs of one results folder.

Everything here is a plain function on the frame returned by ``benchmarks.store.load_results`` (one row per
run), so it is testable on hand-built frames and usable from a notebook.

Definitions (also printed in the reports):

* **Task group**: runs that differ only in the optimizer and the seed. The key is ``task`` plus every
  ``data.*``, ``model.*`` and ``train.*`` column that varies between runs of that task, except ``train.seed``
  and the keys in :data:`NON_SEMANTIC_TRAIN_KEYS` (device, worker counts, logging and checkpoint cadence),
  which do not change what is computed. ``tags.*`` are labels, never part of the key.
* **Method**: the optimizer name, plus the ``optimizer.*`` hyper-parameters that vary between runs with that
  name inside one task group (``adamp[lr=0.01]``); a name used with one setting per group is just the name,
  so a learning rate tuned per task still compares as one method across tasks.
* **Primary metric** of a task, in this order: ``--metric``; the column ``primary_metric`` that every
  record written since the metric declarations were stored carries; the mapping :data:`PRIMARY_METRICS`
  (older records), which mirrors ``Task.metrics`` of the registered tasks (a test keeps the two in sync) so
  that analysis reads the store only and never imports task code.
* **Direction** ("max" or "min") of a metric: ALWAYS the task's declaration, read from the record's
  ``metric_modes.<name>`` columns or, for older records, from :data:`METRIC_MODES` (``last_<m>`` and
  ``best_<m>`` have the direction of ``<m>``). ``--mode`` is only needed for a metric that its task does
  not declare; a ``--mode`` that contradicts a declaration, or a metric that is in no record, is an error.
  Nothing is guessed from the metric's name.
* **Paired difference**: for each seed that finished (status "done", finite metric) under both the method
  and the baseline in the same task group, ``method - baseline``. Verdicts come from a paired t-test with
  an optional equivalence margin per task and Holm's correction over all cells judged at once; the rules
  and their simulated error rates are in :mod:`benchmarks.analysis.stats` and ``docs/statistics.md``.
  Fewer than ``min_pairs`` matched seeds, or differences without variance, give *inconclusive* with the
  reason (never a win or a loss).
* **Performance profile** (Dolan and More, 2002): for problem p (task group) and method s with mean score
  a_ps over its finished seeds, the ratio is r_ps = a_ps / min_s a_ps for "min" metrics and
  r_ps = max_s a_ps / a_ps for "max" metrics (so 1 is the best method, and larger is worse); a method with
  no finished run on p gets r_ps = inf. rho_s(tau) is the fraction of problems with r_ps <= tau. Problems
  with a score <= 0 (a loss of exactly 0, a negative cosine) have no meaningful ratio and are left out.
* **Cost**: wall time from ``timing.wall_s``; a run is on a GPU when ``env.device`` names CUDA or a GPU;
  GPU-hours = wall_s / 3600 x the number of GPUs (``env.num_gpus``, ``env.world_size`` or
  ``train.world_size`` if present, else 1).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import stats

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

#: ``train.*`` keys that do not change what a run computes; ignored when grouping runs into tasks
NON_SEMANTIC_TRAIN_KEYS = frozenset(
    {
        "train.seed",
        "train.device",
        "train.num_workers",
        "train.num_threads",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every_steps",
        "train.checkpoint_every_minutes",
        "train.diagnostics",
        "train.deterministic",
    }
)

#: statuses whose metrics count
DONE = "done"
#: statuses that count as an optimizer's failure (reported beside the comparison, never silently dropped)
FAILED_STATUSES = ("diverged", "failed")

_DISPLAY_NAMES = {"sgd": "SGD", "sgdp": "SGDP", "adam": "Adam", "adamw": "AdamW", "adamp": "AdamP"}


# --------------------------------------------------------------------------------------------------------
# frame helpers
# --------------------------------------------------------------------------------------------------------
def hashable(value: Any) -> Any:
    """Make a cell usable as a group key: lists/dicts become canonical JSON, NaN/None become None."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def filter_where(results: pd.DataFrame, where: Iterable[str] = ()) -> pd.DataFrame:
    """Keep the runs whose columns equal the given ``KEY=VALUE`` strings (values compared as text).

    ``optimizer.lr=0.001`` matches a float 0.001; ``task=toy2d`` matches the string. Unknown keys raise a
    ``KeyError`` that lists the columns.
    """
    out = results
    for item in where:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"--where expects KEY=VALUE (e.g. optimizer.name=adamp), got {item!r}")
        key = key.strip()
        if key not in out.columns:
            raise KeyError(f"--where: no column {key!r} in the results; columns: {', '.join(sorted(out.columns))}")
        wanted = value.strip()
        out = out[out[key].map(lambda v, wanted=wanted: _text_equal(v, wanted))]
    return out


def _text_equal(cell: Any, text: str) -> bool:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return text.lower() in {"none", "null", "nan", ""}
    if isinstance(cell, bool):
        return str(cell).lower() == text.lower()
    if isinstance(cell, (int, float, np.integer, np.floating)):
        try:
            return float(cell) == float(text)
        except ValueError:
            return False
    return str(cell) == text


def canonical_optimizer(name: str) -> str:
    """Canonical spelling of an optimizer name: ``torch.optim.NAdam`` and ``torch.optim:NAdam`` are the same.

    Registry names are case-insensitive; the last component of an import path keeps its case.
    """
    name = str(name).strip()
    if ":" in name:
        module, _, attr = name.partition(":")
        if module == "timm":  # "timm:<name>" names a timm optimizer, not an import path
            return f"timm:{attr.lower()}"
        return f"{module}.{attr}"
    if "." in name:
        return name
    return name.lower()


def _short_name(name: str) -> str:
    canon = canonical_optimizer(name)
    return canon.rsplit(".", 1)[-1].rsplit(":", 1)[-1].lower()


def optimizer_mask(results: pd.DataFrame, name: str) -> pd.Series:
    """Rows whose ``optimizer.name`` is ``name``.

    The exact canonical spelling is tried first (``torch.optim:NAdam`` = ``torch.optim.NAdam``); if nothing
    matches, the last path component is compared case-insensitively (``NAdam`` finds
    ``torch.optim:NAdam``) when that identifies exactly one stored name. Raises ``KeyError`` listing the
    stored names when nothing matches.
    """
    if "optimizer.name" not in results.columns:
        raise KeyError("the results have no `optimizer.name` column (is this a results folder of this suite?)")
    names = results["optimizer.name"].astype(str)
    wanted = canonical_optimizer(name)
    mask = names.map(canonical_optimizer) == wanted
    if mask.any():
        return mask
    short = names.map(_short_name)
    candidates = sorted(set(names[short == _short_name(name)]))
    if len(candidates) == 1:
        return names == candidates[0]
    stored = ", ".join(sorted(set(names)))
    if candidates:
        raise KeyError(f"optimizer {name!r} is ambiguous; it matches {', '.join(candidates)}: spell it out")
    raise KeyError(f"no runs with optimizer {name!r}; optimizers in these results: {stored or '(none)'}")


def display_optimizer(name: str) -> str:
    """Paper spelling of a registry name (``sgdp`` -> ``SGDP``); other names unchanged."""
    return _DISPLAY_NAMES.get(str(name).lower(), str(name))


def method_labels(results: pd.DataFrame, groups: pd.Series | None = None) -> pd.Series:
    """One label per run: the optimizer name plus the ``optimizer.*`` settings that vary between runs with
    that name inside one task group (so a learning rate tuned per task keeps the plain name)."""
    if results.empty:
        return pd.Series([], index=results.index, dtype=object)
    groups = group_labels(results) if groups is None else groups
    opt_cols = sorted(c for c in results.columns if c.startswith("optimizer.") and c != "optimizer.name")
    labels = pd.Series(index=results.index, dtype=object)
    names = results["optimizer.name"].astype(str)
    for _, idx in names.groupby([groups, names]).groups.items():
        sub = results.loc[idx]
        varying = [c for c in opt_cols if sub[c].map(hashable).nunique(dropna=False) > 1]
        for i in idx:
            if varying:
                parts = ",".join(f"{c.split('.', 1)[1]}={_fmt_setting(results.at[i, c])}" for c in varying)
                labels.at[i] = f"{names.at[i]}[{parts}]"
            else:
                labels.at[i] = names.at[i]
    return labels


def _fmt_setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(hashable(value))


def group_columns(results: pd.DataFrame) -> list[str]:
    """Setting columns (data/model/train, see module doc) that vary between runs of ``results``."""
    cols = []
    for c in sorted(results.columns):
        if c.startswith(("data.", "model.", "train.")) and c not in NON_SEMANTIC_TRAIN_KEYS:
            if results[c].map(hashable).nunique(dropna=False) > 1:
                cols.append(c)
    return cols


def group_labels(results: pd.DataFrame) -> pd.Series:
    """Task-group label per run: ``task / data.name / model.name`` plus ``[key=value, ...]`` for the other
    data/model/train settings that vary between runs of the same task."""
    if results.empty:
        return pd.Series([], index=results.index, dtype=object)
    tasks = results["task"].astype(str) if "task" in results.columns else pd.Series("", index=results.index)
    named = [c for c in ("data.name", "model.name") if c in results.columns]
    labels = pd.Series(index=results.index, dtype=object)
    for _, idx in tasks.groupby(tasks).groups.items():
        sub = results.loc[idx]
        extra_cols = [c for c in group_columns(sub) if c not in named]
        for i in idx:
            parts = [tasks.at[i]] + [
                str(hashable(results.at[i, c])) for c in named if hashable(results.at[i, c]) is not None
            ]
            extra = [f"{c}={_fmt_setting(results.at[i, c])}" for c in extra_cols]
            text = " / ".join(p for p in parts if p)
            labels.at[i] = f"{text} [{', '.join(extra)}]" if extra else text
    return labels


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


def done_runs(results: pd.DataFrame, metric_col: str | None = None) -> pd.DataFrame:
    """Runs with status "done" (and a finite value of ``metric_col`` when given)."""
    out = results[results["status"] == DONE] if "status" in results.columns else results
    if metric_col is not None:
        if metric_col not in out.columns:
            return out.iloc[0:0]
        values = pd.to_numeric(out[metric_col], errors="coerce")
        out = out[np.isfinite(values.to_numpy(dtype=float))]
    return out


# --------------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareSettings:
    """Settings of a comparison, kept together so that reports can print them.

    ``margins``: equivalence margin per task name (metric units; a difference surely inside +-margin is a
    tie), ``"*"`` for every other task; none by default (then nothing is ever called a tie: "the seeds
    cannot tell" is not "equal").
    """

    baseline: str = "adamp"
    metric: str | None = None
    mode: str | None = None
    confidence: float = 0.95
    margins: Mapping[str, float] = field(default_factory=dict)
    min_pairs: int = stats.MIN_PAIRS
    #: compare only these optimizers with the baseline (empty: every other optimizer); the multiple-comparison
    #: family is then only their cells, so asking about one new optimizer does not pay for the suite's
    methods: tuple[str, ...] = ()

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def margin(self, task: str | None) -> float:
        return float(self.margins.get(str(task), self.margins.get("*", 0.0)))

    def describe(self) -> str:
        """One paragraph saying how the verdicts were reached (printed under every comparison)."""
        margins = ", ".join(f"{k}: {v:g}" for k, v in sorted(self.margins.items())) or "none"
        return (
            f"Paired differences (method − baseline) over the seeds both finished; mean with a Student t "
            f"{self.confidence:.0%} CI (n − 1 degrees of freedom). Verdict at α = {self.alpha:.3g} with Holm's "
            f"correction over all comparisons of this table: win / loss when the two-sided paired t-test rejects "
            f"no difference, tie when the TOST test shows the difference inside the task's equivalence margin "
            f"(margins: {margins}), otherwise inconclusive. No verdict with fewer than {self.min_pairs} matched "
            f"seeds or without variance across seeds. Error rates simulated in docs/statistics.md."
        )


def paired_comparison(results: pd.DataFrame, settings: CompareSettings | None = None) -> pd.DataFrame:
    """Paired differences to the baseline per task group and method, with verdicts.

    One row per (task group, method other than the baseline) with columns: ``group``, ``task``, ``method``,
    ``baseline``, ``metric``, ``mode``, ``n_pairs``, ``seeds`` (matched seeds), ``mean_method``,
    ``mean_baseline`` (over the matched seeds), ``delta`` (mean of method - baseline), ``sd`` (of the
    differences), ``ci_lo``, ``ci_hi`` (t interval), ``p`` (two-sided paired t-test), ``p_adj`` (Holm over
    all rows), ``margin``, ``p_equiv_adj`` (TOST, Holm), ``outcome``, ``reason``, ``failed_method`` /
    ``failed_baseline`` (diverged or failed runs in the group), ``unmatched`` (finished runs without a
    partner seed). Groups without baseline runs are left out (they have nothing to pair with). Raises
    ``KeyError`` when the baseline optimizer has no run at all.
    """
    settings = settings or CompareSettings()
    if results.empty:
        return pd.DataFrame(columns=_COMPARE_COLUMNS)
    if "train.seed" not in results.columns:
        raise KeyError("the results have no `train.seed` column; paired comparison needs seeds")
    frame = results.copy()
    frame["_is_base"] = optimizer_mask(frame, settings.baseline)
    frame["_group"] = group_labels(frame)
    frame["_method"] = method_labels(frame, frame["_group"])
    if settings.methods:
        chosen = np.zeros(len(frame), dtype=bool)
        for name in settings.methods:
            chosen |= optimizer_mask(frame, name).to_numpy()
        frame = frame[chosen | frame["_is_base"].to_numpy()]
    rows: list[dict[str, Any]] = []
    tests: list[stats.PairedTest] = []
    for group, sub in frame.groupby("_group", sort=True):
        task = str(sub["task"].iloc[0]) if "task" in sub.columns else None
        metric, mode = primary_metric(frame, task, settings.metric, settings.mode)
        col = f"metrics.{metric}"
        base = sub[sub["_is_base"]]
        if base.empty:
            continue
        if len(set(base["_method"])) > 1:
            raise ValueError(
                f"baseline {settings.baseline!r} has several settings in task group {group!r} "
                f"({', '.join(sorted(set(base['_method'])))}); select one with --where optimizer.<key>=<value>"
            )
        margin = settings.margin(task)
        base_done = done_runs(base, col)
        base_by_seed = _per_seed(base_done, col)
        failed_base = int(base["status"].isin(FAILED_STATUSES).sum()) if "status" in base.columns else 0
        for method, msub in sub[~sub["_is_base"]].groupby("_method", sort=True):
            m_done = done_runs(msub, col)
            m_by_seed = _per_seed(m_done, col)
            seeds = sorted(set(m_by_seed.index) & set(base_by_seed.index))
            diffs = np.array([m_by_seed[s] - base_by_seed[s] for s in seeds], dtype=float)
            test = stats.paired_t(diffs, margin=margin, confidence=settings.confidence, min_pairs=settings.min_pairs)
            tests.append(test)
            rows.append(
                {
                    "group": group,
                    "task": task,
                    "method": method,
                    "baseline": str(base["_method"].iloc[0]),
                    "metric": metric,
                    "mode": mode,
                    "n_pairs": len(seeds),
                    "seeds": ",".join(str(_seed_text(s)) for s in seeds),
                    "mean_method": float(np.mean([m_by_seed[s] for s in seeds])) if seeds else float("nan"),
                    "mean_baseline": float(np.mean([base_by_seed[s] for s in seeds])) if seeds else float("nan"),
                    "delta": test.mean,
                    "sd": test.sd,
                    "ci_lo": test.ci_lo,
                    "ci_hi": test.ci_hi,
                    "p": test.p,
                    "margin": margin,
                    "failed_method": int(msub["status"].isin(FAILED_STATUSES).sum()) if "status" in msub else 0,
                    "failed_baseline": failed_base,
                    "unmatched": int(len(set(m_by_seed.index) ^ set(base_by_seed.index))),
                }
            )
    judged = stats.judge(tests, [r["mode"] for r in rows], [r["margin"] for r in rows], settings.alpha)
    for row, (verdict, reason, p_adj, pe_adj) in zip(rows, judged, strict=True):
        row.update(outcome=verdict, reason=reason, p_adj=p_adj, p_equiv_adj=pe_adj)
    return pd.DataFrame(rows, columns=_COMPARE_COLUMNS)


_COMPARE_COLUMNS = [
    "group",
    "task",
    "method",
    "baseline",
    "metric",
    "mode",
    "n_pairs",
    "seeds",
    "mean_method",
    "mean_baseline",
    "delta",
    "sd",
    "ci_lo",
    "ci_hi",
    "p",
    "p_adj",
    "margin",
    "p_equiv_adj",
    "outcome",
    "reason",
    "failed_method",
    "failed_baseline",
    "unmatched",
]


def _seed_text(seed: Any) -> Any:
    return int(seed) if isinstance(seed, (float, np.floating)) and float(seed).is_integer() else seed


def _per_seed(runs: pd.DataFrame, col: str) -> pd.Series:
    """Metric per seed; duplicate runs of one seed (re-runs) are averaged so that each seed counts once."""
    if runs.empty:
        return pd.Series(dtype=float)
    values = pd.to_numeric(runs[col], errors="coerce")
    return values.groupby(runs["train.seed"].map(_seed_text)).mean()


def win_tie_loss(comparison: pd.DataFrame) -> pd.DataFrame:
    """Count outcomes per method: columns ``method``, ``win``, ``tie``, ``loss``, ``inconclusive``, ``tasks``."""
    kinds = ["win", "tie", "loss", "inconclusive"]
    if comparison.empty:
        return pd.DataFrame(columns=["method", *kinds, "tasks"])
    counts = comparison.groupby("method")["outcome"].value_counts().unstack(fill_value=0)
    counts = counts.reindex(columns=kinds, fill_value=0)
    counts["tasks"] = counts.sum(axis=1)
    return counts.reset_index().rename_axis(columns=None)


def score_matrix(results: pd.DataFrame, settings: CompareSettings | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Mean primary metric per (task group x method) over finished runs, and each group's direction.

    Returns ``(scores, modes)``: ``scores`` has task groups as index and methods as columns (NaN when a
    method has no finished run in a group); ``modes`` maps each group to "max" or "min".
    ``scores.attrs["ran"]`` is a boolean frame of the same shape: whether the method has any run in the
    group (a method that never ran a task is *missing* there, not failed).
    """
    settings = settings or CompareSettings()
    frame = results.copy()
    if frame.empty:
        return pd.DataFrame(), pd.Series(dtype=object)
    frame["_group"] = group_labels(frame)
    frame["_method"] = method_labels(frame, frame["_group"])
    scores: dict[tuple[str, str], float] = {}
    ran: dict[tuple[str, str], bool] = {}
    modes: dict[str, str] = {}
    for group, sub in frame.groupby("_group", sort=True):
        task = str(sub["task"].iloc[0]) if "task" in sub.columns else None
        metric, mode = primary_metric(frame, task, settings.metric, settings.mode)
        modes[group] = mode
        col = f"metrics.{metric}"
        for method in sorted(set(frame["_method"])):
            runs = sub[sub["_method"] == method]
            done = done_runs(runs, col)
            scores[(group, method)] = float(pd.to_numeric(done[col]).mean()) if len(done) else float("nan")
            ran[(group, method)] = bool(len(runs))
    table = pd.Series(scores).unstack()
    table.attrs["ran"] = pd.Series(ran).unstack().reindex_like(table).astype(bool)
    return table, pd.Series(modes)


def performance_ratios(
    scores: pd.DataFrame, modes: Mapping[str, str] | pd.Series, on_nonpositive: str = "drop"
) -> pd.DataFrame:
    """Dolan-More performance ratios r_ps (>= 1, 1 = best; inf where a method ran but finished nothing).

    ``scores``: problems x methods. For "min" problems r = a / min(a); for "max" problems r = max(a) / a.
    A method that never ran a problem (``scores.attrs["ran"]`` false there) gets NaN: missing, not a failure.
    Ratios of non-positive scores are meaningless (a loss of 0, a negative cosine): such problems are left
    out (``on_nonpositive="drop"``, listed in ``ratios.attrs["dropped"]``) or raise ``ValueError``
    (``"raise"``).
    """
    if on_nonpositive not in ("drop", "raise"):
        raise ValueError(f"on_nonpositive must be 'drop' or 'raise', got {on_nonpositive!r}")
    ratios = pd.DataFrame(np.inf, index=scores.index, columns=scores.columns)
    ran = scores.attrs.get("ran")
    if isinstance(ran, pd.DataFrame):
        ratios = ratios.mask(~ran.reindex_like(ratios).fillna(False).astype(bool))
    dropped: list[str] = []
    for problem in scores.index:
        row = scores.loc[problem].astype(float)
        finite = row[np.isfinite(row)]
        if finite.empty:
            continue
        if (finite <= 0).any():
            if on_nonpositive == "raise":
                bad = finite[finite <= 0].to_dict()
                raise ValueError(f"performance profile needs positive scores; problem {problem!r} has {bad}")
            dropped.append(str(problem))
            continue
        mode = modes[problem]
        if mode == "min":
            r = finite / finite.min()
        elif mode == "max":
            r = finite.max() / finite
        else:
            raise ValueError(f"mode of problem {problem!r} must be 'max' or 'min', got {mode!r}")
        ratios.loc[problem, r.index] = r
    ratios = ratios.drop(index=dropped)
    ratios.attrs["dropped"] = dropped
    return ratios


def performance_profile(ratios: pd.DataFrame, taus: Sequence[float] | np.ndarray | None = None) -> pd.DataFrame:
    """rho_s(tau): fraction of the problems method s ran on which it is within a factor tau of the best.

    Returns a frame indexed by tau with one column per method. A problem a method never ran (NaN ratio) is
    not in its denominator; ``profile.attrs["problems"]`` maps each method to the number it ran and
    ``profile.attrs["total"]`` is the number of problems. Default taus: 200 points from 1 to 1.05 x the
    largest finite ratio (at least 1.01), plus every finite ratio so that the steps are exact.
    """
    if ratios.empty:
        return pd.DataFrame()
    values = ratios.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if taus is None:
        top = max(1.01, float(finite.max()) * 1.05) if finite.size else 1.01
        taus = np.unique(np.concatenate([np.linspace(1.0, top, 200), finite]))
    taus = np.asarray(taus, dtype=float)
    rho = {}
    counted = {}
    for m in ratios.columns:
        col = ratios[m].to_numpy(dtype=float)
        ran = col[~np.isnan(col)]
        counted[m] = int(ran.size)
        rho[m] = [(ran <= t).sum() / ran.size if ran.size else float("nan") for t in taus]
    profile = pd.DataFrame(rho, index=pd.Index(taus, name="tau"))
    profile.attrs["problems"] = counted
    profile.attrs["total"] = len(ratios.index)
    return profile


# --------------------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------------------
_GPU_PATTERN = re.compile(r"cuda|gpu|nvidia|tesla|\b[ahlv]\d{2,3}\b|rtx|rocm|mps", re.I)


def _is_gpu(device: Any) -> bool:
    return (
        device is not None
        and not (isinstance(device, float) and math.isnan(device))
        and bool(_GPU_PATTERN.search(str(device)))
    )


def _gpu_count(row: pd.Series) -> int:
    for key in ("env.num_gpus", "env.world_size", "env.gpus", "train.world_size"):
        if key in row.index:
            value = pd.to_numeric(pd.Series([row[key]]), errors="coerce").iloc[0]
            if np.isfinite(value) and value >= 1:
                return int(value)
    return 1


def run_costs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: ``run_id``, ``status``, ``device``, ``gpus``, ``wall_s``, ``step_time_s``, ``steps``,
    ``device_hours`` (wall time x devices) and ``gpu_hours`` (0 for CPU runs)."""
    rows = []
    for _, row in results.iterrows():
        device = row.get("env.device")
        wall = pd.to_numeric(pd.Series([row.get("timing.wall_s")]), errors="coerce").iloc[0]
        gpus = _gpu_count(row) if _is_gpu(device) else 0
        hours = wall / 3600.0 if np.isfinite(wall) else float("nan")
        rows.append(
            {
                "run_id": row.get("run_id"),
                "status": row.get("status"),
                "device": device,
                "gpus": gpus,
                "wall_s": float(wall) if np.isfinite(wall) else float("nan"),
                "step_time_s": float(
                    pd.to_numeric(pd.Series([row.get("timing.step_time_s")]), errors="coerce").iloc[0]
                ),
                "steps": pd.to_numeric(pd.Series([row.get("timing.steps")]), errors="coerce").iloc[0],
                "device_hours": hours * max(gpus, 1),
                "gpu_hours": hours * gpus,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["run_id", "status", "device", "gpus", "wall_s", "step_time_s", "steps", "device_hours", "gpu_hours"],
    )


def cost_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Cost per task group and method: runs, median step time, mean and total wall time, total GPU-hours."""
    cols = ["group", "method", "runs", "device", "median_step_time_s", "mean_wall_s", "total_wall_h", "gpu_hours"]
    if results.empty:
        return pd.DataFrame(columns=cols)
    costs = run_costs(results)
    costs.index = results.index
    costs["group"] = group_labels(results)
    costs["method"] = method_labels(results, costs["group"])
    rows = []
    for (group, method), sub in costs.groupby(["group", "method"], sort=True):
        devices = sorted({str(d) for d in sub["device"].dropna()})
        rows.append(
            {
                "group": group,
                "method": method,
                "runs": len(sub),
                "device": ",".join(devices) if devices else "n/a",
                "median_step_time_s": float(sub["step_time_s"].median()),
                "mean_wall_s": float(sub["wall_s"].mean()),
                "total_wall_h": float(sub["wall_s"].sum(min_count=1) / 3600.0),
                "gpu_hours": float(sub["gpu_hours"].sum(min_count=1)),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def estimate_cost(
    plan: pd.DataFrame, measured: pd.DataFrame, keys: Sequence[str] = ("task", "model.name", "optimizer.name")
) -> pd.DataFrame:
    """Estimate the cost of a grid before launching it, from step times measured in another results folder.

    ``plan`` has one row per planned run (or a ``runs`` column with a count) with the ``keys`` columns and
    either ``steps`` (optimizer steps per run), ``train.max_steps``, or ``train.epochs`` (then steps per
    epoch come from the measured runs with the same task and data: ``timing.steps / train.epochs``).
    ``measured`` is a ``load_results`` frame of finished runs with ``timing.step_time_s``.

    Step time: the median over measured runs with the same ``keys``; if none, the median over runs that
    match all keys but the last one (``source`` says which). Returns the plan with ``step_time_s``,
    ``steps``, ``est_hours`` (per run x ``runs``), ``source``, and a total row is left to the caller
    (``frame["est_hours"].sum()``). Rows without any matching measurement get NaN and ``source`` "none".
    """
    keys = list(keys)
    plan = plan.copy()
    if "runs" not in plan.columns:
        plan["runs"] = 1
    missing = [k for k in keys if k not in plan.columns]
    if missing:
        raise KeyError(f"the plan lacks the column(s) {missing}; it needs {keys} and steps or train.epochs")
    done = done_runs(measured)
    done = done[pd.to_numeric(done.get("timing.step_time_s"), errors="coerce").notna()] if len(done) else done
    out_rows = []
    for _, row in plan.iterrows():
        step_time, source = float("nan"), "none"
        for depth in range(len(keys), 0, -1):
            sub_keys = keys[:depth]
            if not all(k in done.columns for k in sub_keys):
                continue
            mask = np.ones(len(done), dtype=bool)
            for k in sub_keys:
                mask &= done[k].map(lambda v, want=row[k]: _same(v, want)).to_numpy()
            hit = done[mask]
            if len(hit):
                step_time = float(pd.to_numeric(hit["timing.step_time_s"]).median())
                source = "+".join(sub_keys) + f" (n={len(hit)})"
                break
        steps = _planned_steps(row, done)
        runs = float(row["runs"])
        est = step_time * steps * runs / 3600.0 if np.isfinite(step_time) and np.isfinite(steps) else float("nan")
        out_rows.append({**row.to_dict(), "step_time_s": step_time, "steps": steps, "est_hours": est, "source": source})
    return pd.DataFrame(out_rows)


def _same(a: Any, b: Any) -> bool:
    if hashable(a) is None and hashable(b) is None:
        return True
    if isinstance(a, str) and isinstance(b, str) and ("." in a or ":" in a or "." in b or ":" in b):
        return canonical_optimizer(a) == canonical_optimizer(b)
    return hashable(a) == hashable(b)


def _planned_steps(row: pd.Series, measured: pd.DataFrame) -> float:
    for key in ("steps", "train.max_steps"):
        if key in row.index and pd.notna(row[key]):
            return float(row[key])
    if "train.epochs" in row.index and pd.notna(row["train.epochs"]):
        need = {"timing.steps", "train.epochs"}
        if need <= set(measured.columns) and len(measured):
            same = measured
            for k in ("task", "data.name", "train.batch_size"):
                if k in row.index and k in measured.columns:
                    same = same[same[k].map(lambda v, want=row[k]: _same(v, want))]
            if "train.max_steps" in same.columns:  # runs cut short by max_steps do not show a full epoch
                same = same[same["train.max_steps"].isna()]
            per_epoch = pd.to_numeric(same["timing.steps"], errors="coerce") / pd.to_numeric(
                same["train.epochs"], errors="coerce"
            )
            per_epoch = per_epoch[np.isfinite(per_epoch)]
            if len(per_epoch):
                return float(per_epoch.median()) * float(row["train.epochs"])
    return float("nan")


__all__ = [
    "CompareSettings",
    "METRIC_MODES",
    "PRIMARY_METRICS",
    "canonical_optimizer",
    "declared_modes",
    "cost_summary",
    "display_optimizer",
    "done_runs",
    "estimate_cost",
    "filter_where",
    "group_labels",
    "method_labels",
    "optimizer_mask",
    "paired_comparison",
    "performance_profile",
    "performance_ratios",
    "primary_metric",
    "run_costs",
    "score_matrix",
    "win_tie_loss",
]
