"""Expected best validation value over k of N tuning trials (Dodge et al., EMNLP 2019, "Show Your Work").

For the N observed trial values v_(1) <= ... <= v_(N) (sorted so that v_(N) is the best: ascending for
"max" metrics, descending for "min"), the expected best of k trials is computed exactly from the order
statistics of the observed values, never by resampling:

* **without replacement** (the default here): the best of a random k-subset of the N trials is v_(i) with
  probability C(i-1, k-1) / C(N, k), so E_k = sum_i v_(i) C(i-1, k-1) / C(N, k). At k = N this is the
  observed best, the value the selection of ``tune`` actually got: the curve answers "had I run only k of
  these trials". This is the choice of this suite;
* **with replacement** (``replacement=True``, Dodge et al.'s formula): k independent draws from the empirical
  distribution, P(best = v_(i)) = (i/N)^k - ((i-1)/N)^k. It lies below the first at every k > 1 and stays
  below the observed best at k = N.

Both are checked against brute-force enumeration in ``tests/test_tune.py``. Ties need no care: the formulas
give the distribution of the best value, and equal values share their probability.

A trial without a finite value (diverged to NaN, a metric it never reported) ranks below every finite one;
while a k-subset can consist of such trials only, the expectation is undefined: ``expected`` is NaN there
and ``p_no_finite`` gives that probability (a curve never silently treats a diverged trial as a number).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd


def _sorted_worst_first(values: Sequence[float], mode: str) -> tuple[np.ndarray, int]:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    # worst first: the best is last, so rank i (1-based) has i-1 trials worse than it
    finite = np.sort(finite) if mode == "max" else np.sort(finite)[::-1]
    return finite, int(v.size - finite.size)


def expected_best(values: Sequence[float], mode: str, replacement: bool = False) -> pd.DataFrame:
    """E[best of k trials] for k = 1..N: columns ``k``, ``expected``, ``p_no_finite``.

    ``values``: one validation value per trial (NaN for a trial without one); ``mode``: "max" or "min".
    """
    finite, bad = _sorted_worst_first(values, mode)
    n = finite.size + bad
    if n == 0:
        return pd.DataFrame({"k": [], "expected": [], "p_no_finite": []})
    rows = []
    for k in range(1, n + 1):
        # ranks 1..bad are the non-finite trials (worst); finite value j (0-based) has rank bad + j + 1
        ranks = np.arange(bad + 1, n + 1)
        if replacement:
            weights = (ranks / n) ** k - ((ranks - 1) / n) ** k
            p_none = (bad / n) ** k
        else:
            total = math.comb(n, k)
            weights = np.array([math.comb(int(r) - 1, k - 1) for r in ranks], dtype=float) / total
            p_none = math.comb(bad, k) / total
        expected = float(np.dot(weights, finite)) if p_none == 0 else float("nan")
        rows.append({"k": k, "expected": expected, "p_no_finite": float(p_none)})
    return pd.DataFrame(rows)


def expected_best_curves(trials: pd.DataFrame, mode: str | dict[str, str], replacement: bool = False
                         ) -> pd.DataFrame:
    """Curves of every (task, method): ``trials`` has columns ``task``, ``method``, ``value`` (one row per
    trial); ``mode`` is one direction or a mapping task -> direction. Returns ``task, method, n_trials, k,
    expected, p_no_finite``."""
    parts = []
    for (task, method), sub in trials.groupby(["task", "method"], sort=True):
        m = mode[task] if isinstance(mode, dict) else mode
        curve = expected_best(sub["value"].astype(float).to_numpy(), m, replacement)
        curve.insert(0, "n_trials", len(sub))
        curve.insert(0, "method", method)
        curve.insert(0, "task", task)
        parts.append(curve)
    if not parts:
        return pd.DataFrame(columns=["task", "method", "n_trials", "k", "expected", "p_no_finite"])
    return pd.concat(parts, ignore_index=True)


def overtake_sentence(curves: pd.DataFrame, mine: str, baseline: str, mode: str, mine_label: str | None = None,
                      baseline_label: str | None = None) -> str:
    """One sentence comparing two expected-best curves of one task over the budgets both have.

    "AdamP is ahead at every budget up to 8 trials", "yours overtakes at k = 5", "level at every budget",
    or, for curves that cross more than once, the budgets at which each is ahead.
    """
    a = curves[curves["method"] == mine].set_index("k")["expected"]
    b = curves[curves["method"] == baseline].set_index("k")["expected"]
    ks = sorted(set(a.index) & set(b.index))
    name_a, name_b = mine_label or str(mine), baseline_label or str(baseline)
    if not ks:
        return f"no common budget to compare {name_a} and {name_b}"
    sign = 1.0 if mode == "max" else -1.0
    states = []  # +1: mine ahead, -1: baseline ahead, 0: level, None: undefined
    for k in ks:
        x, y = a[k], b[k]
        if not (math.isfinite(x) and math.isfinite(y)):
            states.append(None)
            continue
        d = sign * (x - y)
        scale = max(abs(x), abs(y), 1e-300)
        states.append(0 if abs(d) <= 1e-12 * scale else (1 if d > 0 else -1))
    top = ks[-1]
    if any(s is None for s in states):
        undefined = [k for k, s in zip(ks, states) if s is None]
        return (f"undecided at k = {_ranges(undefined)}: a curve is undefined there (trials without a "
                f"finite value could fill the whole budget)")
    ahead = {1: [k for k, s in zip(ks, states) if s == 1], -1: [k for k, s in zip(ks, states) if s == -1]}
    level = [k for k, s in zip(ks, states) if s == 0]
    names = {1: name_a, -1: name_b}
    if not ahead[1] and not ahead[-1]:
        return f"{name_a} and {name_b} are level at every budget up to {top} trials"
    for s in (1, -1):
        if not ahead[-s]:  # one curve is never behind
            if not level:
                return f"{names[s]} is ahead at every budget up to {top} trials"
            return f"{names[s]} is ahead at k = {_ranges(ahead[s])} and level at k = {_ranges(level)}"
    # both lead somewhere: one change of leader (level budgets aside) is an overtaking
    signs = [s for s in states if s != 0]
    if sum(1 for x, y in zip(signs, signs[1:]) if x != y) == 1:
        winner = signs[-1]
        first = min(k for k in ahead[winner] if k > max(ahead[-winner]))
        return f"{names[winner]} overtakes at k = {first} ({names[-winner]} is ahead below that)"
    return ("the curves cross more than once: " + "; ".join(
        f"{names[s]} is ahead at k = {_ranges(ahead[s])}" for s in (1, -1)))


def _ranges(ks: Iterable[int]) -> str:
    ks = sorted(ks)
    out, start, prev = [], None, None
    for k in ks:
        if start is None:
            start = prev = k
        elif k == prev + 1:
            prev = k
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = k
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def curve_figure(curves: pd.DataFrame, task: str, metric: str, mode: str, name: str | None = None):
    """A :class:`benchmarks.analysis.plots.FigureSpec` of one task's curves (one line per method)."""
    from .plots import FigureSpec, Panel, Series, optimizer_color

    sub = curves[curves["task"] == task]
    series = []
    for method, c in sub.groupby("method", sort=True):
        c = c.sort_values("k")
        series.append(Series(label=f"{method} ({int(c['n_trials'].iloc[0])} trials)",
                             x=c["k"].to_numpy(dtype=float), y=c["expected"].to_numpy(dtype=float),
                             color=optimizer_color(str(method))))
    better = "higher" if mode == "max" else "lower"
    panel = Panel(str(task), "trials k (budget)", f"expected best {metric} ({better} is better)", series)
    return FigureSpec(name=name or f"expected_best_{task}", title="", panels=[panel], ncols=1)


def save_curve_figures(curves: pd.DataFrame, metrics: dict[str, tuple[str, str]], out_dir,
                       formats: Sequence[str] = ("png",)) -> list:
    """One figure per task (``metrics``: task -> (metric, mode)), written atomically; returns the paths."""
    from .plots import save

    paths = []
    for task in sorted(set(curves["task"])):
        metric, mode = metrics[task]
        paths += save(curve_figure(curves, task, metric, mode), out_dir, formats=formats)
    return paths


__all__ = ["curve_figure", "expected_best", "expected_best_curves", "overtake_sentence", "save_curve_figures"]
