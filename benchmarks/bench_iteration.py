"""``python -m benchmarks.bench_step --mode iteration``: a whole ResNet-50 training iteration (forward,
backward, step; bf16 autocast) per optimizer, and the optimizer's share of it against torch's AdamW."""

from __future__ import annotations

import gc
import statistics
import time
from typing import Callable

import torch

import adamp
from benchmarks.bench_common import error_text, inductor, matches, sync


#: the model, input size and steps per round of ``--mode iteration`` (tests shrink them)
ITERATION_MODEL = "resnet50"
ITERATION_IMAGE = 224
ITERATION_STEPS = 5


def _iteration_model(device: torch.device, memory_format: torch.memory_format) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, ITERATION_MODEL)(weights=None).to(device, memory_format=memory_format)


def iteration_choices(device: torch.device) -> dict[str, tuple[Callable, torch.memory_format]]:
    """The optimizers of ``--mode iteration``: how to build each and the memory format of its model. The
    official package reshapes with ``.view`` and raises on channels_last weights, so it trains a contiguous
    copy of the model (how its users run it), timed beside torch's AdamW on a contiguous copy too."""
    cl, contiguous = torch.channels_last, torch.contiguous_format
    fused = device.type == "cuda"
    choices = {
        "torch adamw fused": (lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1, fused=fused), cl),
        "adamp default (ours)": (lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2), cl),
        "adamp foreach (ours)": (lambda p: adamp.AdamP(p, lr=1e-3, weight_decay=1e-2, foreach=True), cl),
        "adamp fused-inductor (ours)": (lambda p: inductor(adamp.AdamP(p, lr=1e-3, weight_decay=1e-2,
                                                                         fused=True)), cl),
        "torch adamw fused [contiguous]": (lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1, fused=fused),
                                           contiguous),
    }
    try:
        from benchmarks.reference import load_reference

        RefAdamP, _ = load_reference()
        choices["official adamp 0.3.0 [contiguous]"] = (lambda p: RefAdamP(p, lr=1e-3, weight_decay=1e-2),
                                                        contiguous)
    except Exception as exc:  # noqa: BLE001 - reported, the others still run
        print(f"official adamp unavailable: {type(exc).__name__}: {exc}", flush=True)
    return choices


def bench_iteration(device: torch.device, batch_sizes: list[int], rounds: int, only: str | None,
                    skip: str | None = None) -> list[dict]:
    """Forward + backward + step of ResNet-50 (bf16 autocast, batch ``bs``): the optimizer's share. Each
    overhead is against torch's AdamW on a model of the same memory format. A candidate that raises (when
    built, warmed up or timed) becomes a row with its error; the others go on."""
    rows = []
    choices = {k: v for k, v in iteration_choices(device).items() if matches(k, only, skip)}
    for bs in batch_sizes:
        inputs = {fmt: torch.randn(bs, 3, ITERATION_IMAGE, ITERATION_IMAGE, device=device).to(memory_format=fmt)
                  for fmt in {fmt for _, fmt in choices.values()}}
        y = torch.randint(0, 1000, (bs,), device=device)
        live, errors = {}, {}

        def one(model, opt, x):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        for label, (make, fmt) in choices.items():
            try:
                model = _iteration_model(device, fmt)
                opt = make(model.parameters())
                for _ in range(3):
                    one(model, opt, inputs[fmt])
                live[label] = (model, opt, fmt)
            except Exception as exc:  # noqa: BLE001 - a failing peer is a row, not the end of the run
                errors[label] = error_text(exc)
                print(f"  [iteration bs={bs}] {label}: {errors[label]}", flush=True)
        ms: dict[str, list[float]] = {k: [] for k in live}
        for _ in range(rounds):
            for label, (model, opt, fmt) in list(live.items()):
                try:
                    sync(device)
                    t0 = time.perf_counter()
                    for _ in range(ITERATION_STEPS):
                        one(model, opt, inputs[fmt])
                    sync(device)
                except Exception as exc:  # noqa: BLE001
                    errors[label] = error_text(exc)
                    print(f"  [iteration bs={bs}] {label}: {errors[label]}", flush=True)
                    del live[label], ms[label]
                    continue
                ms[label].append((time.perf_counter() - t0) / ITERATION_STEPS * 1e3)
        base = {fmt: statistics.median(ms[label]) for label, (_, _, fmt) in live.items()
                if label.startswith("torch adamw fused")}
        for label, (make, fmt) in choices.items():
            row = dict(model=f"{ITERATION_MODEL}_train_iter_bf16", batch_size=bs, optimizer=label,
                       memory_format="channels_last" if fmt == torch.channels_last else "contiguous")
            if label in errors:
                rows.append(dict(row, median_ms=float("nan"), min_ms=float("nan"), max_ms=float("nan"),
                                 rounds=0, overhead_vs_adamw_pct=float("nan"), error=errors[label]))
                continue
            values = ms[label]
            med = statistics.median(values)
            rows.append(dict(row, median_ms=med, min_ms=min(values), max_ms=max(values), rounds=len(values),
                             overhead_vs_adamw_pct=(med / base[fmt] - 1) * 100 if fmt in base else float("nan"),
                             error=""))
        del live
        gc.collect()
    return rows
