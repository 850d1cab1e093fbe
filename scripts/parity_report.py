"""Measure how far each of our implementations is from the official adamp==0.3.0, case by case.

    .venv/bin/python scripts/parity_report.py [--steps 50] [--out results/parity]

Runs the parity matrix of tests/optim (every optimizer, hyper-parameter variant and implementation) on the
mixed problem whose tensors exercise each branch of the scale-invariance test, in float64, and writes the
maximum relative difference of params and state after the last step, per case, plus the same for each
single tensor kind. The tests assert these are <= 1e-12; this script reports the measured values.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reference import load_reference  # noqa: E402
from tests.optim.cases import OPTIMS, PROBLEM, max_rel_diff, run_steps  # noqa: E402

KIND_NAMES = {"channel": "channel view fires", "layer": "only layer view fires", "none": "neither fires",
              None: "1-D (never projected)"}


def measure(steps: int) -> list[dict]:
    reference = load_reference()
    rows = []
    for info in OPTIMS:
        for variant, kwargs in info.variants.items():
            ref_params = PROBLEM.make_params(torch.float64)
            ref_kwargs = {k: v for k, v in kwargs.items() if k not in info.ours_only}
            ref = reference[info.reference_index](ref_params, **ref_kwargs)
            run_steps(ref, ref_params, PROBLEM.grad_fn, steps)
            for impl in ("single", "foreach", "fused"):
                params = PROBLEM.make_params(torch.float64)
                opt = info.cls(params, **kwargs, foreach=impl == "foreach", fused=impl == "fused")
                run_steps(opt, params, PROBLEM.grad_fn, steps)
                row = dict(optimizer=info.name, variant=variant, kwargs=repr(kwargs), implementation=impl,
                           steps=steps, params_max_rel_diff=max_rel_diff(ref_params, params))
                state_ref = [ref.state[p][k] for p in ref_params if p in ref.state for k in info.state_keys if k != "step"]
                state = [opt.state[p][k] for p in params if p in opt.state for k in info.state_keys if k != "step"]
                row["state_max_rel_diff"] = max_rel_diff(state_ref, state)
                for i, kind in enumerate(PROBLEM.expected):
                    label = "zero weights" if i == 6 else "zero gradient" if i == 7 else KIND_NAMES[kind]
                    if i == 8:
                        label = "no gradient (skipped)"
                    key = f"{label} {tuple(params[i].shape)}"
                    row[key] = max_rel_diff([ref_params[i]], [params[i]])
                rows.append(row)
                print(f"{info.name:5s} {variant:15s} {impl:8s} params {row['params_max_rel_diff']:.2e} "
                      f"state {row['state_max_rel_diff']:.2e}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "parity")
    args = parser.parse_args()
    rows = measure(args.steps)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".parity.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, args.out / "parity.csv")
    worst = max(max(r["params_max_rel_diff"], r["state_max_rel_diff"]) for r in rows)
    lines = [f"# Parity with adamp==0.3.0 (float64, {args.steps} steps)", "",
             f"Measured on {platform.machine()} CPU, torch {torch.__version__}. Worst case over all "
             f"{len(rows)} cases: {worst:.2e} (tests require <= 1e-12).", "",
             "| optimizer | variant | implementation | params | state |", "|---|---|---|---|---|"]
    lines += [f"| {r['optimizer']} | {r['variant']} | {r['implementation']} | {r['params_max_rel_diff']:.1e} | "
              f"{r['state_max_rel_diff']:.1e} |" for r in rows]
    tmp = args.out / ".parity.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, args.out / "parity.md")
    print(f"worst {worst:.2e}; wrote {args.out}/parity.csv and parity.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
