"""Host-side cost of one fused AdamP/SGDP step through the Triton kernels, with the launches stubbed out.

    python scripts/bench_host_overhead.py [--model resnet50] [--steps 300] [--against 556bb3b]

On a GPU the kernels run asynchronously, so a step can be no faster than the Python work that prepares
and launches them: checking what changed since the last step, the scalar table, the launches. This script
measures that part on any machine (no GPU needed): the Triton kernels are replaced by no-ops that only count
launches, and ``_triton.available`` is forced on. Prints median milliseconds per step over several repeats.

``--against REF`` also loads the package ``adamp`` as it was at git revision REF (extracted to a temporary
folder and imported under another name) and times both in interleaved repeats of the same process, so the
ratio is not at the mercy of a shared machine's drift.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import adamp  # noqa: E402
from benchmarks.bench_step import MODELS, build_params  # noqa: E402


class _NoLaunch:
    def __init__(self, counter: list[int]):
        self.counter = counter

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.counter[0] += 1
        return launch


def _stub(package, counter: list[int]) -> None:
    """The package's kernels become counting no-ops; Triton counts as available; the fused backend is Triton."""
    triton_mod = importlib.import_module(f"{package.__name__}._triton")
    fused_mod = importlib.import_module(f"{package.__name__}._fused")
    for name in dir(triton_mod):
        if name.endswith("_kernel"):
            setattr(triton_mod, name, _NoLaunch(counter))
    triton_mod.available = lambda device: True
    fused_mod.BACKEND = "triton"


def load_revision(ref: str):
    """``adamp`` at git revision ``ref``, imported as ``adamp_at_<ref>`` (its relative imports stay inside)."""
    folder = Path(tempfile.mkdtemp(prefix="adamp_ref_"))
    archive = subprocess.run(["git", "archive", ref, "adamp"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    name = f"adamp_at_{ref.replace('-', '_').replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, folder / "adamp" / "__init__.py",
                                                  submodule_search_locations=[str(folder / "adamp")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    importlib.import_module(f"{name}._triton")
    return module


def _optimizers(package, params):
    return {"AdamP": package.AdamP(params, lr=1e-3, weight_decay=1e-2, fused=True),
            "SGDP": package.SGDP(params, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True, fused=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", choices=MODELS + ["transformer_xl_wt103"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", default=None, help="git revision to time side by side (e.g. 556bb3b)")
    args = parser.parse_args(argv)
    params = build_params(args.model, torch.device("cpu"))
    for p in params:
        p.grad = torch.zeros_like(p)
    packages = {"this tree": adamp}
    if args.against:
        packages[args.against] = load_revision(args.against)
    counters = {label: [0] for label in packages}
    for label, package in packages.items():
        _stub(package, counters[label])
    print(f"{args.model}: {len(params)} tensors, {sum(p.numel() for p in params) / 1e6:.1f}M params; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for algo in ("AdamP", "SGDP"):
        opts = {label: _optimizers(package, params)[algo] for label, package in packages.items()}
        for label, opt in opts.items():
            opt.step()  # builds state and the cached tables
            counters[label][0] = 0
        times: dict[str, list[float]] = {label: [] for label in opts}
        for _ in range(args.repeats):  # interleaved: the revisions see the same drift
            for label, opt in opts.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    opt.step()
                times[label].append((time.perf_counter() - t0) / args.steps * 1e3)
        medians = {label: statistics.median(v) for label, v in times.items()}
        for label, ms in medians.items():
            per_step = counters[label][0] / (args.repeats * args.steps)
            line = f"{algo} [{label}]: host {ms:.3f} ms per step, {per_step:.0f} kernel launches per step"
            if label != "this tree":
                line += f"; this tree takes {medians['this tree'] / ms:.2f}x its time"
            print(line)
    # what every torch optimizer's step() pays before its own code runs (profiler range, step hooks)
    null = _Null(params)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        null.step()
    print(f"torch.optim.Optimizer.step wrapper alone (an optimizer whose step does nothing): "
          f"{(time.perf_counter() - t0) / args.steps * 1e3:.3f} ms per step")
    return 0


class _Null(torch.optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {})

    def step(self, closure=None):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
