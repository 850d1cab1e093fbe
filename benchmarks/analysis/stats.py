"""The statistics behind a verdict of ``compare``: paired t-tests, equivalence margins, Holm's correction.

Why not the bootstrap used before: with 3 seeds a percentile bootstrap interval of a mean is about
[min, max] of the differences, so on data with no true difference it declared a win or loss 23.5% of the
time at n = 3 (17% at n = 5, 10.5% at n = 10) instead of 5%. The paired Student t interval has its nominal
error rate at any n >= 2 when the per-seed differences are roughly normal, and it stays at or below it for
symmetric heavier tails; ``tests/test_analysis_stats.py`` checks the rate by simulation.

Rules (one comparison = one method against the baseline on one task group, over the seeds both finished):

* ``d_i = method_i - baseline_i`` for the matched seeds; ``better`` is the sign that means improvement
  (+1 for "max" metrics, -1 for "min").
* Fewer than :data:`MIN_PAIRS` pairs, or differences with no variance (deterministic tasks: every seed
  gives the same run), give no verdict: a t statistic needs a spread to compare the mean with.
* **Difference test**: two-sided one-sample t-test of mean(d) = 0, p-value ``p``.
* **Equivalence test** (only with a margin m > 0): two one-sided t-tests (TOST) of |mean(d)| >= m,
  p-value ``p_equiv`` = the larger of the two one-sided p-values.
* **Multiple comparisons**: when several comparisons are judged together, both families of p-values are
  adjusted with Holm's step-down method (family-wise error rate <= alpha over all cells judged at once).
* Verdict: **tie** when the adjusted ``p_equiv`` < alpha (the whole difference is inside +-m: equivalent
  in practice, even if a tiny difference is significant); else **win** / **loss** when the adjusted ``p`` <
  alpha and mean(d) is on the better / worse side; else **inconclusive** (the seeds cannot tell; ``reason``
  says why and what the interval is).
* The reported interval is the (unadjusted) ``confidence`` t interval of mean(d); the verdict uses the
  adjusted p-values, so with many cells an interval can exclude 0 while the verdict stays inconclusive
  (``reason`` says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _st

#: fewest matched seeds for a verdict (a t interval exists from 2, but at 2 it is 12.7 sd wide: useless,
#: and one aberrant seed decides it)
MIN_PAIRS = 3

#: relative spread below which differences count as constant (floating-point noise of identical runs)
_ZERO_SPREAD = 1e-12

OUTCOMES = ("win", "tie", "loss", "inconclusive")


@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`paired_t` for one comparison (before the multiple-comparison correction)."""

    n: int
    mean: float
    sd: float
    ci_lo: float
    ci_hi: float
    p: float  # two-sided p of mean(d) = 0 (nan when no test is possible)
    p_equiv: float  # TOST p of |mean(d)| >= margin (nan without a margin or a test)
    reason: str | None  # why no test is possible (too few pairs, no variance), else None


def paired_t(diffs: Sequence[float] | np.ndarray, margin: float = 0.0, confidence: float = 0.95,
             min_pairs: int = MIN_PAIRS) -> PairedTest:
    """Paired t interval and tests for the differences ``diffs`` (method - baseline, one per seed)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"the equivalence margin must be a finite number >= 0, got {margin}")
    d = np.asarray(diffs, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"paired_t expects one difference per seed (1-D), got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("paired_t got NaN or inf differences; drop unfinished runs first")
    n = int(d.size)
    nan = float("nan")
    mean = float(d.mean()) if n else nan
    if n < max(2, min_pairs):
        return PairedTest(n, mean, nan, nan, nan, nan, nan, f"not enough seeds: n = {n}, need >= {min_pairs} "
                          "matched seeds for a verdict")
    sd = float(d.std(ddof=1))
    scale = max(float(np.abs(d).max()), 1e-300)
    if sd <= _ZERO_SPREAD * scale or sd == 0.0:
        if float(np.abs(d).max()) == 0.0:
            # the same numbers seed for seed: the method reproduced the baseline's runs (e.g. a subclass)
            why = (f"identical to the baseline's runs: all n = {n} paired differences are exactly 0, so there is no "
                   "variance to test (no variance across seeds)")
        else:
            why = (f"no variance across seeds: every one of the n = {n} paired differences is {mean:.6g}; a verdict "
                   "needs results that vary with the seed")
        return PairedTest(n, mean, 0.0, mean, mean, nan, nan, why)
    se = sd / math.sqrt(n)
    df = n - 1
    half = float(_st.t.ppf(0.5 + confidence / 2.0, df)) * se
    t = mean / se
    p = float(2.0 * _st.t.sf(abs(t), df))
    p_equiv = nan
    if margin > 0:
        p_lower = float(_st.t.sf((mean + margin) / se, df))  # H0: mean <= -margin
        p_upper = float(_st.t.cdf((mean - margin) / se, df))  # H0: mean >= +margin
        p_equiv = max(p_lower, p_upper)
    return PairedTest(n, mean, sd, mean - half, mean + half, p, p_equiv, None)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(test: PairedTest, mode: str, p_adj: float, p_equiv_adj: float, alpha: float,
            margin: float = 0.0) -> tuple[str, str]:
    """``(outcome, reason)`` of one comparison from its test and its Holm-adjusted p-values."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if test.reason is not None:
        return "inconclusive", test.reason
    interval = f"{100 * (1 - alpha):g}% CI [{test.ci_lo:.4g}, {test.ci_hi:.4g}]"
    if margin > 0 and math.isfinite(p_equiv_adj) and p_equiv_adj < alpha:
        return "tie", f"equivalent within the margin +-{margin:g} (TOST p = {p_equiv_adj:.3g}, adjusted)"
    if math.isfinite(p_adj) and p_adj < alpha:
        better = test.mean > 0 if mode == "max" else test.mean < 0
        side = "better" if better else "worse"
        return ("win" if better else "loss"), f"{side} (p = {p_adj:.3g}, adjusted; n = {test.n})"
    why = f"the seeds cannot tell (p = {p_adj:.3g}, adjusted; n = {test.n})"
    if test.p < alpha <= p_adj:
        why = f"not significant after Holm's correction (p = {test.p:.3g} alone, {p_adj:.3g} adjusted)"
    if margin > 0:
        why += f"; not shown equivalent within +-{margin:g}"
    return "inconclusive", why


def judge(tests: Sequence[PairedTest], modes: Sequence[str], margins: Sequence[float],
          alpha: float = 0.05) -> list[tuple[str, str, float, float]]:
    """Verdicts for a family of comparisons judged at once: ``(outcome, reason, p_adj, p_equiv_adj)`` each.

    Holm's correction runs over the comparisons that have a test (those refused for too few seeds or no
    variance are not in the family).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p_adj = holm([t.p for t in tests])
    pe_adj = holm([t.p_equiv for t in tests])
    return [(*verdict(t, mo, pa, pe, alpha, mg), float(pa), float(pe))
            for t, mo, mg, pa, pe in zip(tests, modes, margins, p_adj, pe_adj, strict=True)]


def false_verdict_rate(n: int, trials: int, sampler: str = "normal", seed: int = 0, margin: float = 0.0,
                       alpha: float = 0.05) -> float:
    """Share of ``trials`` simulated null comparisons (no true difference) that get a win or loss verdict.

    ``sampler``: the distribution of the per-seed differences, all with mean 0: ``normal``, ``t3`` (heavy
    tails), ``laplace``, ``triangular`` (the difference of two uniform metrics) and ``uniform`` (lighter
    tails than any realistic difference: the t-test's worst case, documented in ``docs/statistics.md``).
    """
    rng = np.random.default_rng(seed)
    draw = {
        "normal": lambda size: rng.standard_normal(size),
        "t3": lambda size: rng.standard_t(3, size),
        "uniform": lambda size: rng.uniform(-1.0, 1.0, size),
        "triangular": lambda size: rng.uniform(-1.0, 1.0, size) - rng.uniform(-1.0, 1.0, size),
        "laplace": lambda size: rng.laplace(0.0, 1.0, size),
    }[sampler]
    wrong = 0
    for _ in range(trials):
        test = paired_t(draw(n), margin=margin)
        outcome, *_ = verdict(test, "max", test.p, test.p_equiv, alpha, margin)
        wrong += outcome in ("win", "loss")
    return wrong / trials


__all__ = ["MIN_PAIRS", "OUTCOMES", "PairedTest", "false_verdict_rate", "holm", "judge", "paired_t", "verdict"]
