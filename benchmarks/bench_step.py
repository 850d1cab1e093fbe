"""Optimizer-step benchmark: every implementation of AdamP/SGDP against every peer, in one process.

    python -m benchmarks.bench_step                       # CPU default: the ResNet-50 parameter set
    python -m benchmarks.bench_step --models all          # ResNet-50, ViT-B/16, EfficientNet-B0, 24x1024
    python -m benchmarks.bench_step --mode iteration      # whole ResNet-50 training iteration (GPU)

Times ``optimizer.step()`` only, on the real parameter shapes of each model (built without weights) with
fixed random gradients. Optimizers are timed in interleaved rounds (A B C ... A B C ...) so drift of a
shared machine hits all of them alike; each figure is the median over rounds. Ratios are to torch AdamW
and torch SGD (fused on GPU, foreach on CPU) and speed-ups to the official adamp==0.3.0, all measured in
the same interleaved rounds. Writes CSV + JSON + a bar plot under ``results/bench/<device>/``.

Peak temporary memory (``step_peak_extra_mib``): the most memory allocated above the level before a step,
during ``step()`` with the optimizer state already built. On a GPU it is read from the CUDA allocator's
peak counter over the timed rounds; on the CPU, after the rounds, two extra untimed steps per optimizer run
under ``torch.profiler`` (profile_memory=True) and the running sum of the second one's allocations and frees
gives the peak (the profiler never touches the timed rounds).

Memory batches: every optimizer entry holds its own copy of the params plus its state (1x the params for
SGD-type, 2x for Adam-type). When all entries of a model do not fit 75% of the available memory
(MemAvailable from /proc/meminfo on the CPU, free CUDA memory on a GPU), they are run in consecutive
batches that fit, one after the other: Adam-type entries (AdamP, torch Adam/AdamW) with the Adam-type
baselines (torch AdamW as above, the official AdamP), SGD-type entries with torch SGD and the official SGDP.
So every ratio that compares like with like is computed from figures timed side by side in the same rounds;
ratios across kinds are NaN in a split model. The ``batch`` column says which batch a row came from
(baselines get one row per batch). When everything fits there is one batch (batch 0) and nothing changes;
when a kind's baselines and one entry cannot fit together, the model is skipped with a message.

``--merge`` keeps the rows of other models already in the output folder (e.g. to rerun one model).
At the end it prints, per model, the fastest implementation of ours against the issue's targets (GPU:
AdamP <= 1.5x torch AdamW fused, SGDP <= 1.5x torch SGD fused, >= 25x the official AdamP on ResNet-50;
CPU: AdamP <= 1.5x torch AdamW foreach), each marked met or MISSED.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

import adamp
from benchmarks.bench_common import error_text, inductor, matches, per_tensor, sync
from benchmarks.bench_iteration import bench_iteration
from benchmarks.bench_output import environment, previous_runs, print_table, write_outputs

MODELS = ["resnet50", "vit_b16", "efficientnet_b0", "transformer_24x1024", "transformer_xl_wt103"]
#: words in WikiText-103's vocabulary (the training split's words plus <eos>), the Transformer-XL's n_token:
#: its 267,735 x 410 word embedding (tied with the adaptive softmax) is the tensor with the most rows of all sets
WT103_VOCAB = 267_735


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
    elif name == "transformer_xl_wt103":
        model = _transformer_xl()
    else:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return [torch.nn.Parameter(p.detach().to(device)) for p in model.parameters()]


def _transformer_xl() -> torch.nn.Module:
    """The LM runner's Transformer-XL as configured for the paper's Table 7 (configs/paper/table7_transformer_xl
    .yaml, whose model settings are those of configs/lm/base.yaml), for WikiText-103's vocabulary."""
    import yaml

    from benchmarks.models.transformer_xl import TransformerXL

    config = Path(__file__).resolve().parents[1] / "configs" / "lm" / "base.yaml"
    model_cfg = yaml.safe_load(config.read_text())["model"]
    keys = ("n_layer", "d_model", "n_head", "d_head", "d_inner", "dropout", "dropatt", "cutoffs", "div_val",
            "tie_weight", "pre_lnorm", "untie_r", "weight_norm", "mem_len")
    return TransformerXL(WT103_VOCAB, **{k: model_cfg[k] for k in keys})


#: optimizer settings of every timed entry (Adam-type, SGD-type); tiny learning rates keep the params stable
ADAMP_KW = dict(lr=1e-6, weight_decay=1e-2)
SGDP_KW = dict(lr=1e-6, momentum=0.9, weight_decay=1e-5, nesterov=True)


@dataclass
class Entry:
    label: str
    family: str  # "adamp", "sgdp", "adam", "sgd"
    make: Callable[[list[torch.nn.Parameter]], Any]  # anything with .step()


def entries(device: torch.device, with_reference: bool) -> list[Entry]:
    """Every timed optimizer. Ours: "default" (no flags: the Triton kernels on CUDA, foreach on the CPU),
    "single", "foreach", "fused" (fused=True: the Triton kernels; on CUDA only, since on the CPU it is the
    foreach path again), "fused-inductor" (fused=True with ADAMP_FUSED_BACKEND=inductor: compiles for about a
    minute per model on a GPU); on CUDA also "foreach-per-tensor" and "fused-inductor-segmented"."""
    gpu = device.type == "cuda"
    adamp_kw, sgdp_kw = ADAMP_KW, SGDP_KW
    ours = (("adamp", adamp.AdamP, adamp_kw), ("sgdp", adamp.SGDP, sgdp_kw))
    out = []
    for name, cls, kw in ours:
        out += [Entry(f"{name} default (ours)", name, lambda p, cls=cls, kw=kw: cls(p, **kw)),
                Entry(f"{name} single (ours)", name, lambda p, cls=cls, kw=kw: cls(p, **kw, foreach=False)),
                Entry(f"{name} foreach (ours)", name, lambda p, cls=cls, kw=kw: cls(p, **kw, foreach=True))]
        if gpu:
            out.append(Entry(f"{name} fused (ours)", name, lambda p, cls=cls, kw=kw: cls(p, **kw, fused=True)))
        out.append(Entry(f"{name} fused-inductor (ours)", name,
                         lambda p, cls=cls, kw=kw: inductor(cls(p, **kw, fused=True))))
    out += [
        Entry("torch adamw foreach", "adam", lambda p: torch.optim.AdamW(p, **adamp_kw, foreach=True)),
        Entry("torch adamw fused", "adam", lambda p: torch.optim.AdamW(p, **adamp_kw, fused=True)),
        Entry("torch adam foreach", "adam", lambda p: torch.optim.Adam(p, lr=1e-6, foreach=True)),
        Entry("torch adam fused", "adam", lambda p: torch.optim.Adam(p, lr=1e-6, fused=True)),
        Entry("torch sgd foreach", "sgd", lambda p: torch.optim.SGD(p, **sgdp_kw, foreach=True)),
        Entry("torch sgd fused", "sgd", lambda p: torch.optim.SGD(p, **sgdp_kw, fused=True)),
    ]
    if gpu:  # GPU candidates: on the CPU torch's segmented kernels are single-threaded (4x-60x slower)
        out += [Entry(f"{name} foreach-per-tensor (ours)", name,
                      lambda p, cls=cls, kw=kw: per_tensor(cls(p, **kw, foreach=True))) for name, cls, kw in ours]
        out += [Entry(f"{name} fused-inductor-segmented (ours)", name,
                      lambda p, cls=cls, kw=kw: inductor(cls(p, **kw, fused=True), segmented=True))
                for name, cls, kw in ours]
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


OFFICIAL = {"adamp": "official adamp 0.3.0", "adam": "official adamp 0.3.0",
            "sgdp": "official sgdp 0.3.0", "sgd": "official sgdp 0.3.0"}
#: optimizer-state copies of the params per family (exp_avg + exp_avg_sq, or the momentum buffer)
STATE_COPIES = {"adamp": 2, "adam": 2, "sgdp": 1, "sgd": 1}
#: share of the available memory left free: the estimate ignores step temporaries and allocator slack
MEMORY_MARGIN = 0.25


def ratio_baselines(device: torch.device) -> tuple[str, str]:
    """The torch AdamW and SGD entries the ratios divide by: fused on GPU, foreach on CPU (fused is slower
    there)."""
    if device.type == "cuda":
        return "torch adamw fused", "torch sgd fused"
    return "torch adamw foreach", "torch sgd foreach"


#: profiler range around the measured call of ``peak_extra_mib``
_MEASURED = "bench_step.measured_step"


def peak_extra_mib(step_fn: Callable[[], Any], device: torch.device) -> float:
    """Peak CPU memory (MiB) allocated above the level before ``step_fn()`` while it runs; NaN if unknown.

    (On CUDA the benchmark reads the caching allocator's peak counter around the timed rounds instead.) The
    CPU has no such counter, so ``step_fn`` runs twice under the profiler and the allocation (+) and free (-)
    events of the second call are summed in time order. The first call is there because the profiler cannot
    see a free of memory allocated before it started: a step that replaces a buffer it holds would otherwise
    count the new one as extra."""
    if device.type != "cpu":
        return float("nan")
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step_fn()
        with record_function(_MEASURED):
            step_fn()
    try:  # prof.events() files allocations under the op that made them, so their order is lost there
        events = prof.profiler.kineto_results.events()
    except AttributeError:  # a torch build without kineto
        return float("nan")
    mark = next(e for e in events if e.name() == _MEASURED)
    cpu = torch.autograd.DeviceType.CPU
    measured = sorted((e for e in events if e.name() == "[memory]" and e.device_type() == cpu
                       and mark.start_ns() <= e.start_ns() <= mark.end_ns()), key=lambda e: e.start_ns())
    level = peak = 0
    for e in measured:
        level += e.nbytes()
        peak = max(peak, level)
    return peak / 2**20



def available_memory_bytes(device: torch.device) -> int | None:
    """Memory the benchmark can still allocate on the device, or None when it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # blocks the caching allocator holds but does not use are free for our tensors too
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def entry_bytes(entry: Entry, param_bytes: int) -> int:
    """Estimated memory of one live entry: its own copy of the params plus its optimizer state."""
    return param_bytes * (1 + STATE_COPIES[entry.family])


#: the two kinds of entries: each kind's ratios need only its own baselines (AdamW or SGD, official AdamP or SGDP)
KIND = {"adamp": "adam", "adam": "adam", "sgdp": "sgd", "sgd": "sgd"}


def plan_batches(chosen: list[Entry], baselines: set[str], cost: Callable[[Entry], int],
                 budget: int | None) -> list[list[Entry]]:
    """Batches of entries that each fit the memory budget; one batch when everything fits or the budget is
    unknown.

    Otherwise the entries are split by kind (Adam-type: AdamP and torch Adam/AdamW; SGD-type: SGDP and torch
    SGD) into consecutive batches, each carrying the baselines of its kind, so that every ratio that compares
    like with like (to torch AdamW or SGD, to the official package) still comes from one set of interleaved
    rounds; ratios across kinds (an AdamP row to torch SGD) are then NaN. Raises ``MemoryError`` naming what
    is needed when a kind's baselines and its largest entry do not fit together.
    """
    if budget is None or sum(map(cost, chosen)) <= budget:
        return [chosen]
    batches: list[list[Entry]] = []
    for kind in ("adam", "sgd"):
        members = [e for e in chosen if KIND[e.family] == kind]
        base = [e for e in members if e.label in baselines]
        rest = [e for e in members if e.label not in baselines]
        if not rest:
            batches += [base] if base else []
            continue
        room = budget - sum(map(cost, base))
        largest = max(map(cost, rest))
        if largest > room:
            raise MemoryError(
                f"{kind}-type entries need {(sum(map(cost, base)) + largest) / 1e9:.1f} GB (baselines "
                f"{', '.join(e.label for e in base) or 'none'} plus the largest entry) but the budget is "
                f"{budget / 1e9:.1f} GB; run on a larger machine or choose entries with --only")
        groups: list[list[Entry]] = [[]]
        used = 0
        for e in rest:
            if groups[-1] and used + cost(e) > room:
                groups.append([])
                used = 0
            groups[-1].append(e)
            used += cost(e)
        # keep the order of `chosen` inside each batch, so the interleaving is the same as in one batch
        batches += [[e for e in members if e in base or any(e is g for g in group)] for group in groups]
    return batches


def add_ratios(rows: list[dict], device: torch.device) -> None:
    """Ratios to the torch baselines and speed-ups over the official package, each from the baseline row of the
    same model and batch (figures timed in the same rounds); NaN when that baseline was not run."""
    adamw, sgd = ratio_baselines(device)
    medians = {(r["model"], r["batch"], r["optimizer"]): r["median_ms"] for r in rows}
    nan = float("nan")
    for r in rows:
        def base(label: str) -> float:
            return medians.get((r["model"], r["batch"], label), nan)

        r["ratio_to_adamw"] = r["median_ms"] / base(adamw)
        r["ratio_to_sgd"] = r["median_ms"] / base(sgd)
        r["speedup_vs_official"] = base(OFFICIAL[r["family"]]) / r["median_ms"]


def bench_model(model: str, device: torch.device, rounds: int, steps: int, warmup: int,
                with_reference: bool, only: str | None, skip: str | None = None) -> list[dict]:
    params = build_params(model, device)
    n_params = sum(p.numel() for p in params)
    gen = torch.Generator(device=device).manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, device=device) * 1e-2
    chosen = [e for e in entries(device, with_reference) if matches(e.label, only, skip)]
    baselines = {*ratio_baselines(device), *OFFICIAL.values()}
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    available = available_memory_bytes(device)  # after the shared params and grads exist
    budget = None if available is None else int(available * (1 - MEMORY_MARGIN))
    try:
        batches = plan_batches(chosen, baselines, lambda e: entry_bytes(e, param_bytes), budget)
    except MemoryError as exc:
        print(f"{model}: skipped, not enough memory: {exc}", flush=True)
        return []
    if len(batches) > 1:
        repeated = ", ".join(e.label for e in chosen if e.label in baselines)
        print(f"{model}: {len(chosen)} entries in {len(batches)} batches to fit {available / 1e9:.1f} GB available"
              f" ({param_bytes / 1e9:.2f} GB params; each batch repeats the baselines of its kind: {repeated})",
              flush=True)
    rows = []
    for i, batch in enumerate(batches):
        rows += [dict(model=model, n_params=n_params, batch=i, **r)
                 for r in _bench_batch(model, batch, params, device, rounds, steps, warmup)]
        if len(batches) > 1:
            gc.collect()  # the batch's copies and state must be gone before the next one allocates
    add_ratios(rows, device)
    return rows


#: the issue's targets: (family of ours, ratio column, bound) per device type; speed-up over the official
#: package on ResNet-50 (GPU only)
TARGETS = {"cuda": [("adamp", "ratio_to_adamw", 1.5), ("sgdp", "ratio_to_sgd", 1.5)],
           "cpu": [("adamp", "ratio_to_adamw", 1.5)]}
GPU_SPEEDUP_TARGET = 25.0


def target_summary(rows: list[dict], device: torch.device) -> list[str]:
    """One line per model and target: the fastest implementation of ours, its ratio, met or missed."""
    lines = ["targets (fastest implementation of ours per model):"]
    kind = "cuda" if device.type == "cuda" else "cpu"
    for model in dict.fromkeys(r["model"] for r in rows):
        for family, column, bound in TARGETS[kind]:
            ours = [r for r in rows if r["model"] == model and r.get("family") == family and "(ours)" in r["optimizer"]
                    and r.get(column) == r.get(column)]  # NaN ratios (baseline not run) cannot be judged
            if not ours:
                continue
            best = min(ours, key=lambda r: r[column])
            verdict = "met" if best[column] <= bound else "MISSED"
            line = f"  {model}: {best['optimizer']} {best[column]:.2f}x ({column}, target <= {bound}x) {verdict}"
            if kind == "cuda" and model == "resnet50" and family == "adamp":
                speedup = best["speedup_vs_official"]
                line += (f"; {speedup:.1f}x faster than official (target >= {GPU_SPEEDUP_TARGET:.0f}x) "
                         f"{'met' if speedup >= GPU_SPEEDUP_TARGET else 'MISSED'}")
            lines.append(line)
    return lines


def _bench_batch(model: str, batch: list[Entry], params: list[torch.nn.Parameter], device: torch.device,
                 rounds: int, steps: int, warmup: int) -> list[dict]:
    """Warm up, then time the entries in interleaved rounds; one row per entry that could be built."""
    live: list[tuple[Entry, Any, float]] = []
    for e in batch:
        # each optimizer gets its own param copy (same grads) so in-place updates never interact
        own = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for o, p in zip(own, params):
            o.grad = p.grad
        try:
            opt = e.make(own)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(warmup):  # includes compilation for the fused paths
                opt.step()
            sync(device)
            live.append((e, opt, time.perf_counter() - t0))
        except Exception as exc:  # an implementation missing on this device is reported, not fatal
            print(f"  [{model}] {e.label}: unavailable ({type(exc).__name__}: {str(exc)[:100]})", flush=True)
    times: dict[str, list[float]] = {e.label: [] for e, _, _ in live}
    peaks: dict[str, float] = {}
    for r in range(rounds):
        for e, opt, warm_s in list(live):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            try:
                sync(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    opt.step()
                sync(device)
            except Exception as exc:  # noqa: BLE001 - a peer failing mid-run leaves the others running
                print(f"  [{model}] {e.label}: failed in round {r} ({error_text(exc)})", flush=True)
                live.remove((e, opt, warm_s))
                del times[e.label]
                continue
            times[e.label].append((time.perf_counter() - t0) / steps * 1e3)
            if device.type == "cuda":
                peaks[e.label] = max(peaks.get(e.label, 0.0),
                                     (torch.cuda.max_memory_allocated(device) - base) / 2**20)
    if device.type != "cuda":  # after the rounds: the profiler's overhead stays out of every timing
        for e, opt, _ in live:
            peaks[e.label] = peak_extra_mib(opt.step, device)
    return [dict(optimizer=e.label, family=e.family, median_ms=statistics.median(times[e.label]),
                 min_ms=min(times[e.label]), max_ms=max(times[e.label]), rounds=rounds, steps_per_round=steps,
                 warmup_s=warm_s, step_peak_extra_mib=peaks.get(e.label, float("nan"))) for e, _, warm_s in live]


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = list(dict.fromkeys(r["model"] for r in rows))
    models = [m for m in MODELS if m in seen] + [m for m in seen if m not in MODELS]
    fig, axes = plt.subplots(1, len(models), figsize=(max(5 * len(models), 7), 5), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = sorted((r for r in rows if r["model"] == model), key=lambda r: r["median_ms"])
        colors = ["tab:red" if "ours" in r["optimizer"] else "tab:gray" if "official" in r["optimizer"]
                  else "tab:blue" for r in sub]
        # a baseline run in several memory batches has one bar per batch, each named by its batch
        repeats = Counter(r["optimizer"] for r in sub)
        labels = [f"{r['optimizer']} [batch {r.get('batch')}]" if repeats[r["optimizer"]] > 1 else r["optimizer"]
                  for r in sub]
        ax.barh(labels, [r["median_ms"] for r in sub], color=colors)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # labelled minor ticks overlap
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
    parser.add_argument("--only", default=None, help="only optimizers whose label contains one of these "
                        "comma-separated texts (a ratio whose baseline is left out is NaN)")
    parser.add_argument("--skip", default=None, help="leave out optimizers whose label contains any of these "
                        "comma-separated texts (e.g. 'segmented,per-tensor')")
    parser.add_argument("--no-reference", action="store_true", help="skip the official adamp==0.3.0")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of other models already in the output folder's step.json")
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
        rows = bench_iteration(device, [int(b) for b in args.batch_sizes.split(",")], rounds, args.only,
                               args.skip)
        print_table(rows, ["model", "batch_size", "optimizer", "memory_format", "median_ms", "min_ms", "max_ms",
                           "overhead_vs_adamw_pct", "error"])
        write_outputs(rows, env, out, "iteration")
        return 0 if any(r["median_ms"] == r["median_ms"] for r in rows) else 1
    names = MODELS if (args.models == "all" or (args.models is None and gpu)) else \
        (args.models or "resnet50").split(",")
    rows, environments = previous_runs(out / "step.json", keep_unless=set(names)) if args.merge else ([], {})
    for name in names:
        print(f"== {name}", flush=True)
        model_rows = bench_model(name, device, rounds, steps, args.warmup, not args.no_reference, args.only,
                                 args.skip)
        if not model_rows:
            continue
        environments[name] = env
        split = len({r["batch"] for r in model_rows}) > 1
        print_table(model_rows, ["batch"] * split + ["optimizer", "median_ms", "min_ms", "max_ms", "ratio_to_adamw",
                                                     "ratio_to_sgd", "speedup_vs_official", "step_peak_extra_mib",
                                                     "warmup_s"])
        rows += model_rows
        # after each model, so an interrupted run keeps its results
        write_outputs(rows, env, out, "step", environments=environments)
        if gpu:
            torch.cuda.empty_cache()
    if not rows:
        print("nothing was measured")
        return 1
    plot(rows, out / "step.png", f"optimizer.step() on {env['device_name']} (torch {env['torch']})")
    print("\n".join(target_summary(rows, device)))
    print(f"wrote {out}/step.csv, step.json, step.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
