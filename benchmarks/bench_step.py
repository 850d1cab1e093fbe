"""Optimizer-step benchmark: every implementation of AdamP/SGDP against every peer, in one process.

    python -m benchmarks.bench_step                       # CPU default: the ResNet-50 parameter set
    python -m benchmarks.bench_step --models all          # ResNet-50, ViT-B/16, EfficientNet-B0, 24x1024
    python -m benchmarks.bench_step --mode iteration      # whole ResNet-50 training iteration (GPU)

Times ``optimizer.step()`` only, on the real parameter shapes of each model (built without weights) with
fixed random gradients. Optimizers are timed in interleaved rounds (A B C ... A B C ...) so drift of a
shared machine hits all of them alike; each figure is the median over rounds. Ratios are to torch AdamW
(fused on GPU, foreach on CPU) measured in the same run. Writes CSV + JSON + a bar plot under
``results/bench/<device>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

import adamp

MODELS = ["resnet50", "vit_b16", "efficientnet_b0", "transformer_24x1024"]


def build_params(name: str, device: torch.device) -> list[torch.nn.Parameter]:
    """Parameters of a model, by name, with no weights downloaded."""
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50(weights=None)
    elif name == "vit_b16":
        import timm

        model = timm.create_model("vit_base_patch16_224", pretrained=False)
    elif name == "efficientnet_b0":
        import timm

        model = timm.create_model("efficientnet_b0", pretrained=False)
    elif name == "transformer_24x1024":
        layer = torch.nn.TransformerEncoderLayer(1024, 16, 4096, batch_first=True)
        model = torch.nn.TransformerEncoder(layer, 24, enable_nested_tensor=False)
    else:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return [torch.nn.Parameter(p.detach().to(device)) for p in model.parameters()]


class _Segmented:
    """Steps an optimizer with the batched (segmented) projection switched on: ``adamp._projection.SEGMENTED``
    for the foreach path, ``adamp._fused.SEGMENTED`` for the fused one (candidate defaults on GPUs, timed
    here beside the per-tensor versions)."""

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt

    def step(self) -> None:
        from adamp import _fused, _projection

        _fused.SEGMENTED = _projection.SEGMENTED = True
        try:
            self.opt.step()
        finally:
            _fused.SEGMENTED = _projection.SEGMENTED = False


@dataclass
class Entry:
    label: str
    family: str  # "adamp", "sgdp", "adam", "sgd"
    make: Callable[[list[torch.nn.Parameter]], Any]  # anything with .step()


def entries(device: torch.device, with_reference: bool) -> list[Entry]:
    gpu = device.type == "cuda"
    adamp_kw = dict(lr=1e-6, weight_decay=1e-2)
    sgdp_kw = dict(lr=1e-6, momentum=0.9, weight_decay=1e-5, nesterov=True)
    out = [
        Entry("adamp single (ours)", "adamp", lambda p: adamp.AdamP(p, **adamp_kw, foreach=False)),
        Entry("adamp foreach (ours)", "adamp", lambda p: adamp.AdamP(p, **adamp_kw, foreach=True)),
        Entry("adamp fused (ours)", "adamp", lambda p: adamp.AdamP(p, **adamp_kw, fused=True)),
        Entry("sgdp single (ours)", "sgdp", lambda p: adamp.SGDP(p, **sgdp_kw, foreach=False)),
        Entry("sgdp foreach (ours)", "sgdp", lambda p: adamp.SGDP(p, **sgdp_kw, foreach=True)),
        Entry("sgdp fused (ours)", "sgdp", lambda p: adamp.SGDP(p, **sgdp_kw, fused=True)),
        Entry("torch adamw foreach", "adam", lambda p: torch.optim.AdamW(p, **adamp_kw, foreach=True)),
        Entry("torch adamw fused", "adam", lambda p: torch.optim.AdamW(p, **adamp_kw, fused=True)),
        Entry("torch adam foreach", "adam", lambda p: torch.optim.Adam(p, lr=1e-6, foreach=True)),
        Entry("torch adam fused", "adam", lambda p: torch.optim.Adam(p, lr=1e-6, fused=True)),
        Entry("torch sgd foreach", "sgd", lambda p: torch.optim.SGD(p, **sgdp_kw, foreach=True)),
        Entry("torch sgd fused", "sgd", lambda p: torch.optim.SGD(p, **sgdp_kw, fused=True)),
    ]
    if gpu:  # GPU candidates: on the CPU torch's segmented kernels are single-threaded (4x-60x slower)
        out += [Entry(f"{name} {impl}-segmented (ours)", name,
                      lambda p, cls=cls, kw=kw, impl=impl: _Segmented(cls(p, **kw, **{impl: True})))
                for name, cls, kw in (("adamp", adamp.AdamP, adamp_kw), ("sgdp", adamp.SGDP, sgdp_kw))
                for impl in ("foreach", "fused")]
    try:
        from timm.optim import SGDP as TimmSGDP
        from timm.optim import AdamP as TimmAdamP

        out += [Entry("timm adamp", "adamp", lambda p: TimmAdamP(p, **adamp_kw)),
                Entry("timm sgdp", "sgdp", lambda p: TimmSGDP(p, **sgdp_kw))]
    except ImportError:
        pass
    if with_reference:
        from benchmarks.reference import load_reference

        RefAdamP, RefSGDP = load_reference()
        out += [Entry("official adamp 0.3.0", "adamp", lambda p: RefAdamP(p, **adamp_kw)),
                Entry("official sgdp 0.3.0", "sgdp", lambda p: RefSGDP(p, **sgdp_kw))]
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(model: str, device: torch.device, rounds: int, steps: int, warmup: int,
                with_reference: bool, only: str | None) -> list[dict]:
    params = build_params(model, device)
    n_params = sum(p.numel() for p in params)
    gen = torch.Generator(device=device).manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, device=device) * 1e-2
    chosen = [e for e in entries(device, with_reference) if only is None or only in e.label]
    live: list[tuple[Entry, Any, float]] = []
    for e in chosen:
        # each optimizer gets its own param copy (same grads) so in-place updates never interact
        own = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for o, p in zip(own, params):
            o.grad = p.grad
        try:
            opt = e.make(own)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(warmup):  # includes compilation for the fused paths
                opt.step()
            _sync(device)
            live.append((e, opt, time.perf_counter() - t0))
        except Exception as exc:  # an implementation missing on this device is reported, not fatal
            print(f"  [{model}] {e.label}: unavailable ({type(exc).__name__}: {str(exc)[:100]})", flush=True)
    times: dict[str, list[float]] = {e.label: [] for e, _, _ in live}
    peaks: dict[str, float] = {}
    for r in range(rounds):
        for e, opt, _ in live:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            _sync(device)
            times[e.label].append((time.perf_counter() - t0) / steps * 1e3)
            if device.type == "cuda":
                peaks[e.label] = max(peaks.get(e.label, 0.0),
                                     (torch.cuda.max_memory_allocated(device) - base) / 2**20)
    rows = []
    for e, _, warm_s in live:
        rows.append(dict(model=model, n_params=n_params, optimizer=e.label, family=e.family,
                         median_ms=statistics.median(times[e.label]), min_ms=min(times[e.label]),
                         max_ms=max(times[e.label]), rounds=rounds, steps_per_round=steps,
                         warmup_s=warm_s, step_peak_extra_mib=peaks.get(e.label, float("nan"))))
    baseline = "torch adamw fused" if device.type == "cuda" else "torch adamw foreach"
    sgd_base = "torch sgd fused" if device.type == "cuda" else "torch sgd foreach"
    ref = {r["optimizer"]: r["median_ms"] for r in rows}
    for r in rows:
        r["ratio_to_adamw"] = r["median_ms"] / ref[baseline] if baseline in ref else float("nan")
        r["ratio_to_sgd"] = r["median_ms"] / ref[sgd_base] if sgd_base in ref else float("nan")
        official = "official adamp 0.3.0" if r["family"] == "adamp" else "official sgdp 0.3.0"
        r["speedup_vs_official"] = ref[official] / r["median_ms"] if official in ref else float("nan")
    return rows


def bench_iteration(device: torch.device, batch_sizes: list[int], rounds: int, only: str | None) -> list[dict]:
    """Forward + backward + step of ResNet-50 (bf16 autocast, channels_last): the optimizer's share."""
    import torchvision

    rows = []
    choices = {
        "torch adamw fused": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1, fused=device.type == "cuda"),
        "adamp fused (ours)": lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2, fused=True),
        "adamp foreach (ours)": lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2, foreach=True),
    }
    try:
        from benchmarks.reference import load_reference

        RefAdamP, _ = load_reference()
        choices["official adamp 0.3.0"] = lambda p: RefAdamP(p, lr=1e-3, weight_decay=1e-2)
    except Exception as exc:  # noqa: BLE001
        print(f"official adamp unavailable: {exc}")
    for bs in batch_sizes:
        x = torch.randn(bs, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (bs,), device=device)
        models = {}
        for label, make in choices.items():
            if only and only not in label:
                continue
            torch.manual_seed(0)
            model = torchvision.models.resnet50(weights=None).to(device, memory_format=torch.channels_last)
            models[label] = (model, make(model.parameters()))
        ms: dict[str, list[float]] = {k: [] for k in models}

        def one(model, opt):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        for model, opt in models.values():
            for _ in range(3):
                one(model, opt)
        for _ in range(rounds):
            for label, (model, opt) in models.items():
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(5):
                    one(model, opt)
                _sync(device)
                ms[label].append((time.perf_counter() - t0) / 5 * 1e3)
        base = statistics.median(ms["torch adamw fused"]) if "torch adamw fused" in ms else float("nan")
        for label, values in ms.items():
            med = statistics.median(values)
            rows.append(dict(model="resnet50_train_iter_bf16_cl", batch_size=bs, optimizer=label, median_ms=med,
                             min_ms=min(values), max_ms=max(values), rounds=rounds,
                             overhead_vs_adamw_pct=(med / base - 1) * 100))
    return rows


def environment(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        commit = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return dict(device=str(device), device_name=name, torch=torch.__version__, python=sys.version.split()[0],
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(), commit=commit, host=platform.node(),
                time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def print_table(rows: list[dict], keys: list[str]) -> None:
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def write_outputs(rows: list[dict], env: dict, out_dir: Path, stem: str) -> None:
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = out_dir / f".{stem}.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / f"{stem}.csv")
    tmp = out_dir / f".{stem}.json.tmp"
    tmp.write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    os.replace(tmp, out_dir / f"{stem}.json")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(max(5 * len(models), 7), 5), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = sorted((r for r in rows if r["model"] == model), key=lambda r: r["median_ms"])
        colors = ["tab:red" if "ours" in r["optimizer"] else "tab:gray" if "official" in r["optimizer"]
                  else "tab:blue" for r in sub]
        ax.barh([r["optimizer"] for r in sub], [r["median_ms"] for r in sub], color=colors)
        ax.set_xscale("log")
        ax.set_xlabel("optimizer.step() median (ms, log scale)")
        ax.set_title(model)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["step", "iteration"], default="step")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated from {','.join(MODELS)} or 'all' (default: all on GPU, resnet50 on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15 GPU, 5 CPU)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 10 GPU, 2 CPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--batch-sizes", default="64,256", help="for --mode iteration")
    parser.add_argument("--only", default=None, help="only optimizers whose label contains this text")
    parser.add_argument("--no-reference", action="store_true", help="skip the official adamp==0.3.0")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default results/bench/<device>)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    rounds = args.rounds or (15 if gpu else 5)
    steps = args.steps or (10 if gpu else 2)
    env = environment(device)
    tag = env["device_name"].replace(" ", "_").replace("/", "_") if gpu else "cpu"
    out = args.out or Path(__file__).resolve().parents[1] / "results" / "bench" / tag
    print(f"device: {env['device_name']} | torch {env['torch']} | threads {env['threads']}", flush=True)
    if args.mode == "iteration":
        rows = bench_iteration(device, [int(b) for b in args.batch_sizes.split(",")], rounds, args.only)
        print_table(rows, ["model", "batch_size", "optimizer", "median_ms", "min_ms", "max_ms",
                           "overhead_vs_adamw_pct"])
        write_outputs(rows, env, out, "iteration")
        return 0
    names = MODELS if (args.models == "all" or (args.models is None and gpu)) else \
        (args.models or "resnet50").split(",")
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        model_rows = bench_model(name, device, rounds, steps, args.warmup, not args.no_reference, args.only)
        print_table(model_rows, ["optimizer", "median_ms", "min_ms", "max_ms", "ratio_to_adamw",
                                 "ratio_to_sgd", "speedup_vs_official", "step_peak_extra_mib", "warmup_s"])
        rows += model_rows
        write_outputs(rows, env, out, "step")  # after each model, so an interrupted run keeps its results
        if gpu:
            torch.cuda.empty_cache()
    plot(rows, out / "step.png", f"optimizer.step() on {env['device_name']} (torch {env['torch']})")
    print(f"wrote {out}/step.csv, step.json, step.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
