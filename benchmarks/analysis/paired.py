"""The paired comparison of every method with a baseline: per task group and seed, differences and verdicts
(rules in :mod:`benchmarks.analysis.stats`, definitions in :mod:`benchmarks.analysis.compare`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import stats
from .labels import group_labels, method_labels, optimizer_mask
from .metric_choice import FAILED_STATUSES, done_runs, metric_left_out, numbers, primary_metric


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
    ``failed_baseline`` (diverged or failed runs in the group), ``left_out_method`` / ``left_out_baseline``
    (done runs whose metric is missing, not a number or not finite; named with the reason in
    ``comparison.attrs["left_out"]`` as ``(run id, reason)``), ``unmatched`` (finished runs without a
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
    left_out: list[tuple[str, str]] = []
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
        base_left = metric_left_out(base, col)
        left_out += base_left
        failed_base = int(base["status"].isin(FAILED_STATUSES).sum()) if "status" in base.columns else 0
        for method, msub in sub[~sub["_is_base"]].groupby("_method", sort=True):
            m_done = done_runs(msub, col)
            m_by_seed = _per_seed(m_done, col)
            m_left = metric_left_out(msub, col)
            left_out += m_left
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
                    "left_out_method": len(m_left),
                    "left_out_baseline": len(base_left),
                    "unmatched": int(len(set(m_by_seed.index) ^ set(base_by_seed.index))),
                }
            )
    judged = stats.judge(tests, [r["mode"] for r in rows], [r["margin"] for r in rows], settings.alpha)
    for row, (verdict, reason, p_adj, pe_adj) in zip(rows, judged, strict=True):
        row.update(outcome=verdict, reason=reason, p_adj=p_adj, p_equiv_adj=pe_adj)
    out = pd.DataFrame(rows, columns=_COMPARE_COLUMNS)
    out.attrs["left_out"] = sorted(set(left_out))
    return out


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
    "left_out_method",
    "left_out_baseline",
    "unmatched",
]


def _seed_text(seed: Any) -> Any:
    return int(seed) if isinstance(seed, (float, np.floating)) and float(seed).is_integer() else seed


def _per_seed(runs: pd.DataFrame, col: str) -> pd.Series:
    """Metric per seed; duplicate runs of one seed (re-runs) are averaged so that each seed counts once."""
    if runs.empty:
        return pd.Series(dtype=float)
    values = numbers(runs[col])
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
