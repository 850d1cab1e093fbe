"""FSDP2 (``fully_shard``, DTensor shards) on 2 CPU processes with gloo, against single-process training.

:func:`run` spawns two ranks that each train the same small float64 model (rows that split evenly and
unevenly over 2 ranks, conv and linear weights, 1-D params) for every optimizer and implementation asked
for, and a copy that is checkpointed with ``torch.distributed.checkpoint`` (sharded optimizer state)
halfway and resumed into a fresh model and optimizer. Rank 0 writes the gathered full params to files;
the test compares them with :func:`train_single` (one process, no sharding, same data).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

import adamp

STEPS = 8
WORLD = 2
#: every implementation that runs on the CPU (see tests/optim/conftest.py for the ids)
IMPLS = ["single", "single-select", "foreach", "foreach-segmented", "fused", "fused-segmented", "fused-triton"]
KWARGS = {
    "AdamP": dict(lr=1e-2, weight_decay=1e-2, nesterov=True),
    "SGDP": dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
}


class Net(torch.nn.Module):
    """Scale-invariant and ordinary weights; dim 0 of 6 (even) and 5 and 3 (uneven) rows over 2 ranks."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 6, 3, bias=False)  # 6 rows: even shards
        self.norm = torch.nn.GroupNorm(6, 6, affine=False)  # per-channel normalisation: channel view fires
        self.fc1 = torch.nn.Linear(6, 5, bias=False)  # 5 rows: 3 + 2
        self.ln = torch.nn.LayerNorm(5, elementwise_affine=False)  # whole-layer invariance: layer view
        self.fc2 = torch.nn.Linear(5, 3)  # 3 rows: 2 + 1, and a 1-D bias
        self.scale = torch.nn.Parameter(torch.ones(3))  # 1-D: never projected

    def forward(self, x):
        x = F.relu(self.norm(self.conv(x))).mean(dim=(2, 3))
        return self.fc2(F.relu(self.ln(self.fc1(x)))) * self.scale


def make_model() -> Net:
    torch.manual_seed(0)
    return Net().double()


def batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(4, 2, 5, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (4,), generator=g)


def optimizer(name: str, params, impl: str):
    return getattr(adamp, name)(params, **KWARGS[name], foreach=impl.startswith("foreach"),
                                fused=impl.startswith("fused"))


def train_single(name: str, steps: int = STEPS) -> dict[str, torch.Tensor]:
    """One process, whole tensors: the loss is the mean of the ranks' losses, as FSDP's averaged grads are."""
    model = make_model()
    opt = optimizer(name, model.parameters(), "single")
    for step in range(steps):
        opt.zero_grad()
        losses = [F.cross_entropy(model(x), y) for x, y in (batch(step, r) for r in range(WORLD))]
        (sum(losses) / WORLD).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _variant(impl: str):
    """Switch on the implementation variants that are off by default on the CPU (as conftest.py does)."""
    from unittest import mock

    from adamp import _fused, _projection

    patches = []
    if impl == "single-select":
        patches.append(mock.patch.object(_projection, "BRANCH_ON_CPU", False))
    if impl == "foreach-segmented":
        patches.append(mock.patch.object(_projection, "SEGMENTED", True))
    if impl == "fused-segmented":
        patches.append(mock.patch.object(_fused, "SEGMENTED", True))
    if impl == "fused-triton":
        patches.append(mock.patch.object(_fused, "BACKEND", "triton"))
    if impl.startswith("fused") and not os.environ.get("ADAMP_TEST_FSDP_INDUCTOR"):
        # Dynamo traces the DTensor step and AOTAutograd lowers it to plain ops and functional collectives,
        # as with inductor, whose C++ code generation alone would take minutes here (measured: 286 s for
        # the two optimizers on 2 CPU ranks; set ADAMP_TEST_FSDP_INDUCTOR=1 to run it)
        patches.append(mock.patch.object(_fused, "COMPILE_OPTIONS", {**_fused.COMPILE_OPTIONS, "backend": "aot_eager"}))
    return patches


def _sharded_model():
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    for module in (model.conv, model.fc1, model.fc2):
        fully_shard(module)
    fully_shard(model)
    return model


def _train_steps(model, opt, steps, rank, counts=None):
    from torch.distributed.tensor.debug import CommDebugMode

    for step in steps:
        opt.zero_grad()
        x, y = batch(step, rank)
        F.cross_entropy(model(x), y).backward()
        if counts is None:
            opt.step()
            continue
        with CommDebugMode() as comm:
            opt.step()
        counts.append(comm.get_total_counts())


def _full_params(model) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().clone()
            for k, v in model.state_dict().items()}


def _worker(rank: int, init_file: str, out: str, names: list[str], impls: list[str]) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    results: dict[str, object] = {}
    try:
        for name in names:
            for impl in impls:
                key = f"{name}-{impl}"
                patches = _variant(impl)
                for p in patches:
                    p.start()
                try:
                    # uninterrupted, counting the collectives of every step
                    model = _sharded_model()
                    opt = optimizer(name, model.parameters(), impl)
                    # CommDebugMode is a dispatch mode, which torch.compile refuses: counted on the eager paths
                    counts: list[int] | None = None if impl.startswith("fused") else []
                    _train_steps(model, opt, range(STEPS), rank, counts)
                    full = _full_params(model)
                    # checkpointed halfway with torch.distributed.checkpoint, resumed into new objects
                    model = _sharded_model()
                    opt = optimizer(name, model.parameters(), impl)
                    _train_steps(model, opt, range(STEPS // 2), rank)
                    folder = os.path.join(out, f"dcp-{key}")
                    dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)},
                             checkpoint_id=folder)
                    del model, opt
                    model = _sharded_model()
                    opt = optimizer(name, model.parameters(), impl)
                    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
                    dcp.load(state, checkpoint_id=folder)
                    set_model_state_dict(model, state["model"])
                    set_optimizer_state_dict(model, opt, state["optim"])
                    _train_steps(model, opt, range(STEPS // 2, STEPS), rank)
                    results[key] = {"full": full, "resumed": _full_params(model), "collectives": counts}
                except Exception:  # noqa: BLE001 - reported by the test, with the rank's traceback
                    results[key] = {"error": traceback.format_exc()}
                finally:
                    for p in patches:
                        p.stop()
                dist.barrier()
    finally:
        if rank == 0:
            torch.save(results, os.path.join(out, "results.pt"))
        dist.destroy_process_group()


def run(tmp: Path, names: list[str], impls: list[str]) -> dict[str, dict]:
    """Train on 2 spawned ranks; return rank 0's results by ``"<optimizer>-<impl>"``."""
    import torch.multiprocessing as mp

    init_file = tmp / "init"
    mp.spawn(_worker, args=(str(init_file), str(tmp), names, impls), nprocs=WORLD, join=True)
    return torch.load(tmp / "results.pt", weights_only=True)
