"""What one optimizer step dispatches: device operations and reads back to the host, counted on any machine.

    python -m benchmarks.step_ops                    # the four parameter sets of bench_step
    python -m benchmarks.step_ops --models resnet50

On a GPU, an optimizer of many small tensors is bound by the host: every dispatched operation costs
microseconds of Python and dispatcher work and at least one kernel launch (a ``_foreach`` operation one per
group of about a hundred tensors), and every read of a device value (``.item()``, ``if tensor:``) stops the
host until the device has caught up. Neither depends on the device, so both are counted here on the CPU,
with the profiler, for the eager implementations as they run on a GPU (our multi-tensor path with its GPU
default, the batched projection; the single-tensor path selecting on the device), the official
``adamp==0.3.0``, timm's and torch's. Counted per step, with the state already built:

* ``ops``: top-level aten calls that can launch a kernel (views, splits, ``empty`` and reads are left out);
* ``host_reads``: reads of device values on the host (``aten::_local_scalar_dense``, ``aten::nonzero``, at any
  depth, also inside other kernels), leaving out torch's reads of its step counters, which stay on the CPU
  when the params are on a GPU.

The compiled paths do not appear: inductor's kernels are not aten calls (the Triton path's launches are
counted by ``scripts/bench_host_overhead.py``: 3 per group and step). Writes ``step_ops.csv`` and
``step_ops.json`` under ``results/bench/cpu/`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import adamp
from benchmarks.atomic import write_text_atomic

#: aten calls that only make views or allocate: no kernel on any device
NO_KERNEL = frozenset({
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided",
    "aten::split", "aten::split_with_sizes", "aten::unbind", "aten::select", "aten::slice", "aten::narrow",
    "aten::alias", "aten::detach", "aten::expand", "aten::t", "aten::transpose", "aten::permute",
    "aten::squeeze", "aten::unsqueeze", "aten::flatten", "aten::empty", "aten::empty_like",
    "aten::empty_strided", "aten::resolve_conj", "aten::resolve_neg", "aten::lift_fresh",
    # reads: counted as host_reads, not as ops
    "aten::item", "aten::_local_scalar_dense", "aten::is_nonzero",
})
#: aten calls that read device memory on the host: on a GPU, a synchronisation each
HOST_READS = frozenset({"aten::_local_scalar_dense", "aten::nonzero"})


class _CounterReads(TorchDispatchMode):
    """Counts host reads of the optimizer's step counters. torch's optimizers keep ``state["step"]`` on the
    CPU even when the params are on a GPU (unless ``capturable``/``fused``), so reading one is no
    synchronisation there; every other read is of a value that lives where the params do."""

    def __init__(self, counters: list[torch.Tensor]):
        super().__init__()
        self.ptrs = {t.data_ptr() for t in counters}
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].data_ptr() in self.ptrs:
            self.reads += 1
        return func(*args, **(kwargs or {}))


def count_step_ops(opt: Any) -> dict[str, Any]:
    """Ops and device reads of one ``opt.step()`` after a first, uncounted one (which builds the state); a third
    step finds which of the reads were of step counters (every step makes the same calls)."""
    from torch.profiler import ProfilerActivity, profile

    opt.step()
    counters = [s["step"] for s in getattr(opt, "state", {}).values()
                if isinstance(s, dict) and isinstance(s.get("step"), torch.Tensor) and s["step"].dim() == 0]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        opt.step()
    with _CounterReads(counters) as counter_reads:  # a separate step: under a mode the profiler sees ops twice
        opt.step()
    events = prof.events()
    top = Counter(e.name for e in events if e.name.startswith("aten::") and e.name not in NO_KERNEL
                  and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    reads = sum(1 for e in events if e.name in HOST_READS)
    return dict(ops=sum(top.values()), host_reads=reads - counter_reads.reads, top_ops=dict(top.most_common(5)))


def as_on_a_gpu():
    """Our eager paths as they run on a GPU: batched projection in foreach, device-side selection in single."""
    from adamp import _projection

    return mock.patch.multiple(_projection, SEGMENTED=True, BRANCH_ON_CPU=False)


def per_tensor_projection():
    """The foreach path with the per-tensor projection (its default on the CPU)."""
    from adamp import _projection

    return mock.patch.multiple(_projection, SEGMENTED=False)


def candidates(with_reference: bool) -> list[tuple[str, str, Callable[[list], Any], Callable[[], Any]]]:
    """(label, family, make optimizer, context it steps in) for every counted implementation."""
    from benchmarks.bench_step import ADAMP_KW as adamp_kw
    from benchmarks.bench_step import SGDP_KW as sgdp_kw

    gpu = as_on_a_gpu
    out = [
        ("adamp single (ours)", "adamp", lambda p: adamp.AdamP(p, **adamp_kw, foreach=False), gpu),
        ("adamp foreach (ours)", "adamp", lambda p: adamp.AdamP(p, **adamp_kw, foreach=True), gpu),
        ("adamp foreach-per-tensor (ours)", "adamp", lambda p: adamp.AdamP(p, **adamp_kw, foreach=True),
         per_tensor_projection),
        ("sgdp single (ours)", "sgdp", lambda p: adamp.SGDP(p, **sgdp_kw, foreach=False), gpu),
        ("sgdp foreach (ours)", "sgdp", lambda p: adamp.SGDP(p, **sgdp_kw, foreach=True), gpu),
        ("sgdp foreach-per-tensor (ours)", "sgdp", lambda p: adamp.SGDP(p, **sgdp_kw, foreach=True),
         per_tensor_projection),
        ("torch adamw foreach", "adam", lambda p: torch.optim.AdamW(p, **adamp_kw, foreach=True),
         contextlib.nullcontext),
        ("torch sgd foreach", "sgd", lambda p: torch.optim.SGD(p, **sgdp_kw, foreach=True), contextlib.nullcontext),
    ]
    try:
        from timm.optim import SGDP as TimmSGDP
        from timm.optim import AdamP as TimmAdamP

        out += [("timm adamp", "adamp", lambda p: TimmAdamP(p, **adamp_kw), contextlib.nullcontext),
                ("timm sgdp", "sgdp", lambda p: TimmSGDP(p, **sgdp_kw), contextlib.nullcontext)]
    except ImportError:
        pass
    if with_reference:
        from benchmarks.reference import load_reference

        RefAdamP, RefSGDP = load_reference()
        out += [("official adamp 0.3.0", "adamp", lambda p: RefAdamP(p, **adamp_kw), contextlib.nullcontext),
                ("official sgdp 0.3.0", "sgdp", lambda p: RefSGDP(p, **sgdp_kw), contextlib.nullcontext)]
    return out


def count_model(model: str, with_reference: bool, params: list[torch.nn.Parameter] | None = None) -> list[dict]:
    """One row per implementation for the parameter set ``model`` (built by bench_step unless given)."""
    if params is None:
        from benchmarks.bench_step import build_params

        torch.manual_seed(0)  # the official code's calls depend on which view fires, so on the weights
        params = build_params(model, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    n_tensors, n_weights = len(params), sum(p.ndim >= 2 for p in params)
    rows = []
    for label, family, make, context in candidates(with_reference):
        # each optimizer steps its own copy: the counts must not depend on what an earlier one did
        own = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for p, q in zip(own, params):
            p.grad = q.grad
        with context():
            counted = count_step_ops(make(own))
        rows.append(dict(model=model, optimizer=label, family=family, tensors=n_tensors, weight_tensors=n_weights,
                         ops=counted["ops"], host_reads=counted["host_reads"],
                         ops_per_tensor=round(counted["ops"] / n_tensors, 2), top_ops=counted["top_ops"]))
        del own
    return rows


CSV_KEYS = ["model", "optimizer", "family", "tensors", "weight_tensors", "ops", "host_reads", "ops_per_tensor"]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_output import environment, print_table
    from benchmarks.bench_step import MODELS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all", help=f"comma-separated from {','.join(MODELS)} or 'all'")
    parser.add_argument("--no-reference", action="store_true", help="skip the official adamp==0.3.0")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "bench" / "cpu",
                        help="output folder (default results/bench/cpu)")
    args = parser.parse_args(argv)
    models = MODELS if args.models == "all" else args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)} or 'all'")
    rows = []
    for model in models:
        model_rows = count_model(model, not args.no_reference)
        print_table(model_rows, CSV_KEYS)
        print(flush=True)
        rows += model_rows
    args.out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=CSV_KEYS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(args.out / "step_ops.csv", table.getvalue())
    write_text_atomic(args.out / "step_ops.json",
                      json.dumps(dict(environment=environment(torch.device("cpu")), rows=rows), indent=1) + "\n")
    print(f"wrote {args.out / 'step_ops.csv'} and step_ops.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
