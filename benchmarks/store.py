"""The results store: one folder per run, written so that many processes can share one OUT folder.

```
OUT/runs/<run_id>/record.json     config, status, metrics, timing, env, error (atomic: temp file + os.replace)
OUT/runs/<run_id>/history.jsonl   one JSON object per logged point, appended and flushed line by line
OUT/runs/<run_id>/traceback.txt   failed runs only
OUT/sweeps/<sweep_id>.json        manifest of one launch
```

Concurrency: a run folder is written by the one process that holds its lock (:class:`RunLock`, an
``flock`` that the OS drops when the process dies, so a killed run never leaves a stale lock); every
``record.json``/manifest is replaced atomically; readers never see a half-written file. ``load_results``
turns the records into one pandas row per run, ``load_history`` the histories into a long-form frame.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from benchmarks.atomic import write_text_atomic

RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
RECORD = "record.json"
HISTORY = "history.jsonl"
TRACEBACK = "traceback.txt"
LOCK = ".lock"

#: every status a record can have; ``interrupted``: stopped by Ctrl-C or a preemption (rerun resumes it)
STATUSES = ("queued", "running", "done", "diverged", "failed", "interrupted")
#: statuses a rerun skips (``failed`` too, unless --retry-failed)
FINISHED = ("done", "diverged")

#: history.jsonl keys that are coordinates, not metrics
HISTORY_KEYS = ("step", "epoch", "split")


def runs_root(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / RUNS_DIR


def run_path(out_dir: str | os.PathLike, run_id: str) -> Path:
    """Folder of one run inside a sweep's OUT folder."""
    return Path(out_dir) / RUNS_DIR / run_id


def write_json_atomic(path: str | os.PathLike, obj: Any, *, fsync: bool = True) -> None:
    """Write JSON to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=True, default=str) + "\n", fsync=fsync)


def read_json(path: str | os.PathLike) -> dict | None:
    """Read a JSON object; None when missing or unreadable (a reader must never crash on a bad file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The record.json of a run folder, or None."""
    return read_json(Path(run_dir) / RECORD)


def write_record(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Atomically (re)write a run's record.json."""
    write_json_atomic(Path(run_dir) / RECORD, dict(record))


def list_run_ids(out_dir: str | os.PathLike) -> list[str]:
    """Run ids with a folder under OUT/runs (sorted)."""
    root = runs_root(out_dir)
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def run_statuses(out_dir: str | os.PathLike, run_ids: Iterable[str] | None = None) -> dict[str, str]:
    """run id -> status for the runs that have a record (runs without one are absent)."""
    root = runs_root(out_dir)
    ids = list_run_ids(out_dir) if run_ids is None else run_ids
    if run_ids is not None:
        existing = set(list_run_ids(out_dir))
        ids = [r for r in ids if r in existing]
    out = {}
    root = str(root)
    for run_id in ids:
        record = read_json(os.path.join(root, run_id, RECORD))
        if record is not None:
            out[run_id] = str(record.get("status", "queued"))
    return out


class RunLock:
    """Exclusive, non-blocking lock of one run folder (``flock``; released by the OS if the holder dies)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the checkout the code runs from (None outside git, without git, or before any commit)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def device_name(device: str | None) -> str:
    """Human name of the device a run used (GPU model, or the CPU's architecture and core count)."""
    if device and device.startswith("cuda"):
        try:
            import torch

            return torch.cuda.get_device_name(torch.device(device))
        except Exception:  # noqa: BLE001 - a record must still be written
            return device
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def collect_env(device: str | None = None) -> dict[str, Any]:
    """torch version, python, device name, git commit, host, and which kernels ``fused=True`` used when the
    run chose them through ``ADAMP_FUSED_BACKEND`` (timings depend on it)."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    return {
        "torch": torch_version,
        "python": sys.version.split()[0],
        "device": device_name(device),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "adamp_fused_backend": os.environ.get("ADAMP_FUSED_BACKEND"),
    }


# -- manifests ----------------------------------------------------------------------------------------

def write_manifest(out_dir: str | os.PathLike, sweep_id: str, manifest: Mapping[str, Any]) -> Path:
    """Atomically write OUT/sweeps/<sweep_id>.json."""
    path = Path(out_dir) / SWEEPS_DIR / f"{sweep_id}.json"
    write_json_atomic(path, dict(manifest))
    return path


def list_manifests(out_dir: str | os.PathLike) -> list[dict]:
    """All sweep manifests of an OUT folder, oldest first."""
    root = Path(out_dir) / SWEEPS_DIR
    out = []
    for path in sorted(root.glob("*.json")):
        data = read_json(path)
        if data is not None:
            out.append(data)
    return out


# -- loading into pandas ------------------------------------------------------------------------------

def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in obj.items():
        cls = type(value)
        if cls is dict and value:
            _flatten(value, f"{prefix}{key}.", out)
        elif cls is list:
            out[f"{prefix}{key}"] = tuple(value)  # hashable, so groupby/unique work on e.g. optimizer.betas
        else:
            out[f"{prefix}{key}"] = value


def flatten_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One results row: run_id, status, config as dotted columns, metrics.*, metric_modes.* (direction of
    each metric as its task declares it), primary_metric, selection.* (which evaluation was reported),
    timing.*, env.*, error."""
    row: dict[str, Any] = {"run_id": record.get("run_id"), "status": record.get("status")}
    _flatten(record.get("config") or {}, "", row)
    _flatten(record.get("metrics") or {}, "metrics.", row)
    _flatten(record.get("metric_modes") or {}, "metric_modes.", row)
    if record.get("primary_metric"):
        row["primary_metric"] = record["primary_metric"]
    _flatten(record.get("selection") or {}, "selection.", row)
    _flatten(record.get("timing") or {}, "timing.", row)
    _flatten(record.get("env") or {}, "env.", row)
    row["error"] = record.get("error")
    return row


def load_records(out_dir: str | os.PathLike) -> list[dict]:
    """Every readable record.json under OUT/runs."""
    root = str(runs_root(out_dir))
    out = []
    for run_id in list_run_ids(out_dir):
        record = read_json(os.path.join(root, run_id, RECORD))
        if record is not None:
            record.setdefault("run_id", run_id)
            out.append(record)
    return out


def _outs(out_dir: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(out_dir, (str, os.PathLike)):
        return [Path(out_dir)]
    return [Path(p) for p in out_dir]


def load_results(out_dir: str | os.PathLike | Iterable[str | os.PathLike]):
    """One row per run of one or several OUT folders (see :func:`flatten_record` for the columns)."""
    import pandas as pd

    rows = [flatten_record(r) for out in _outs(out_dir) for r in load_records(out)]
    if not rows:
        return pd.DataFrame(columns=["run_id", "status"])
    frame = pd.DataFrame.from_records(rows)
    first = ["run_id", "status", "task"]
    groups = ("data.", "model.", "optimizer.", "train.")
    ordered = [c for c in first if c in frame.columns]
    for g in groups:
        ordered += [c for c in frame.columns if c.startswith(g)]
    tail_prefix = ("metrics.", "timing.", "env.")
    ordered += [c for c in frame.columns if c not in ordered and not c.startswith(tail_prefix) and c != "error"]
    for g in tail_prefix:
        ordered += [c for c in frame.columns if c.startswith(g)]
    ordered.append("error")
    return frame[ordered]


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The parsed lines of a run's history.jsonl; a torn last line (a run still writing) is skipped."""
    out = []
    try:
        with open(Path(run_dir) / HISTORY, encoding="utf-8") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(item, dict):
                    out.append(item)
    except FileNotFoundError:
        pass
    return out


def load_history(out_dir: str | os.PathLike | Iterable[str | os.PathLike], run_ids: Iterable[str] | None = None):
    """Long-form history of every run: columns ``run_id, step, epoch, split, metric, value``."""
    import pandas as pd

    wanted = set(run_ids) if run_ids is not None else None
    cols: dict[str, list] = {"run_id": [], "step": [], "epoch": [], "split": [], "metric": [], "value": []}
    for out in _outs(out_dir):
        root = runs_root(out)
        for run_id in list_run_ids(out):
            if wanted is not None and run_id not in wanted:
                continue
            for item in read_history(root / run_id):
                step, epoch, split = item.get("step"), item.get("epoch"), item.get("split")
                for key, value in item.items():
                    if key in HISTORY_KEYS or isinstance(value, (str, list, dict)) or value is None:
                        continue
                    cols["run_id"].append(run_id)
                    cols["step"].append(step)
                    cols["epoch"].append(epoch)
                    cols["split"].append(split)
                    cols["metric"].append(key)
                    cols["value"].append(float(value))
    return pd.DataFrame(cols)


__all__ = [
    "FINISHED",
    "STATUSES",
    "RunLock",
    "collect_env",
    "flatten_record",
    "git_commit",
    "list_manifests",
    "list_run_ids",
    "load_history",
    "load_records",
    "load_results",
    "read_history",
    "read_json",
    "read_record",
    "run_path",
    "run_statuses",
    "write_json_atomic",
    "write_manifest",
    "write_record",
]
