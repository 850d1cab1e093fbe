"""Registry of task families. Modules are imported lazily so that `--help` and config validation stay fast
and a task's heavy dependencies (timm, pytorch-metric-learning, ...) are only imported when it runs."""

from __future__ import annotations

import importlib

from .base import RunContext, Task

#: task name -> "module:Class" (one file per task family)
TASKS: dict[str, str] = {
    "toy2d": "benchmarks.tasks.toy:Toy2D",
    "toy3d": "benchmarks.tasks.toy:Toy3D",
    "classification": "benchmarks.tasks.classification:Classification",
    "retrieval": "benchmarks.tasks.retrieval:Retrieval",
    "language_model": "benchmarks.tasks.language_model:LanguageModel",
    "audio": "benchmarks.tasks.audio:Audio",
    "rebias": "benchmarks.tasks.rebias:ReBias",
    "adversarial": "benchmarks.tasks.adversarial:Adversarial",
    "detection": "benchmarks.tasks.detection:Detection",
}


def get_task(name: str) -> type[Task]:
    """Return the Task class registered under `name`; unknown names list the registered ones."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASKS))}")
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["TASKS", "RunContext", "Task", "get_task"]
