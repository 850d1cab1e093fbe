"""Simulated error rates of compare's verdicts (docs/statistics.md): false wins/losses on data with no true
difference, per distribution of the per-seed differences and number of seeds, and the share of real
differences found (power). Deterministic (seeded); about a minute on one core.

    python scripts/stats_error_rates.py [--trials 4000]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.analysis import stats


def _bootstrap_rate(n: int, trials: int, seed: int) -> float:
    """The percentile-bootstrap rule compare used before (95% CI of the mean excludes 0), for reference."""
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(trials):
        d = rng.standard_normal(n)
        means = d[rng.integers(0, n, size=(2000, n))].mean(axis=1)
        lo, hi = np.quantile(means, [0.025, 0.975])
        wrong += lo > 0 or hi < 0
    return wrong / trials


def _power(n: int, shift: float, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    found = 0
    for _ in range(trials):
        t = stats.paired_t(rng.standard_normal(n) + shift)
        found += stats.verdict(t, "max", t.p, t.p_equiv, 0.05)[0] == "win"
    return found / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4000)
    args = parser.parse_args()
    ns = (3, 5, 10)
    print(f"False win/loss verdicts on null data ({args.trials} trials each, alpha 0.05):\n")
    print("| differences | " + " | ".join(f"n = {n}" for n in ns) + " |")
    print("| --- |" + " --- |" * len(ns))
    for sampler in ("normal", "t3", "laplace", "triangular", "uniform"):
        rates = [stats.false_verdict_rate(n, args.trials, sampler, seed=1000 + n) for n in ns]
        print(f"| {sampler} | " + " | ".join(f"{r:.1%}" for r in rates) + " |")
    rates = [_bootstrap_rate(n, args.trials // 2, seed=n) for n in ns]
    print("| normal, old percentile bootstrap | " + " | ".join(f"{r:.1%}" for r in rates) + " |")
    print(f"\nWins found for a true improvement of 1 or 2 standard deviations of the differences (normal):\n")
    print("| shift | " + " | ".join(f"n = {n}" for n in ns) + " |")
    print("| --- |" + " --- |" * len(ns))
    for shift in (1.0, 2.0):
        print(f"| {shift:g} sd | " + " | ".join(f"{_power(n, shift, args.trials // 4, 7):.0%}" for n in ns) + " |")


if __name__ == "__main__":
    main()
