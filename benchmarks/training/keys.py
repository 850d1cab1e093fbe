"""The loop's ``train`` keys and the learning-rate schedules: defaults, types, allowed values, minimums.

Read by config validation (:mod:`benchmarks.config.validate`) and by the loop; no torch here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

#: the loop's own ``train`` keys (a task adds its own through ``Task.defaults["train"]``)
LOOP_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "max_steps": None,  # stop after this many optimizer steps in total (also shortens the schedule)
    "batch_size": 128,
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "precision": "fp32",  # fp32 | bf16 | fp16 (fp16 uses a GradScaler)
    "channels_last": False,
    "grad_clip": None,  # max global L2 norm of the gradients
    "schedule": {"name": "constant", "warmup_epochs": 0.0},
    "eval_every": 1,  # epochs; the last epoch is always evaluated
    "log_every": 10,  # optimizer steps between training-loss log points (and progress lines in the run's log)
    "logger": "none",  # none | csv (metrics.csv) | tensorboard (tensorboard/ event files): beside history.jsonl
    "diagnostics": "off",  # off | epoch | step
    "checkpoint_every_steps": None,
    "checkpoint_every_minutes": None,
    "num_workers": 0,
    "deterministic": False,
    "num_threads": None,  # torch intra-op threads; null: leave as set by the executor
    # which evaluation's metrics a run reports: "last" (the final model), or "best" (the evaluation with the
    # best value of the task's validation `selection_metric`; the last one's are kept as last_<name>)
    "select": "last",
}

#: type of the keys whose default is None (validation needs to know it)
LOOP_TYPES: dict[str, type] = {
    "max_steps": int,
    "grad_clip": float,
    "checkpoint_every_steps": int,
    "checkpoint_every_minutes": float,
    "num_threads": int,
}

#: allowed values of the string-valued loop keys
LOOP_CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("fp32", "bf16", "fp16"),
    "diagnostics": ("off", "epoch", "step"),
    "select": ("last", "best"),
    "logger": ("none", "csv", "tensorboard"),
}

#: ``train`` keys that only change how a run reports, not what it computes: left out of the run id
NOT_HASHED_TRAIN_KEYS: tuple[str, ...] = ("logger",)

#: (minimum, inclusive) for numeric loop keys
LOOP_MINIMUM: dict[str, tuple[float, bool]] = {
    "epochs": (1, True),
    "max_steps": (1, True),
    "batch_size": (1, True),
    "seed": (0, True),
    "grad_clip": (0, False),
    "eval_every": (1, True),
    "log_every": (1, True),
    "checkpoint_every_steps": (1, True),
    "checkpoint_every_minutes": (0, False),
    "num_workers": (0, True),
    "num_threads": (1, True),
}

#: schedule name -> its own keys and defaults (``name`` and ``warmup_epochs`` are common to all).
#: Units are epochs (fractions allowed); the schedule is stepped after every optimizer step.
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": 30.0, "gamma": 0.1},  # x gamma every step_size epochs
    "multistep": {"milestones": [30.0, 60.0, 90.0], "gamma": 0.1},  # x gamma at each milestone epoch
    "cosine": {"min_factor": 0.0},  # cosine from 1 to min_factor (x base lr) over the run after warmup
}
SCHEDULE_COMMON: dict[str, Any] = {"name": "constant", "warmup_epochs": 0.0}

def lr_factor(schedule: Mapping[str, Any], epoch: float, total_epochs: float, warmup_steps: float,
              step: int) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (= ``epoch`` epochs of progress)."""
    if warmup_steps > 0 and step < warmup_steps:
        # capped: with a fractional number of warmup steps the last one would otherwise exceed the base lr
        return min(1.0, (step + 1) / warmup_steps)
    name = schedule["name"]
    if name == "constant":
        return 1.0
    if name == "step":
        return schedule["gamma"] ** math.floor(epoch / schedule["step_size"] + 1e-9)
    if name == "multistep":
        return schedule["gamma"] ** sum(1 for m in schedule["milestones"] if epoch + 1e-9 >= m)
    if name == "cosine":
        warm = schedule.get("warmup_epochs", 0.0)
        span = max(total_epochs - warm, 1e-12)
        progress = min(max((epoch - warm) / span, 0.0), 1.0)
        low = schedule["min_factor"]
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
