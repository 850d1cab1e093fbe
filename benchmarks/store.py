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

import errno
import fcntl
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from benchmarks.atomic import write_text_atomic

RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
RECORD = "record.json"
HISTORY = "history.jsonl"
TRACEBACK = "traceback.txt"
LOCK = ".lock"

#: every status a record can have; ``interrupted``: stopped by Ctrl-C, SIGTERM, a preemption, a dead worker or
#: a full disk (a rerun resumes it). ``status``/``results`` also show ``unreadable`` (a record.json that cannot
#: be parsed; a rerun rewrites it) and ``running`` runs whose lock is gone as ``interrupted``.
STATUSES = ("queued", "running", "done", "diverged", "failed", "interrupted")
#: pseudo-status of a run folder whose record.json exists but cannot be read
UNREADABLE = "unreadable"

#: errnos that mean "the file system is full" (no space, or the user's quota)
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class OutOfSpace(OSError):
    """The results folder's file system is full: the runs concerned are recorded ``interrupted`` (when the
    record can still be written) and a rerun after freeing space resumes them."""


def out_of_space(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind ``exc`` (itself, or in its cause/context chain), or None.

    torch's checkpoint writer reports a failed write as a RuntimeError ("unexpected pos ..."); the
    checkpoint module attaches the OSError behind it as the cause, so it is found here too."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def describe_out_of_space(exc: BaseException) -> str:
    """One line: ``no space left on device (writing PATH)``."""
    err = out_of_space(exc) or exc
    where = getattr(err, "filename", None)
    reason = os.strerror(err.errno).lower() if isinstance(err, OSError) and err.errno else "no space left on device"
    return f"{reason}" + (f" (writing {where})" if where else "")
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
    return read_json_checked(path)[0]


def read_json_checked(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """``(object, None)``, ``(None, None)`` when the file is missing, ``(None, why)`` when it is unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc.strerror or exc}"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not an object"
    return data, None


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
    """run id -> status for the runs that have a readable record (runs without one are absent, so that a
    rerun runs them again and rewrites an unreadable record)."""
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

    def acquire(self, attempts: int = 3) -> bool:
        """Take the lock; False when another live process holds it. A lock held only for an instant by
        :meth:`is_held` (``status`` probing it) is retried ``attempts`` times, 20 ms apart."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(max(1, attempts)):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt + 1 >= max(1, attempts):
                    os.close(fd)
                    return False
                time.sleep(0.02)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        except OSError:  # a full disk: the lock itself still holds (the content is informative only)
            pass
        self._fd = fd
        return True

    def is_held(self) -> bool:
        """Whether a live process holds the lock (probed with a shared, non-blocking flock, released at
        once). A run whose record says ``running`` but whose lock is free was killed hard."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: do not call a possibly live run stale
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

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


def remove_leftover_tmp(run_dir: str | os.PathLike) -> list[str]:
    """Delete the temporary files of atomic writes (``.<name>.*.tmp``, ``.checkpoint-*.tmp``) in a run folder.

    Only the holder of the run's lock writes in its folder, so under the lock every such file was left by a
    writer that died (killed while writing a checkpoint or a record). Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(run_dir))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(entry.name)
            except FileNotFoundError:
                pass
    return removed


def unreadable_record(run_id: str, path: str | os.PathLike, reason: str) -> dict:
    """The stand-in record of a run whose record.json cannot be read: status ``unreadable``, the file named."""
    return {"run_id": run_id, "status": UNREADABLE, "config": {}, "metrics": {}, "timing": {}, "env": {},
            "error": f"unreadable {path}: {reason}; a rerun of the sweep runs it again and rewrites it"}


def load_records(out_dir: str | os.PathLike, *, unreadable: bool = False, warn: bool = True) -> list[dict]:
    """Every readable record.json under OUT/runs.

    An unreadable record.json (truncated, not JSON, not UTF-8) is never dropped silently: ``warn`` emits a
    warning naming the file, and ``unreadable=True`` includes it as a record with status ``unreadable``."""
    root = str(runs_root(out_dir))
    out = []
    for run_id in list_run_ids(out_dir):
        path = os.path.join(root, run_id, RECORD)
        record, problem = read_json_checked(path)
        if record is not None:
            record.setdefault("run_id", run_id)
            out.append(record)
        elif problem is not None:
            if warn:
                warnings.warn(f"unreadable run record {path}: {problem}", RuntimeWarning, stacklevel=2)
            if unreadable:
                out.append(unreadable_record(run_id, path, problem))
    return out


def _outs(out_dir: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(out_dir, (str, os.PathLike)):
        return [Path(out_dir)]
    return [Path(p) for p in out_dir]


def load_results(out_dir: str | os.PathLike | Iterable[str | os.PathLike]):
    """One row per run of one or several OUT folders (see :func:`flatten_record` for the columns).

    A record.json that cannot be read gives a warning naming the file and a row with status ``unreadable``."""
    import pandas as pd

    rows = [flatten_record(r) for out in _outs(out_dir) for r in load_records(out, unreadable=True)]
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
    "UNREADABLE",
    "OutOfSpace",
    "RunLock",
    "collect_env",
    "flatten_record",
    "git_commit",
    "list_manifests",
    "describe_out_of_space",
    "list_run_ids",
    "load_history",
    "load_records",
    "load_results",
    "read_history",
    "out_of_space",
    "read_json",
    "read_json_checked",
    "read_record",
    "remove_leftover_tmp",
    "run_path",
    "run_statuses",
    "write_json_atomic",
    "write_manifest",
    "write_record",
]
