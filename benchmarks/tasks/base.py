"""The Task contract: one class per task family, one file each; the training loop is shared.

A task owns its data, model, loss and evaluation. It does NOT own the optimizer, the schedule, mixed
precision, checkpointing or logging: the shared loop in ``benchmarks.training.loop`` does those, so every
optimizer is compared under identical training code.

Config sections a task reads (all keys fully resolved before the task sees them):

* ``data``:  ``Task.defaults["data"]``  (the ONLY source of defaults for those keys)
* ``model``: ``Task.defaults["model"]``
* ``train``: the loop's common keys (epochs, batch_size, seed, ...) plus ``Task.defaults["train"]``

Validation rejects any key not present in the defaults, so a task must list every key it reads there.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping

import torch


@dataclass
class RunContext:
    """What the shared loop hands to a task: where to write, which device, which seed, which rank."""

    run_dir: Path
    device: torch.device
    seed: int
    rank: int = 0
    world_size: int = 1
    log: Callable[[str], None] = print
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Task(abc.ABC):
    """Base class of every task family.

    Subclasses set the class attributes and implement the abstract methods. Batches may be any object;
    ``to_device`` moves tensors (also inside tuples, lists and dicts) to the run's device.
    """

    #: registry name used in YAML (``task: <name>``)
    name: ClassVar[str]
    #: one line for ``python -m benchmarks tasks``
    description: ClassVar[str] = ""
    #: defaults of the task-specific sections: {"data": {...}, "model": {...}, "train": {...}}
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {"data": {}, "model": {}, "train": {}}
    #: dotted-key overrides that make a run finish in seconds on a CPU (used by tests and ``--smoke``)
    smoke: ClassVar[Mapping[str, Any]] = {}
    #: final metrics and their direction ("max" or "min"); the first one is the task's primary metric
    metrics: ClassVar[Mapping[str, str]] = {}
    #: a VALIDATION metric (in ``metrics``, never ``test_*``) on which ``train.select: best`` chooses the reported
    #: evaluation; None when the task's held-out split is what it reports (then only ``select: last`` is valid)
    selection_metric: ClassVar[str | None] = None

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        self.config = config
        self.ctx = ctx

    # -- checks before launch (the engine calls both for every run of a sweep, also for --dry-run) -----
    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Static checks of a resolved config, without touching the disk: values the type check cannot judge
        (names, ranges, combinations). Raise ``ConfigError`` naming the dotted key and what is valid."""

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """Cheap on-disk checks: ``data.root`` and weight files exist and have the expected top-level files
        and folders (never read the data itself). Raise ``ConfigError`` naming the key, the path and what was
        expected."""

    # -- what every task implements -------------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module:
        """Return the model (on the CPU; the loop moves it to the device and sets the memory format)."""

    @abc.abstractmethod
    def train_batches(self, epoch: int) -> Iterable[Any]:
        """Yield the training batches of one epoch (deterministic given ``ctx.seed`` and ``epoch``)."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Return the scalar training loss and extra training metrics (tensors or floats, detached)."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Evaluate the model (already in eval mode, under no_grad) and return the metrics."""

    # -- optional hooks ------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int | None:
        """Number of batches per epoch if known up front (for progress bars and schedules)."""
        return None

    def optimizer_params(self, model: torch.nn.Module) -> Iterable[Any]:
        """Parameters (or param groups) handed to the optimizer; override to exclude frozen parts."""
        return [p for p in model.parameters() if p.requires_grad]

    def batch_size_of(self, batch: Any) -> int:
        """Number of samples in a batch, for throughput logging."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim > 0 else 1

    def to_device(self, batch: Any) -> Any:
        device = self.ctx.device
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    @classmethod
    def fill_derived(cls, config: dict[str, Any]) -> None:
        """Replace null defaults that stand for a value derived from other keys by that value, in a resolved
        config (so that the run id hashes what is computed)."""

    @classmethod
    def config_warnings(cls, config: Mapping[str, Any]) -> list[str]:
        """Settings of a resolved config that run but probably do not do what their author meant (printed
        before launch, one string each)."""
        return []

    @classmethod
    def primary_metric(cls) -> tuple[str, str]:
        name, mode = next(iter(cls.metrics.items()))
        return name, mode
