"""Time to a target validation value (AlgoPerf's score), with runs that never reach it kept as censored.

Rules (docs/tuning.md):

* **Target** (:func:`target_value`): per task, from the tuned baseline's runs: in each run the best value
  of the validation metric seen at or before ``fraction`` (default 0.9) of its step budget (the running best,
  so a noisy late evaluation does not lower it); the target is the median of these over the baseline's
  runs. The baseline reaches it, in a typical run, with a tenth of its budget to spare; a method that is
  "as fast" reaches it at about the same time.
* **Time to target** (:func:`time_to_target`): the first evaluation whose value reaches the target (>= for
  "max" metrics, <= for "min"), as optimizer steps and as training seconds = steps x the run's mean step
  time (``timing.step_time_s``: evaluation time excluded; the history holds no clock). A run that never
  reaches it is **censored** at its last evaluated step: its time is only known to be larger (``reached``
  False). Censored runs are never dropped and never given the budget as if they had reached the target.
* **Paired comparison** (:func:`compare_times`): per seed, the sign of log(t_method) - log(t_baseline).
  A pair in which both reached has a known sign; one censored at c while the other reached at t has a known
  sign when t <= c (the one that reached is faster), else an unknown sign; both censored: unknown. A
  two-sided exact sign test (binomial, p = 1/2) is run with every unknown pair counted AGAINST the direction
  being claimed: "faster" (or "slower") only when even that worst case gives p < alpha. Any complete data
  consistent with the censored data would then give the same verdict, so the false-verdict rate is at most
  the sign test's (<= alpha; checked by simulation in ``tests/test_tune.py``). The price: the sign test needs
  at least 6 pairs for p < 0.05 (n = 5 gives 0.0625 at best), and censoring costs power.
* **Performance profile** over tasks: each method's time on a task is the median over its runs with
  censored runs as +inf (exact when runs are censored at their full, equal budget or at divergence: they
  are then slower than every run that reached the target); infinite medians are "did not reach", the
  Dolan-More ratios and profile come from :mod:`benchmarks.analysis.compare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .profiles import performance_profile, performance_ratios


def _val_curve(history: pd.DataFrame, run_id: str, metric: str) -> pd.DataFrame:
    sub = history[(history["run_id"] == run_id) & (history["metric"] == metric)]
    if "split" in sub.columns:
        sub = sub[sub["split"] == "val"]
    return sub.sort_values("step")[["step", "value"]].dropna(subset=["step"])


def _running_best(values: np.ndarray, mode: str) -> np.ndarray:
    v = np.where(np.isfinite(values), values, -np.inf if mode == "max" else np.inf)
    return np.maximum.accumulate(v) if mode == "max" else np.minimum.accumulate(v)


def target_value(history: pd.DataFrame, run_ids: Sequence[str], metric: str, mode: str,
                 fraction: float = 0.9, budgets: Mapping[str, float] | None = None) -> float:
    """The target of a task: median over the baseline's runs of the best value by ``fraction`` of the budget.

    ``budgets`` maps run ids to their step budget (default: each run's last evaluated step).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    reached = []
    for rid in run_ids:
        curve = _val_curve(history, rid, metric)
        if curve.empty:
            continue
        budget = float((budgets or {}).get(rid, curve["step"].max()))
        best = _running_best(curve["value"].to_numpy(dtype=float), mode)
        upto = best[curve["step"].to_numpy(dtype=float) <= fraction * budget]
        if upto.size and np.isfinite(upto[-1]):
            reached.append(float(upto[-1]))
    if not reached:
        raise ValueError(f"no baseline run has a finite {metric} by {fraction:.0%} of its budget: no target")
    return float(np.median(reached))


def time_to_target(history: pd.DataFrame, results: pd.DataFrame, metric: str, mode: str, target: float
                   ) -> pd.DataFrame:
    """Per run of ``results`` (columns ``run_id`` and ``timing.step_time_s``): ``run_id, reached, steps,
    seconds``; ``steps``/``seconds`` are the time to target, or the censoring time when not reached."""
    rows = []
    for _, r in results.iterrows():
        rid = r["run_id"]
        curve = _val_curve(history, rid, metric)
        step_time = float(r.get("timing.step_time_s", float("nan")))
        if curve.empty:
            rows.append({"run_id": rid, "reached": False, "steps": float("nan"), "seconds": float("nan")})
            continue
        values = curve["value"].to_numpy(dtype=float)
        steps = curve["step"].to_numpy(dtype=float)
        ok = np.isfinite(values) & ((values >= target) if mode == "max" else (values <= target))
        hit = bool(ok.any())
        at = float(steps[np.argmax(ok)]) if hit else float(steps.max())
        rows.append({"run_id": rid, "reached": hit, "steps": at, "seconds": at * step_time})
    return pd.DataFrame(rows, columns=["run_id", "reached", "steps", "seconds"])


@dataclass(frozen=True)
class TimeComparison:
    """Verdict of :func:`compare_times` for one task."""

    n_pairs: int
    faster: int  # pairs in which the method is known to be faster
    slower: int  # pairs in which it is known to be slower
    unknown: int  # pairs whose order censoring hides
    median_log_ratio: float  # median of log(t_method / t_baseline) over pairs where both reached (nan if none)
    p_faster: float  # worst-case two-sided sign-test p for "faster" (unknown pairs counted as slower)
    p_slower: float  # the same for "slower"
    verdict: str  # "faster" | "slower" | "inconclusive"
    reason: str


def _sign_test_p(successes: int, n: int) -> float:
    from scipy.stats import binomtest

    return float(binomtest(successes, n, 0.5).pvalue) if n else 1.0


def compare_times(method: pd.DataFrame, baseline: pd.DataFrame, alpha: float = 0.05) -> TimeComparison:
    """Paired (by ``seed``) comparison of time to target with censoring; frames have columns ``seed``,
    ``reached`` and ``steps`` (or any time column named ``time``, preferred when present)."""
    col = "time" if "time" in method.columns and "time" in baseline.columns else "steps"
    a = method.set_index("seed")
    b = baseline.set_index("seed")
    seeds = sorted(set(a.index) & set(b.index))
    faster = slower = unknown = 0
    logs = []
    for s in seeds:
        ta, ra = float(a.loc[s, col]), bool(a.loc[s, "reached"])
        tb, rb = float(b.loc[s, col]), bool(b.loc[s, "reached"])
        if ra and rb:
            if ta > 0 and tb > 0:
                logs.append(math.log(ta / tb))
            if ta < tb:
                faster += 1
            elif ta > tb:
                slower += 1
            # equal times: a tie, no sign (dropped, as the sign test drops zero differences)
        elif ra and not rb and ta <= tb:
            faster += 1
        elif rb and not ra and tb <= ta:
            slower += 1
        else:
            unknown += 1
    n = faster + slower + unknown
    p_faster = _sign_test_p(faster, n) if faster > (slower + unknown) else 1.0
    p_slower = _sign_test_p(slower, n) if slower > (faster + unknown) else 1.0
    median = float(np.median(logs)) if logs else float("nan")
    if n == 0:
        verdict, reason = "inconclusive", "no pair of runs with a common seed"
    elif p_faster < alpha:
        verdict, reason = "faster", f"faster in {faster} of {n} pairs ({unknown} censored both ways counted against)"
    elif p_slower < alpha:
        verdict, reason = "slower", f"slower in {slower} of {n} pairs ({unknown} censored both ways counted against)"
    else:
        reason = (f"{faster} faster, {slower} slower, {unknown} hidden by censoring of {n} pairs; worst-case sign "
                  f"test p = {min(p_faster, p_slower):.3g}")
        if n < 6:
            reason += f" (a sign test needs >= 6 pairs for p < 0.05; n = {n})"
        verdict = "inconclusive"
    return TimeComparison(len(seeds), faster, slower, unknown, median, p_faster, p_slower, verdict, reason)


def median_times(times: pd.DataFrame) -> pd.DataFrame:
    """Scores for a performance profile: ``times`` has ``task, method, reached`` and a time column
    (``time``); censored runs count as +inf. Returns tasks x methods with NaN where the median is infinite
    and ``attrs["ran"]`` True wherever the method has runs (so the ratio there is inf: did not reach)."""
    table: dict[tuple[str, str], float] = {}
    for (task, method), sub in times.groupby(["task", "method"], sort=True):
        t = np.where(sub["reached"].astype(bool), sub["time"].astype(float), np.inf)
        m = float(np.median(t)) if len(t) else float("inf")
        table[(task, method)] = m if math.isfinite(m) else float("nan")
    scores = pd.Series(table).unstack()
    scores.attrs["ran"] = scores.notna() | True
    return scores


def time_profile(times: pd.DataFrame, taus: Sequence[float] | None = None) -> pd.DataFrame:
    """AlgoPerf-style performance profile of median time to target over tasks (lower time is better)."""
    scores = median_times(times)
    ran = scores.attrs["ran"]
    ratios = performance_ratios(scores, {task: "min" for task in scores.index})
    ratios.attrs.setdefault("ran", ran)
    return performance_profile(ratios, taus)


__all__ = ["TimeComparison", "compare_times", "median_times", "target_value", "time_profile", "time_to_target"]
