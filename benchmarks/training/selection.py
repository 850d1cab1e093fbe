"""Which evaluation a run reports (``train.select``: the last one, or the best on a validation metric)."""

from __future__ import annotations

import math
from typing import Any, Mapping


def check_selection(task_cls: Any, select: str) -> None:
    """Raise ``ConfigError`` unless ``train.select`` can be honoured by the task without selecting on test."""
    from benchmarks.config.errors import ConfigError

    modes = dict(getattr(task_cls, "metrics", {}) or {})
    metric = getattr(task_cls, "selection_metric", None)
    name = getattr(task_cls, "name", task_cls.__name__)
    if select not in ("last", "best"):
        raise ConfigError(f"train.select must be 'last' or 'best', got {select!r}")
    if metric is not None and (metric.startswith("test") or metric not in modes):
        raise ConfigError(f"task {name}: selection_metric {metric!r} must be a validation metric listed in its "
                          "`metrics` (never a test metric)")
    if select == "best" and metric is None:
        raise ConfigError(f"train.select: best needs a validation split, and task {name} declares no "
                          "selection_metric (its held-out split is what it reports): use train.select: last")


class Selection:
    """Which evaluation a run reports (``train.select``), never chosen on a test metric.

    ``last``: the final evaluation. ``best``: the evaluation with the best finite value of the task's
    ``selection_metric`` (a validation metric; the earliest on ties); the final evaluation's metrics are
    reported beside it as ``last_<name>``. A task with a ``selection_metric`` also reports
    ``best_<selection_metric>`` (the best validation value seen), whatever ``select`` is.
    """

    def __init__(self, task_cls: Any, select: str):
        check_selection(task_cls, select)
        self.modes: dict[str, str] = dict(getattr(task_cls, "metrics", {}) or {})
        self.metric = getattr(task_cls, "selection_metric", None)
        self.select = select
        self.mode = self.modes.get(self.metric) if self.metric else None
        self.best_value: float | None = None
        self.chosen: dict[str, float] = {}
        self.chosen_at: tuple[int, Any] | None = None
        self.last: dict[str, float] = {}
        self.last_at: tuple[int, Any] | None = None

    def consider(self, metrics: Mapping[str, Any], step: int, epoch: Any) -> None:
        self.last, self.last_at = dict(metrics), (step, epoch)
        value = metrics.get(self.metric) if self.metric else None
        improved = False
        # a NaN/inf evaluation never counts as the best
        if isinstance(value, (int, float)) and math.isfinite(value):
            improved = self.best_value is None or (value > self.best_value if self.mode == "max" else value < self.best_value)
            if improved:
                self.best_value = float(value)
        # with no finite selection value yet, the latest evaluation stands in
        if self.select == "last" or improved or self.best_value is None:
            self.chosen, self.chosen_at = dict(metrics), (step, epoch)

    def reported(self) -> dict[str, float]:
        out = dict(self.chosen)
        if self.select == "best":
            out.update({f"last_{k}": v for k, v in self.last.items()})
        if self.metric and self.best_value is not None:
            out[f"best_{self.metric}"] = self.best_value
        return out

    def describe(self) -> dict[str, Any]:
        rule = "last" if self.select == "last" else f"best {self.metric} ({self.mode})"
        step, epoch = self.chosen_at if self.chosen_at else (None, None)
        return {"rule": rule, "step": step, "epoch": epoch}

    def metric_modes(self, reported: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for name in reported:
            base = name
            for prefix in ("last_", "best_"):
                if name.startswith(prefix) and name.removeprefix(prefix) in self.modes:
                    base = name.removeprefix(prefix)
            if base in self.modes:
                out[name] = self.modes[base]
        if "train_loss" in reported:
            out["train_loss"] = "min"
        return out
