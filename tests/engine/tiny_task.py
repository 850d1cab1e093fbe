"""A task small enough for engine tests: linear regression on fixed random data, in milliseconds.

``data.nan_at_step`` makes the loss NaN from that step on and ``data.fail_at_step`` raises there, to test
divergence and failure handling; ``data.sleep_s`` slows each step down (interruption tests); ``data.preempt_at_step`` asks the loop to
checkpoint and stop, as a preemption signal handler would (once per run folder).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar, Mapping

import torch

from benchmarks.tasks.base import Task


class TinyTask(Task):
    name: ClassVar[str] = "tiny"
    description: ClassVar[str] = "linear regression on 64 random points (engine tests)"
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {"n": 64, "dim": 4, "noise": 0.1, "nan_at_step": None, "fail_at_step": None, "sleep_s": 0.0,
                 "preempt_at_step": None},
        "model": {"hidden": 8, "extra": {"depth": 1}},
        "train": {"eval_batch_size": None},
    }
    smoke: ClassVar[Mapping[str, Any]] = {"train.epochs": 1, "train.max_steps": 2, "data.n": 16}
    metrics: ClassVar[Mapping[str, str]] = {"val_loss": "min", "val_r2": "max"}
    selection_metric: ClassVar[str | None] = "val_loss"

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        d = config["data"]
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(d["n"], d["dim"], generator=g)
        w = torch.randn(d["dim"], 1, generator=g)
        self.y = self.x @ w + d["noise"] * torch.randn(d["n"], 1, generator=g)
        self.calls = 0

    def build_model(self) -> torch.nn.Module:
        h = self.config["model"]["hidden"]
        return torch.nn.Sequential(torch.nn.Linear(self.config["data"]["dim"], h), torch.nn.ReLU(),
                                   torch.nn.Linear(h, 1))

    def steps_per_epoch(self) -> int:
        return math.ceil(self.config["data"]["n"] / self.config["train"]["batch_size"])

    def train_batches(self, epoch: int):
        bs = self.config["train"]["batch_size"]
        g = torch.Generator().manual_seed(self.ctx.seed * 1000 + epoch)
        order = torch.randperm(len(self.x), generator=g)
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            yield self.x[idx], self.y[idx]

    def loss(self, model, batch):
        d = self.config["data"]
        self.calls += 1
        if d["sleep_s"]:
            time.sleep(d["sleep_s"])
        marker = self.ctx.run_dir / "preempted.flag"
        if d["preempt_at_step"] is not None and self.calls == d["preempt_at_step"] and not marker.exists():
            from benchmarks.training.loop import request_checkpoint

            marker.touch()
            request_checkpoint()  # what a SLURM preemption signal handler does
        if d["fail_at_step"] is not None and self.calls >= d["fail_at_step"]:
            raise RuntimeError(f"boom at step {self.calls}")
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        if d["nan_at_step"] is not None and self.calls >= d["nan_at_step"]:
            loss = loss * float("nan")
        return loss, {"abs_err": (model(x) - y).abs().mean().detach()}

    def evaluate(self, model) -> dict[str, float]:
        pred = model(self.x)
        mse = torch.nn.functional.mse_loss(pred, self.y).item()
        return {"val_loss": mse, "val_r2": 1.0 - mse / self.y.var().item()}
