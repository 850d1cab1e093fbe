"""Host-side cost of one fused AdamP/SGDP step through the Triton kernels, with the launches stubbed out.

    python scripts/bench_host_overhead.py [--model resnet50] [--steps 300]

On a GPU the kernels run asynchronously, so a step can be no faster than the Python work that prepares
and launches them: gathering state, grouping, the address tables, three launches. This script measures that
part on any machine (no GPU needed): the Triton kernels are replaced by no-ops that only count launches,
and ``_triton.available`` is forced on. Prints median milliseconds per step over several repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import adamp  # noqa: E402
from adamp import _fused, _triton  # noqa: E402
from benchmarks.bench_step import MODELS, build_params  # noqa: E402


class _NoLaunch:
    def __init__(self, counter: list[int]):
        self.counter = counter

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.counter[0] += 1
        return launch


def measure(opt: torch.optim.Optimizer, steps: int, repeats: int = 5) -> float:
    opt.step()  # builds state and the cached tables
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", choices=MODELS)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    params = build_params(args.model, torch.device("cpu"))
    for p in params:
        p.grad = torch.zeros_like(p)
    launches = [0]
    for name in ("_stats_kernel", "_decide_kernel", "_apply_kernel"):
        setattr(_triton, name, _NoLaunch(launches))
    _triton.available = lambda device: True
    _fused.BACKEND = "triton"
    print(f"{args.model}: {len(params)} tensors, {sum(p.numel() for p in params) / 1e6:.1f}M params")
    for label, opt in (("AdamP", adamp.AdamP(params, lr=1e-3, weight_decay=1e-2, fused=True)),
                       ("SGDP", adamp.SGDP(params, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True,
                                           fused=True))):
        launches[0] = 0
        ms = measure(opt, args.steps)
        per_step = launches[0] / (1 + 5 * args.steps)
        print(f"{label}: host {ms:.3f} ms per step, {per_step:.0f} kernel launches per step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
