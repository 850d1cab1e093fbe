"""Measure whether a battery config (configs/battery/*.yaml) can see a worse optimizer.

Runs the config's baseline optimizer and probe optimizers at a few seeds, each probe into its own folder
OUT/<probe>, then prints per probe: the primary metric's mean and sd across seeds, the paired differences
against the baseline (same seed), their sd, a paired t-test p-value, and the median seconds per run.

Probes (names for --probes):
  base      the config's optimizer (optionally at --lr)
  third     the baseline at 1/3 of its lr (the issue's moderate probe)
  x3        the baseline at 3x its lr (to check that the recipe lr is the best of 1/3x, 1x, 3x)
  broken    torch SGD, lr 1e-4, no momentum (an optimizer that barely trains)
  untrained SGD at lr 0: the untrained network's metric (BatchNorm statistics still follow the data)

Example (2 runs at once, one thread each):
  .venv/bin/python scripts/battery_probe.py configs/battery/digits.yaml --out /tmp/bat_digits --seeds 0,1,2
Finished runs are skipped on a rerun (the run store resumes), so adding probes later is cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

PROBES = ("base", "third", "x3", "broken", "untrained")


def probe_overrides(name: str, base_opt: dict) -> list[str]:
    lr = float(base_opt["lr"])
    if name == "base":
        return [f"optimizer.lr={lr!r}"]
    if name == "third":
        return [f"optimizer.lr={lr / 3!r}"]
    if name == "x3":
        return [f"optimizer.lr={lr * 3!r}"]
    if name == "broken":
        return ["optimizer={name: sgd, lr: 1.0e-4, momentum: 0.0}"]
    if name == "untrained":
        return ["optimizer={name: sgd, lr: 0.0, momentum: 0.0}"]
    raise SystemExit(f"error: --probes: unknown probe {name!r}; valid: {', '.join(PROBES)}")


def run_probe(config: str, out: Path, name: str, base_opt: dict, seeds: list[int], extra: list[str],
              parallel: int) -> None:
    cmd = [sys.executable, "-m", "benchmarks", "run", config, "--out", str(out / name), "--no-progress",
           "--max-parallel", str(parallel), "--set", f"grid.train.seed={seeds}"]
    for item in [*extra, *probe_overrides(name, base_opt)]:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = _done(out / name)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ran = len(_done(out / name) - before)
    if ran:
        # CPU seconds (user + system) of the whole `benchmarks run`, start-up included, per run it finished:
        # on a shared machine wall time says more about the neighbours than about the run
        cpu = (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime) / ran
        log = out / name / "cpu_seconds.jsonl"
        with open(log, "a") as handle:
            handle.write(json.dumps({"runs": ran, "cpu_s_per_run": round(cpu, 1)}) + "\n")


def _done(folder: Path) -> set[str]:
    return {p.parent.name for p in folder.glob("runs/*/record.json")
            if json.loads(p.read_text()).get("status") == "done"}


def summarise(out: Path, probes: list[str], seeds: list[int]) -> None:
    from scipy import stats

    from benchmarks.store import load_results

    table = {}
    for name in probes:
        frame = load_results(out / name)
        if "train.seed" not in frame.columns:
            continue
        frame = frame[(frame["status"] == "done") & frame["train.seed"].isin(seeds)]
        if frame.empty:
            continue
        metric = frame["primary_metric"].iloc[0]
        cpu_log = out / name / "cpu_seconds.jsonl"
        cpu = [json.loads(line)["cpu_s_per_run"] for line in cpu_log.read_text().splitlines()] if cpu_log.exists() else []
        table[name] = (metric, frame.set_index("train.seed")[f"metrics.{metric}"].sort_index(),
                       float(frame["timing.wall_s"].median()), float(frame["optimizer.lr"].iloc[0]), cpu)
    if "base" not in table:
        print("no finished baseline runs")
        return
    metric, base = table["base"][0], table["base"][1]
    print(f"primary metric: {metric}; seeds {seeds}")
    for name, (_, values, wall, lr, cpu) in table.items():
        line = (f"{name:9s} lr {lr:.3g}: {values.mean():7.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:5.2f}"
                f"  [{', '.join(f'{v:.2f}' for v in values)}]  median wall {wall:.1f} s/run"
                f"{', CPU s/run per invocation ' + str(cpu) if cpu else ''}")
        if name != "base":
            common = values.index.intersection(base.index)
            diff = values[common] - base[common]
            if len(diff) > 1:
                sd = diff.std(ddof=1)
                p = stats.ttest_rel(values[common], base[common]).pvalue if sd > 0 else float("nan")
                ratio = abs(diff.mean()) / sd if sd > 0 else float("inf")
                line += f"\n{'':9s} paired diff {diff.mean():+.2f} (sd {sd:.2f}, |mean|/sd {ratio:.1f}, p {p:.3g})"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--probes", default="base,third,broken")
    parser.add_argument("--lr", type=float, default=None, help="baseline lr (default: the config's)")
    parser.add_argument("--set", action="append", default=[], help="extra --set for every probe")
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    with open(args.config) as handle:
        base_opt = dict(yaml.safe_load(handle)["optimizer"])
    if args.lr is not None:
        base_opt["lr"] = args.lr
    if not args.summary_only:
        for name in probes:
            run_probe(args.config, args.out, name, base_opt, seeds, args.set, args.max_parallel)
    summarise(args.out, probes, seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
