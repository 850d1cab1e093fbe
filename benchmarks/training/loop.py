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
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from benchmarks.training.history import (
    History,
    progress_enabled,
    progress_line,
    read_history,
    truncate_history,
    verify_history_for_resume,
)
from benchmarks.training.keys import SCHEDULE_COMMON, SCHEDULES, lr_factor
from benchmarks.training.selection import Selection
from benchmarks.training.setup import distributed_setup, resolve_task_class, seed_everything, select_device

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


# -- the loop -----------------------------------------------------------------------------------------

def train(config: Mapping[str, Any], run_dir: Path, ctx_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train one run described by a *resolved* config; write history.jsonl (and checkpoints) into run_dir.

    Returns ``{"status": "done"|"diverged", "metrics": {...}, "steps", "epochs", "train_time_s",
    "step_time_s", "eval_time_s", "samples_per_s", "error": str|None, "resumed_from_step": int|None,
    "rank": int, "selection", "primary_metric", "metric_modes"}``. Final metrics are those of the evaluation
    chosen by ``train.select`` (see :class:`benchmarks.training.selection.Selection`) plus ``train_loss``
    (mean over the last logging window); ``metric_modes`` gives the direction of each reported metric from
    the task's declaration.
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

    rank, world, local_rank = distributed_setup()
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
        state = verify_history_for_resume(history_path, state, world)
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
    history = History(history_path, enabled=is_main, lines=history_lines, logger=tcfg.get("logger", "none"),
                       resume_step=resumed_from)

    # The reported evaluation (last, or best on the validation selection metric) is rebuilt from history, so
    # a resumed run reports the same values as an uninterrupted one.
    selector = Selection(task_cls, tcfg.get("select", "last"))
    last_val_step = -1
    for line in read_history(history_path) if resumed_from is not None else []:
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
    "RunPreempted",
    "checkpoint_requested",
    "clear_checkpoint_request",
    "request_checkpoint",
    "train",
]
