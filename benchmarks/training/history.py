"""The run's log: history.jsonl (one JSON object per line), its CSV/TensorBoard mirrors, the progress line,
and the checks that let a resumed run trust the lines a checkpoint counted."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from benchmarks.training.keys import LOOP_CHOICES


def progress_enabled(is_main: bool) -> bool:
    """Per-run progress bars: only on a terminal, on the main rank, and unless BENCHMARKS_NO_PROGRESS=1."""
    return is_main and os.environ.get("BENCHMARKS_NO_PROGRESS", "0") != "1" and sys.stderr.isatty()


class History:
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
        for item in read_history(history_path):
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


def verify_history_for_resume(history_path: Path, state: dict, world: int) -> dict | None:
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


def read_history(path: Path) -> list[dict[str, Any]]:
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
