"""Benchmark of the experiment engine's own overhead (no training).

1. Expanding and dry-running a 10,000-run grid (load, expand, validate and resolve every run, compute its
   id, check the results folder, format the dry-run lines) must take < 2 s.
2. ``load_results`` over 10,000 finished runs must take < 3 s.

Times are measured in-process after the imports (importing torch alone takes seconds on a loaded machine
and is the same for any engine); the median of ``--repeat`` tries is compared with the limit. Exit code 1
when a limit is exceeded.

    .venv/bin/python scripts/bench_engine.py [--runs 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import store  # noqa: E402
from benchmarks.engine.sweep import format_plan, plan_sweep  # noqa: E402

OPTIMIZERS = ["sgd", "sgdp", "adam", "adamw", "adamp"]


def write_config(folder: Path, runs: int) -> Path:
    """A grid of ``runs`` classification runs: 5 optimizers x 20 learning rates x runs/100 seeds."""
    seeds = max(1, runs // (len(OPTIMIZERS) * 20))
    lrs = [round(10 ** (-4 + 3 * i / 19), 8) for i in range(20)]
    text = (
        "task: classification\n"
        "data: {name: digits}\n"
        "optimizer: {name: adamp, lr: 1.0e-3, weight_decay: 1.0e-2}\n"
        "train: {epochs: 10, batch_size: 64}\n"
        "grid:\n"
        f"  optimizer.name: {json.dumps(OPTIMIZERS)}\n"
        f"  optimizer.lr: {json.dumps(lrs)}\n"
        f"  train.seed: {json.dumps(list(range(seeds)))}\n"
    )
    path = folder / "bench_grid.yaml"
    path.write_text(text)
    return path


def time_dry_run(config: Path, out: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    plan = plan_sweep([config], out_dir=out)
    buf = io.StringIO()
    buf.writelines(line + "\n" for line in format_plan(plan))
    elapsed = time.perf_counter() - t0
    last = buf.getvalue().splitlines()[-1]
    assert last == f"{len(plan.runs)} runs (0 already done)", last
    return elapsed, len(plan.runs)


def fill_store(config: Path, out: Path) -> int:
    """Write one finished record + a short history per planned run (what a finished sweep leaves)."""
    plan = plan_sweep([config], out_dir=out)
    for i, r in enumerate(plan.runs):
        run_dir = r.spec.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "run_id": r.spec.run_id, "config": r.spec.config, "status": "done",
            "metrics": {"top1": 90.0 + i % 10, "top5": 99.0, "val_loss": 0.3, "best_top1": 91.0, "train_loss": 0.2},
            "timing": {"started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:01:00+00:00",
                       "wall_s": 60.0, "steps": 300, "step_time_s": 0.01},
            "env": store.collect_env("cpu"), "error": None, "attempt": 1,
        }
        store.write_json_atomic(run_dir / store.RECORD, record, fsync=False)
    return len(plan.runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="build the folders here and keep them")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_engine_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        config = write_config(folder, args.runs)
        # warm-up: imports (torch, task modules, timm) and first-call caches are not the engine's cost
        plan_sweep([config], ["grid.train.seed=[0]", "grid.optimizer.lr=[0.1]"], out_dir=folder / "warm")

        dry = [time_dry_run(config, folder / "empty") for _ in range(args.repeat)]
        n = dry[0][1]
        dry_s = statistics.median(t for t, _ in dry)

        out = folder / "full"
        t0 = time.perf_counter()
        written = fill_store(config, out)
        fill_s = time.perf_counter() - t0
        load = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            frame = store.load_results(out)
            load.append(time.perf_counter() - t0)
            assert len(frame) == written and (frame["status"] == "done").all()
        load_s = statistics.median(load)

        t0 = time.perf_counter()
        plan = plan_sweep([config], out_dir=out)
        rerun_s = time.perf_counter() - t0
        assert len(plan.skipped) == written

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"machine: {platform.machine()}, {cores} cores, load average {load_avg:.1f}, "
              f"python {platform.python_version()}")
        print(f"expand + dry-run of {n} runs:            {dry_s:6.2f} s (median of {args.repeat}; limit 2 s)")
        print(f"load_results over {written} finished runs:  {load_s:6.2f} s (median of {args.repeat}; limit 3 s)")
        print(f"plan over {written} finished runs (all skipped): {rerun_s:6.2f} s (info)")
        print(f"writing {written} records (setup):          {fill_s:6.2f} s (info)")
        ok = dry_s < 2.0 and load_s < 3.0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
