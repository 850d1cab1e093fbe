"""The shared training loop: every task and every optimizer is trained by exactly this code.

``train(config, run_dir)`` seeds everything, builds the task, the model (moved to the device, optionally
channels-last, wrapped in DistributedDataParallel when several processes run), the optimizer (through
:func:`benchmarks.registry.build_optimizer`) and a per-step LR schedule, then trains with optional mixed
precision and gradient clipping, evaluates every ``eval_every`` epochs, logs to ``history.jsonl``,
checkpoints and resumes. It returns the final metrics and timings; writing ``record.json`` is the caller's
job (:func:`benchmarks.engine.spec.execute_run`).

Divergence (a NaN/inf training loss) stops the run early with status ``"diverged"``. The check happens at
every logging point (``train.log_every`` steps) and at the end of each epoch, because looking at the loss
every step would force a device synchronisation per step and distort the step times being compared.

Preemption: :func:`request_checkpoint` (safe to call from a signal handler) makes the loop write a
checkpoint after the current step and raise :class:`RunPreempted`; a rerun of the same run resumes from it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

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

# -- preemption ---------------------------------------------------------------------------------------

_CHECKPOINT_REQUESTED = threading.Event()


class RunPreempted(BaseException):
    """Raised by the loop after it wrote the checkpoint asked for by :func:`request_checkpoint`.

    A BaseException (like KeyboardInterrupt) so that task code catching ``Exception`` cannot swallow it and
    the run is recorded as interrupted, not failed.
    """


def request_checkpoint() -> None:
    """Ask the running loop to checkpoint after the current step and stop (safe in a signal handler)."""
    _CHECKPOINT_REQUESTED.set()


def checkpoint_requested() -> bool:
    """Whether a checkpoint request is pending."""
    return _CHECKPOINT_REQUESTED.is_set()


def clear_checkpoint_request() -> None:
    """Drop a pending request (after it was served, or in tests)."""
    _CHECKPOINT_REQUESTED.clear()


# -- helpers ------------------------------------------------------------------------------------------

def resolve_task_class(name: str):
    """Task class for ``task:``: a registered name (benchmarks.tasks.get_task) or ``package.module:Class``."""
    from benchmarks.tasks import get_task

    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    return get_task(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (the process's local GPU under DDP), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={name!r} but CUDA is not available on {os.uname().nodename}")
        if device.index is None:
            device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    return device


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


def progress_enabled(is_main: bool) -> bool:
    """Per-run progress bars: only on a terminal, on the main rank, and unless BENCHMARKS_NO_PROGRESS=1."""
    return is_main and os.environ.get("BENCHMARKS_NO_PROGRESS", "0") != "1" and sys.stderr.isatty()


def _distributed_setup() -> tuple[int, int, int]:
    """Initialise torch.distributed when several processes run this job; return (rank, world, local_rank)."""
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 \
            and "SUBMITIT_EXECUTOR" in os.environ:
        try:  # a submitit job with several tasks: let submitit export MASTER_ADDR/RANK/WORLD_SIZE
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        except Exception:  # noqa: BLE001 - fall back to a single process rather than fail the run
            pass
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return rank, world, local_rank


def current_rank() -> int:
    """Global rank of this process (0 without distributed training)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


class _History:
    """Appends one JSON object per line to history.jsonl, flushed after every line (rank 0 only), and
    mirrors every line to the optional ``train.logger`` (CSV or TensorBoard). :meth:`sync` makes the lines
    durable (fsync); the loop calls it before each checkpoint, whose ``history_lines`` counts them."""

    def __init__(self, path: Path, enabled: bool, lines: int = 0, logger: str = "none",
                 resume_step: int | None = None):
        self.path = path
        self.enabled = enabled
        self.lines = lines
        self._fh = open(path, "a", encoding="utf-8") if enabled else None
        self._sink = _make_sink(logger, path, resume_step) if enabled else None

    def write(self, record: Mapping[str, Any]) -> None:
        if self._fh is None:
            return
        item = _jsonable(record)
        self._fh.write(json.dumps(item, allow_nan=True) + "\n")
        self._fh.flush()
        self.lines += 1
        if self._sink is not None:
            self._sink.write(item)

    def sync(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        if self._sink is not None:
            self._sink.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None


def _metric_items(item: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for key, value in item.items():
        if key in ("step", "epoch", "split") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        yield key, float(value)


class _CsvSink:
    """``metrics.csv`` in long form (step, epoch, split, metric, value), rebuilt from history.jsonl when a
    run resumes, so that it never holds the lines of an attempt that was cut off after its checkpoint."""

    FIELDS = ("step", "epoch", "split", "metric", "value")

    def __init__(self, history_path: Path):
        import csv

        self.path = history_path.with_name("metrics.csv")
        self._fh = open(self.path, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(self.FIELDS)
        for item in _read_history(history_path):
            self.write(item)
        self._fh.flush()

    def write(self, item: Mapping[str, Any]) -> None:
        for key, value in _metric_items(item):
            self._csv.writerow((item.get("step"), item.get("epoch"), item.get("split"), key, repr(value)))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class _TensorBoardSink:
    """TensorBoard event files in ``tensorboard/`` (tags ``<split>/<metric>``, x axis: optimizer steps).
    A resumed run purges the events after its checkpoint's step, as TensorBoard's ``purge_step`` does."""

    def __init__(self, history_path: Path, resume_step: int | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError("train.logger: tensorboard needs the `tensorboard` package (pip install "
                               "tensorboard==2.21.0, as in requirements.txt), or use train.logger: csv") from exc
        purge = resume_step + 1 if resume_step is not None else None
        self._writer = SummaryWriter(log_dir=str(history_path.with_name("tensorboard")), purge_step=purge)

    def write(self, item: Mapping[str, Any]) -> None:
        step = item.get("step")
        for key, value in _metric_items(item):
            self._writer.add_scalar(f"{item.get('split')}/{key}", value, global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _make_sink(logger: str, history_path: Path, resume_step: int | None):
    if logger in (None, "none"):
        return None
    if logger == "csv":
        return _CsvSink(history_path)
    if logger == "tensorboard":
        return _TensorBoardSink(history_path, resume_step)
    raise ValueError(f"unknown train.logger {logger!r}; known: {', '.join(LOOP_CHOICES['logger'])}")


def _format_duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def progress_line(step: int, total_steps: int | None, epoch: float, loss: float, samples_per_s: float,
                  seconds_per_step: float | None) -> str:
    """The line a run logs every ``train.log_every`` steps: time, step, epoch, loss, throughput, ETA."""
    where = f"step {step}/{total_steps} ({100.0 * step / total_steps:.0f}%)" if total_steps else f"step {step}"
    eta = ""
    if total_steps and seconds_per_step:
        eta = f" ETA {_format_duration((total_steps - step) * seconds_per_step)}"
    return (f"[{time.strftime('%H:%M:%S')}] {where} epoch {epoch:.2f} loss {loss:.4g} "
            f"{samples_per_s:.1f} samples/s{eta}")


def history_problem(path: Path, lines: int) -> str | None:
    """Why history.jsonl cannot back a checkpoint that counted ``lines`` lines (fewer intact lines: lines
    lost or cut), or None. A resumed run rebuilds its final metrics from these lines."""
    intact = 0
    if lines <= 0:
        return None
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if intact >= lines:
                    break
                if not raw.endswith(b"\n"):
                    break
                try:
                    item = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break
                if not isinstance(item, dict):
                    break
                intact += 1
    except FileNotFoundError:
        pass
    if intact >= lines:
        return None
    return f"{path.name} has {intact} intact lines before the first missing or broken one, the checkpoint counted {lines}"


def _jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 else value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def truncate_history(path: Path, lines: int) -> None:
    """Keep only the first ``lines`` lines of history.jsonl (what a checkpoint had seen), atomically."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        kept = fh.readlines()[:lines]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.writelines(kept)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _verify_history_for_resume(history_path: Path, state: dict, world: int) -> dict | None:
    """The checkpoint to resume from, or None (start over) when history.jsonl lost lines the checkpoint
    counted: resuming would finish the run with a silently incomplete history and wrong final metrics."""
    problem = history_problem(history_path, int(state.get("history_lines", 0)))
    if problem is None:
        return state
    message = (f"cannot resume from the checkpoint at step {state.get('step')}: {problem} (lines were lost "
               f"after it was written)")
    if world > 1:
        raise RuntimeError(message + "; delete the run folder's checkpoint*.pt files to start the run over")
    print(f"warning: {message}; starting the run over from step 0", file=sys.stderr, flush=True)
    return None


def _read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


def _float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean().item())
    return float(value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _channels_last(batch: Any) -> Any:
    """4-D floating tensors of a batch in channels-last layout (matching a channels-last model)."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 and batch.is_floating_point() else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(_channels_last(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _channels_last(v) for k, v in batch.items()}
    return batch


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(
        model, torch.nn.parallel.DistributedDataParallel) else model


def _checkpoint_module():
    return importlib.import_module("benchmarks.training.checkpoint")


def _diagnostics_collect() -> Callable[[torch.nn.Module, Any], dict[str, float]]:
    return importlib.import_module("benchmarks.training.diagnostics").collect


class _Window:
    """Sums over the steps since the last train log line (loss, extra metrics, samples, time).

    Sums stay on the device between log points (no sync per step). ``state()``/the constructor carry an open
    window across a checkpoint; the wall time before the checkpoint is kept as ``carried`` seconds.
    """

    def __init__(self, device: torch.device, state: Mapping[str, Any] | None = None):
        self.device = device
        self.reset()
        if state:
            self.loss = torch.as_tensor(state["loss"], dtype=torch.float32).to(device)
            self.extra = {k: (torch.as_tensor(v).to(device) if isinstance(v, torch.Tensor) else float(v))
                          for k, v in state["extra"].items()}
            self.steps = int(state["steps"])
            self.samples = int(state["samples"])
            self.carried = float(state["elapsed"])
            self.counted = self.carried  # the checkpoint's train time already includes it
            self.resume_clock()

    def reset(self) -> None:
        self.loss = torch.zeros((), device=self.device)
        self.extra: dict[str, Any] = {}
        self.steps = 0
        self.samples = 0
        self.carried = 0.0  # seconds of this window spent before a resume
        self.counted = 0.0  # seconds of this window already added to the run's train time
        self.t0 = time.perf_counter()

    def resume_clock(self) -> None:
        """Continue timing from now, leaving out the time since the last count (evaluation, checkpointing)."""
        self.t0 = time.perf_counter() - (self.counted - self.carried)

    def elapsed(self) -> float:
        return self.carried + time.perf_counter() - self.t0

    def add(self, loss: torch.Tensor, extra: Mapping[str, Any] | None, samples: int) -> None:
        self.loss += loss.detach().float()
        for key, value in (extra or {}).items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
            self.extra[key] = self.extra.get(key, 0.0) + value
        self.steps += 1
        self.samples += samples

    def state(self) -> dict[str, Any]:
        return {
            "loss": self.loss.detach().cpu(),
            "extra": {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else float(v)) for k, v in self.extra.items()},
            "steps": self.steps,
            "samples": self.samples,
            "elapsed": self.elapsed(),
        }


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


class _Selection:
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


# -- the loop -----------------------------------------------------------------------------------------

def train(config: Mapping[str, Any], run_dir: Path, ctx_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train one run described by a *resolved* config; write history.jsonl (and checkpoints) into run_dir.

    Returns ``{"status": "done"|"diverged", "metrics": {...}, "steps", "epochs", "train_time_s",
    "step_time_s", "eval_time_s", "samples_per_s", "error": str|None, "resumed_from_step": int|None,
    "rank": int, "selection", "primary_metric", "metric_modes"}``. Final metrics are those of the evaluation
    chosen by ``train.select`` (see :class:`_Selection`) plus ``train_loss`` (mean over the last logging
    window); ``metric_modes`` gives the direction of each reported metric from the task's declaration.
    """
    from benchmarks.registry import build_optimizer
    from benchmarks.tasks.base import RunContext

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg = config["train"]
    previous_threads = torch.get_num_threads()
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg["num_threads"]))
    deterministic = bool(tcfg.get("deterministic", False))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic

    rank, world, local_rank = _distributed_setup()
    is_main = rank == 0
    device = select_device(tcfg["device"], local_rank)
    seed = int(tcfg["seed"])
    seed_everything(seed)

    task_cls = resolve_task_class(config["task"])
    ctx = RunContext(run_dir=run_dir, device=device, seed=seed, rank=rank, world_size=world,
                     log=print if is_main else (lambda *_a, **_k: None), extra=dict(ctx_extra or {}))
    task = task_cls(config, ctx)
    model = task.build_model().to(device)
    channels_last = bool(tcfg.get("channels_last"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config["optimizer"], task.optimizer_params(model))
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    epochs = int(tcfg["epochs"])
    max_steps = tcfg.get("max_steps")
    steps_per_epoch = task.steps_per_epoch()
    schedule = {**SCHEDULE_COMMON, **(tcfg.get("schedule") or {})}
    if schedule["name"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule['name']!r}; known: {', '.join(SCHEDULES)}")
    schedule = {**SCHEDULES[schedule["name"]], **schedule}
    total_epochs = float(epochs)
    if max_steps and steps_per_epoch:
        total_epochs = min(total_epochs, max_steps / steps_per_epoch)
    warmup_steps = float(schedule["warmup_epochs"]) * (steps_per_epoch or 1)
    progress_state = {"epoch": 0.0}

    def factor(step: int) -> float:
        epoch_f = step / steps_per_epoch if steps_per_epoch else progress_state["epoch"]
        return lr_factor(schedule, epoch_f, total_epochs, warmup_steps, step)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    precision = tcfg.get("precision", "fp32")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    grad_clip = tcfg.get("grad_clip")
    log_every = int(tcfg.get("log_every") or 10)
    eval_every = int(tcfg.get("eval_every") or 1)
    diagnostics = tcfg.get("diagnostics", "off")
    collect = _diagnostics_collect() if diagnostics != "off" else None
    ckpt_steps = tcfg.get("checkpoint_every_steps")
    ckpt_minutes = tcfg.get("checkpoint_every_minutes")
    checkpointing = bool(ckpt_steps or ckpt_minutes)

    history_path = run_dir / "history.jsonl"
    step = 0
    start_epoch = 0
    skip_batches = 0
    rng_to_restore = None
    resumed_from = None
    history_lines = 0
    ckpt_mod = None
    try:
        ckpt_mod = _checkpoint_module()
    except ImportError:
        if checkpointing:
            raise
    state = ckpt_mod.load_latest_checkpoint(run_dir) if ckpt_mod is not None else None
    if state is not None and is_main:
        state = _verify_history_for_resume(history_path, state, world)
    if state is not None:
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        start_epoch = int(state["epoch"])
        skip_batches = int(state["batch_in_epoch"])
        rng_to_restore = state.get("rng")
        history_lines = int(state.get("history_lines", 0))
        resumed_from = step
        if is_main:
            truncate_history(history_path, history_lines)
    elif is_main and history_path.exists():
        history_path.unlink()  # a fresh start must not append to the history of an earlier attempt
    history = _History(history_path, enabled=is_main, lines=history_lines, logger=tcfg.get("logger", "none"),
                       resume_step=resumed_from)

    # The reported evaluation (last, or best on the validation selection metric) is rebuilt from history, so
    # a resumed run reports the same values as an uninterrupted one.
    selector = _Selection(task_cls, tcfg.get("select", "last"))
    last_val_step = -1
    for line in _read_history(history_path) if resumed_from is not None else []:
        if line.get("split") == "val":
            last_val_step = int(line.get("step", -1))
            selector.consider({k: v for k, v in line.items() if k not in ("step", "epoch", "split")},
                              last_val_step, line.get("epoch"))

    total_steps = None
    if steps_per_epoch:
        total_steps = epochs * steps_per_epoch
    if max_steps:
        total_steps = min(total_steps, max_steps) if total_steps else max_steps
    bar = None
    if progress_enabled(is_main):
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=run_dir.name, unit="step", leave=False, dynamic_ncols=True)

    train_time = float(state.get("train_time_s", 0.0)) if state else 0.0
    eval_time = 0.0
    session_steps = 0
    session_train_time = 0.0
    samples_total = 0
    status = "done"
    error = None
    last_train_loss: float | None = state.get("last_train_loss") if state else None
    last_ckpt_time = time.monotonic()
    stop = bool(max_steps and step >= max_steps)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    # The open logging window (sums since the last train log line) is part of the checkpoint, so that a
    # resumed run writes exactly the lines an uninterrupted one would.
    window = _Window(device, state.get("window") if state else None)

    def epoch_progress(epoch: int, index: int) -> float:
        return epoch + index / steps_per_epoch if steps_per_epoch else float(epoch)

    def save(epoch: int, batch_in_epoch: int) -> None:
        if not is_main:
            return
        if ckpt_mod is None:
            raise RuntimeError("checkpointing needs benchmarks.training.checkpoint, which cannot be imported")
        history.sync()  # the checkpoint counts these lines: they must be on disk before it is
        ckpt_mod.save_checkpoint(run_dir, {
            "model": _unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": ckpt_mod.capture_rng_state(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "history_lines": history.lines,
            "train_time_s": train_time,
            "window": window.state(),
            "last_train_loss": last_train_loss,
        })

    def log_train(epoch_f: float) -> float:
        """Write the train line of the open window; return its mean loss."""
        nonlocal train_time, session_train_time, last_train_loss
        _sync(device)
        elapsed = window.elapsed()
        train_time += elapsed - window.counted
        session_train_time += elapsed - window.counted
        mean_loss = float(window.loss.item()) / window.steps
        last_train_loss = mean_loss
        samples_per_s = window.samples / elapsed if elapsed > 0 else float("nan")
        history.write({
            "step": step, "epoch": epoch_f, "split": "train", "loss": mean_loss,
            "lr": optimizer.param_groups[0]["lr"],
            "samples_per_s": samples_per_s,
            **{k: _float(v) / window.steps for k, v in window.extra.items()},
        })
        if is_main:
            line = progress_line(step, total_steps, epoch_f, mean_loss, samples_per_s,
                                 session_train_time / session_steps if session_steps else None)
            if bar is not None:
                bar.write(line)
            else:
                print(line, flush=True)
        if bar is not None:
            bar.set_postfix(loss=f"{mean_loss:.4g}", refresh=False)
        window.reset()
        return mean_loss

    def evaluate(epoch_done: int) -> dict[str, float]:
        nonlocal eval_time
        _sync(device)
        t0 = time.perf_counter()
        model.eval()
        with torch.no_grad(), autocast():
            metrics = {k: _float(v) for k, v in task.evaluate(_unwrap(model)).items()}
        model.train()
        _sync(device)
        eval_time += time.perf_counter() - t0
        history.write({"step": step, "epoch": epoch_done, "split": "val", **metrics})
        selector.consider(metrics, step, epoch_done)
        return metrics

    try:
        model.train()
        epoch = start_epoch
        evaluated_at_step = last_val_step
        while epoch < epochs and not stop:
            progress_state["epoch"] = float(epoch)
            batches: Iterator[Any] = iter(task.train_batches(epoch))
            index = 0
            if skip_batches:
                for _ in range(skip_batches):
                    if next(batches, None) is None:
                        break
                    index += 1
                skip_batches = 0
            if rng_to_restore is not None:
                ckpt_mod.restore_rng_state(rng_to_restore)
                rng_to_restore = None
            _sync(device)
            window.resume_clock()
            for batch in batches:
                index += 1
                batch = task.to_device(batch)
                if channels_last:
                    batch = _channels_last(batch)
                n = task.batch_size_of(batch)
                with autocast():
                    loss, extra = task.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
                # Diagnostics pair the gradient with the weight it was computed at, as AdamP's test does,
                # so they are taken before the update.
                diag = None
                if collect is not None and is_main and (
                        diagnostics == "step" or (diagnostics == "epoch" and index == steps_per_epoch)):
                    diag = collect(_unwrap(model), optimizer)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                session_steps += 1
                samples_total += n
                window.add(loss, extra, n)
                if diag is not None:
                    history.write({"step": step, "epoch": epoch_progress(epoch, index), "split": "diag", **diag})
                if bar is not None:
                    bar.update(1)
                at_end = bool(max_steps and step >= max_steps)
                if step % log_every == 0 or at_end:
                    mean_loss = log_train(epoch_progress(epoch, index))
                    if not math.isfinite(mean_loss):
                        status, error = "diverged", f"non-finite training loss ({mean_loss}) at step {step}"
                        stop = True
                        break
                requested = _CHECKPOINT_REQUESTED.is_set()
                due = (ckpt_steps and step % int(ckpt_steps) == 0) or (
                    ckpt_minutes and time.monotonic() - last_ckpt_time >= float(ckpt_minutes) * 60)
                if requested or due:
                    _sync(device)
                    elapsed = window.elapsed()
                    train_time += elapsed - window.counted
                    session_train_time += elapsed - window.counted
                    window.counted = elapsed  # time already added to train_time (not to be added twice)
                    save(epoch, index)
                    last_ckpt_time = time.monotonic()
                    window.resume_clock()
                    if requested:
                        _CHECKPOINT_REQUESTED.clear()
                        raise RunPreempted(f"checkpoint written at step {step}; stopping as requested")
                if at_end:
                    stop = True
                    break
            else:
                if steps_per_epoch is None:
                    progress_state["epoch"] = float(epoch + 1)
            if status == "diverged":
                break
            if window.steps:  # the tail of the epoch after the last log point
                mean_loss = log_train(epoch_progress(epoch, index) if stop else float(epoch + 1))
                if not math.isfinite(mean_loss):
                    status, error = "diverged", f"non-finite training loss ({mean_loss}) at step {step}"
                    break
            last_epoch = epoch + 1 >= epochs or stop
            if (epoch + 1) % eval_every == 0 or last_epoch:
                evaluate(epoch + 1)
                evaluated_at_step = step
            if collect is not None and diagnostics == "epoch" and is_main and steps_per_epoch is None:
                # epoch length unknown up front: the gradient of the epoch's last step is still in .grad
                history.write({"step": step, "epoch": epoch + 1, "split": "diag", **collect(_unwrap(model), optimizer)})
            epoch += 1
        if status == "done" and evaluated_at_step != step:
            # Only reachable on a resume from a checkpoint written at the run's last step (a preemption
            # there comes before the final evaluation): evaluate as the uninterrupted run did at the end
            # of the epoch it stopped in, instead of reporting an older evaluation as final.
            epoch += 1
            evaluate(epoch)
    finally:
        history.close()
        if bar is not None:
            bar.close()
        torch.set_num_threads(previous_threads)

    metrics = selector.reported()
    if last_train_loss is not None:
        metrics["train_loss"] = last_train_loss
    return {
        "status": status,
        "error": error,
        "metrics": metrics,
        "steps": step,
        "epochs": epoch,
        "train_time_s": train_time,
        "step_time_s": session_train_time / session_steps if session_steps else None,
        "eval_time_s": eval_time,
        "samples_per_s": samples_total / session_train_time if session_train_time > 0 else None,
        "resumed_from_step": resumed_from,
        "rank": rank,
        "world_size": world,
        "device": str(device),
        "selection": selector.describe(),
        "primary_metric": next(iter(selector.modes), None),
        "metric_modes": selector.metric_modes(metrics),
    }


__all__ = [
    "LOOP_CHOICES",
    "LOOP_DEFAULTS",
    "LOOP_MINIMUM",
    "LOOP_TYPES",
    "SCHEDULES",
    "SCHEDULE_COMMON",
    "RunPreempted",
    "checkpoint_requested",
    "clear_checkpoint_request",
    "current_rank",
    "lr_factor",
    "check_selection",
    "request_checkpoint",
    "resolve_task_class",
    "seed_everything",
    "train",
]
