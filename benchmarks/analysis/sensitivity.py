"""What one task of the battery can detect: its sensitivity card, measured with probe optimizers.

A card is computed from calibration runs whose ``tags.probe`` says what they are (``baseline``, ``broken``,
``moderate``, ``aa``, ``untrained``; see ``benchmarks.workflows.battery``). For each probe the paired
differences probe − baseline by seed (the A/A probe's seed s + offset is paired with the baseline's s) are
tested exactly as ``compare`` tests a user's optimizer (paired t, the same alpha), so a card says what a
verdict on that task can and cannot see:

* ``sees``: the broken probe (an optimizer that barely trains) is a loss at the first 3 seeds. A task that
  does not see it gives no verdict at all.
* ``moderate``: whether the moderate probe (the baseline at a third of its lr) is a loss at the first 5 seeds.
* ``aa``: the baseline against itself; a win or loss there would be a false verdict.
* ``mde``: the minimum detectable effect at n seeds, the smallest true mean difference that the paired
  t-test at the card's alpha finds with 80% probability (exact, from the noncentral t distribution), from the
  A/A probe's sd of paired differences (two independent runs of the same optimizer).
* ``headroom``: the baseline's distance to the metric's best possible value and to the untrained model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats as _st

from . import stats
from .metric_choice import done_runs, primary_metric

POWER = 0.8
#: seeds at which the broken probe must be a loss for a task to give verdicts, and the moderate probe's n
N_SEE = 3
N_MODERATE = 5
MDE_NS = (3, 5, 10)


def direction_words(mode: str) -> str:
    return "higher is better" if mode == "max" else "lower is better"


def power_of(effect: float, sd: float, n: int, alpha: float) -> float:
    """Probability that the two-sided paired t-test at ``alpha`` rejects for a true mean ``effect`` (exact:
    the t statistic then follows a noncentral t with n - 1 degrees of freedom)."""
    df = n - 1
    crit = _st.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n) / sd
    value = float(_st.nct.sf(crit, df, nc) + _st.nct.cdf(-crit, df, nc))
    if not math.isfinite(value):  # scipy's nct gives NaN far in the tail, where the power is 0 or 1
        return 1.0 if abs(nc) > crit else 0.0
    return value


def mde(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """Smallest true mean difference a two-sided paired t-test at ``alpha`` detects with prob. ``power``."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return float("nan")
    from scipy.optimize import brentq

    hi = 2.0 * (_st.t.ppf(1 - alpha / 2, n - 1) + 2.0) * sd / math.sqrt(n)
    return float(brentq(lambda e: power_of(e, sd, n, alpha) - power, 0.0, hi, xtol=1e-9 * sd))


def probe_values(results: pd.DataFrame, task: str, offset: int, metric: str | None = None
                 ) -> tuple[str, str, dict[str, pd.Series]]:
    """``(metric, mode, {probe: values by paired seed})`` from one task's calibration runs."""
    if "tags.probe" not in results.columns:
        raise KeyError("these runs carry no `tags.probe`: they are not calibration runs")
    rows = results[results["task"].astype(str) == task] if "task" in results.columns else results
    metric, mode = primary_metric(rows, task, metric)
    col = f"metrics.{metric}"
    done = done_runs(rows, col)
    out: dict[str, pd.Series] = {}
    for probe, sub in done.groupby(done["tags.probe"].astype(str)):
        seeds = sub["train.seed"].astype(int)
        if probe == "aa":
            seeds = seeds - offset
        values = pd.Series(pd.to_numeric(sub[col]).to_numpy(dtype=float), index=seeds.to_numpy())
        out[probe] = values[~values.index.duplicated()].sort_index()
    return metric, mode, out


def _test(base: pd.Series, probe: pd.Series, mode: str, alpha: float, first: int | None = None) -> dict[str, Any]:
    seeds = sorted(set(base.index) & set(probe.index))
    if first is not None:
        seeds = seeds[:first]
    diffs = np.array([probe[s] - base[s] for s in seeds], dtype=float)
    test = stats.paired_t(diffs, confidence=1 - alpha)
    outcome, reason = stats.verdict(test, mode, test.p, test.p_equiv, alpha)
    return {"n": test.n, "seeds": [int(s) for s in seeds], "mean": test.mean, "sd": test.sd, "p": test.p,
            "ci": [test.ci_lo, test.ci_hi], "verdict": outcome, "reason": reason,
            "values": [float(probe[s]) for s in seeds]}


def build_card(values: Mapping[str, pd.Series], mode: str, alpha: float, ceiling: float | None = None
               ) -> dict[str, Any]:
    """The card of one task from its probes' values by seed (``baseline`` must be present)."""
    if "baseline" not in values or values["baseline"].empty:
        raise KeyError("no finished baseline run: a card needs the baseline's values")
    base = values["baseline"]
    card: dict[str, Any] = {
        "mode": mode, "alpha": alpha,
        "baseline": {"n": int(base.size), "mean": float(base.mean()),
                     "sd": float(base.std(ddof=1)) if base.size > 1 else float("nan"),
                     "values": {int(s): float(v) for s, v in base.items()}},
        "probes": {},
    }
    for probe, first in (("broken", N_SEE), ("moderate", N_MODERATE), ("aa", None)):
        if probe in values and not values[probe].empty:
            card["probes"][probe] = _test(base, values[probe], mode, alpha)
            if first is not None:
                card["probes"][probe][f"at_n{first}"] = _test(base, values[probe], mode, alpha, first)
    broken = card["probes"].get("broken", {}).get(f"at_n{N_SEE}")
    card["sees"] = bool(broken and broken["verdict"] == "loss" and broken["n"] >= N_SEE)
    moderate = card["probes"].get("moderate", {}).get(f"at_n{N_MODERATE}")
    card["moderate_detected"] = bool(moderate and moderate["verdict"] == "loss" and moderate["n"] >= N_MODERATE)
    aa = card["probes"].get("aa")
    card["aa_false_verdict"] = bool(aa and aa["verdict"] in ("win", "loss"))
    noise_sd = aa["sd"] if aa and math.isfinite(aa["sd"]) else float("nan")
    card["noise_sd"] = noise_sd
    card["mde"] = {str(n): mde(noise_sd, n, alpha) for n in MDE_NS}
    better = 1.0 if mode == "max" else -1.0
    headroom: dict[str, float | None] = {"to_ceiling": None, "to_untrained": None}
    if ceiling is not None:
        headroom["to_ceiling"] = float(better * (ceiling - base.mean()))
    if "untrained" in values and not values["untrained"].empty:
        card["untrained"] = float(values["untrained"].mean())
        headroom["to_untrained"] = float(better * (base.mean() - values["untrained"].mean()))
    card["ceiling"] = ceiling
    card["headroom"] = headroom
    return card


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def card_line(card: Mapping[str, Any] | None, n: int | None = None, alpha: float | None = None) -> str:
    """One sentence for the verdict table: what this task detects at ``n`` seeds and ``alpha``."""
    if not card:
        return "sensitivity not measured for this config (run `make calibrate`)"
    if not card.get("sees"):
        return "cannot see: the broken probe was not a loss at 3 seeds in calibration"
    alpha = card["alpha"] if alpha is None else alpha
    n = n or N_SEE
    size = mde(card.get("noise_sd", float("nan")), n, alpha)
    moderate = card["probes"].get("moderate", {})
    mod = (f"; AdamP at lr/3 ({_fmt(moderate.get('mean'))}) "
           + ("detected at 5 seeds" if card.get("moderate_detected") else "not detected at 5 seeds")
           if moderate else "")
    return f"detects ≥ {_fmt(size, 2)} at n = {n}; a non-training optimizer is a loss here{mod}"


def cards_markdown(cards: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """The committed table of cards (one row per task)."""
    lines = [header.rstrip(), ""] if header else []
    lines += ["| task | metric | baseline (mean ± sd, n) | untrained | to ceiling | broken Δ (n=3) | moderate Δ "
              "(n=5) | A/A Δ (n) | sd of paired diffs: broken / moderate / A/A | MDE n=3 / 5 / 10 | sees | "
              "moderate detected | A/A verdict | s/run (wall, as launched) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, c in cards.items():
        p = c["probes"]
        b = c["baseline"]

        def delta(probe: str, key: str | None) -> str:
            t = p.get(probe)
            if not t:
                return "–"
            t = t.get(key, t) if key else t
            return f"{_fmt(t['mean'])} ({t['verdict']}, p {_fmt(t['p'], 2)}, n {t['n']})"

        sds = " / ".join(_fmt(p.get(k, {}).get("sd"), 2) for k in ("broken", "moderate", "aa"))
        mdes = " / ".join(_fmt(c["mde"].get(str(n)), 2) for n in MDE_NS)
        aa = p.get("aa", {})
        lines.append(
            f"| {name} | {c.get('metric', '?')} ({direction_words(c['mode'])}) | {_fmt(b['mean'], 4)} ± "
            f"{_fmt(b['sd'], 2)} ({b['n']}) | {_fmt(c.get('untrained'), 4)} | "
            f"{_fmt(c['headroom'].get('to_ceiling'), 3)} | {delta('broken', 'at_n3')} | "
            f"{delta('moderate', 'at_n5')} | {delta('aa', None)} | {sds} | {mdes} | "
            f"{'yes' if c['sees'] else 'NO'} | {'yes' if c['moderate_detected'] else 'no'} | "
            f"{aa.get('verdict', '–')} | {_fmt(c.get('seconds_per_run'), 3)} |")
    return "\n".join(lines) + "\n"


__all__ = ["N_MODERATE", "N_SEE", "build_card", "card_line", "cards_markdown", "direction_words", "mde",
           "probe_values"]
