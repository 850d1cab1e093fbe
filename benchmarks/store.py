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
from benchmarks.safe_read import (MAX_HISTORY_LINE, MAX_MANIFEST_BYTES, MAX_RECORD_BYTES, describe, kind_of,
                                  open_regular, read_regular)

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


def read_json_checked(path: str | os.PathLike, max_bytes: int = MAX_RECORD_BYTES) -> tuple[dict | None, str | None]:
    """``(object, None)``, ``(None, None)`` when the file is missing, ``(None, why)`` when it is unreadable:
    not a regular file (a FIFO, a folder, a symlink loop), over ``max_bytes``, not UTF-8 JSON, or nested
    too deeply for the parser."""
    try:
        raw = read_regular(path, max_bytes)
    except (FileNotFoundError, NotADirectoryError):
        return (None, "is a broken symbolic link") if os.path.islink(path) else (None, None)
    except OSError as exc:
        return None, describe(exc)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except RecursionError:
        return None, "JSON nested too deeply to parse"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not an object"
    return data, None


#: deepest nesting a record may have (a real one has 4 levels: config.train.schedule.name)
MAX_RECORD_DEPTH = 24
_MAPPINGS = ("config", "metrics", "metric_modes", "selection", "timing", "env")
_TEXTS = ("run_id", "status", "error", "primary_metric")


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counted without recursion (so a deep one cannot overflow the stack)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, level + 1) for v in value)
    return deepest


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


def record_problem(record: Mapping[str, Any]) -> str | None:
    """Why a parsed record.json is not a record (None when it is one).

    Checks what every reader relies on: the sections are mappings, the texts are strings, ``config.train``
    is a mapping whose ``seed`` is an integer, ``metric_modes`` maps to "max"/"min", and the nesting is
    shallow. Values inside ``metrics`` and ``timing`` are left to the analysis, which names every run it
    leaves out (a metric that is not a number, non-finite, ...)."""
    if _depth(record, MAX_RECORD_DEPTH) > MAX_RECORD_DEPTH:
        return f"nested more than {MAX_RECORD_DEPTH} levels deep"
    for key in _MAPPINGS:
        if record.get(key) is not None and not isinstance(record[key], dict):
            return f"`{key}` is a {_type_name(record[key])}, not a mapping"
    for key in _TEXTS:
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"`{key}` is a {_type_name(record[key])}, not a string"
    config = record.get("config") or {}
    for key in ("task", "name"):
        if config.get(key) is not None and not isinstance(config[key], str):
            return f"`config.{key}` is a {_type_name(config[key])}, not a string"
    for key in ("data", "model", "optimizer", "train", "tags", "slurm"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            return f"`config.{key}` is a {_type_name(config[key])}, not a mapping"
    seed = (config.get("train") or {}).get("seed")
    if seed is not None and (type(seed) is not int):
        return f"`config.train.seed` is a {_type_name(seed)}, not an integer"
    attempt = record.get("attempt")
    if attempt is not None and type(attempt) is not int:
        return f"`attempt` is a {_type_name(attempt)}, not an integer"
    name = (config.get("optimizer") or {}).get("name")
    if name is not None and not isinstance(name, str):
        return f"`config.optimizer.name` is a {_type_name(name)}, not a string"
    for metric, mode in (record.get("metric_modes") or {}).items():
        if mode not in ("max", "min"):
            return f"`metric_modes.{metric}` is {str(mode)[:40]!r}, not \"max\" or \"min\""
    return None


def read_record_checked(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """:func:`read_json_checked` of a record.json, plus :func:`record_problem`: a file that parses but is not
    a record is unreadable too (a rerun rewrites it)."""
    record, problem = read_json_checked(path)
    if record is not None:
        problem = record_problem(record)
        if problem is not None:
            return None, problem
    return record, problem


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The record.json of a run folder, or None (missing or unreadable)."""
    return read_record_checked(Path(run_dir) / RECORD)[0]


def write_record(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Atomically (re)write a run's record.json."""
    write_json_atomic(Path(run_dir) / RECORD, dict(record))


def scan_runs(out_dir: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """``(run ids, problems)`` of OUT/runs: the ids of the entries that are folders (sorted), and
    ``(path, why)`` for every entry that is something else (a file, a FIFO, a broken link or a symlink loop)
    and for an OUT/runs that cannot be listed. Symlinks to folders count as runs; nothing is walked below."""
    root = runs_root(out_dir)
    try:
        with os.scandir(root) as it:
            entries = list(it)
    except FileNotFoundError:
        return [], []
    except OSError as exc:  # a file, a symlink loop, no permission
        kind = ""
        try:
            kind = kind_of(os.stat(root).st_mode)
        except OSError:
            pass
        why = f"is {kind}, not a folder of runs" if kind and kind != "a folder" else describe(exc)
        return [], [(str(root), why)]
    ids, problems = [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()  # follows a symlink; False for a broken one
        except OSError as exc:
            problems.append((entry.path, describe(exc)))
            continue
        if is_dir:
            ids.append(entry.name)
            continue
        try:
            why = f"is {kind_of(os.stat(entry.path).st_mode)}, not a run folder"
        except OSError as exc:
            why = describe(exc) if exc.errno != errno.ENOENT else "is a broken symbolic link, not a run folder"
        problems.append((entry.path, why))
    return sorted(ids), sorted(problems)


def list_run_ids(out_dir: str | os.PathLike) -> list[str]:
    """Run ids with a folder under OUT/runs (sorted); :func:`scan_runs` also names the other entries."""
    return scan_runs(out_dir)[0]


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
        record = read_record_checked(os.path.join(root, run_id, RECORD))[0]
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
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO in its place must not block
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


def list_manifests(out_dir: str | os.PathLike, problems: list[tuple[str, str]] | None = None) -> list[dict]:
    """All sweep manifests of an OUT folder, oldest first; an unreadable one is appended to ``problems`` as
    ``(path, why)`` (never silently dropped when the caller asks)."""
    root = Path(out_dir) / SWEEPS_DIR
    out = []
    try:
        with os.scandir(root) as it:
            names = sorted(e.name for e in it if e.name.endswith(".json") and not e.name.startswith("."))
    except FileNotFoundError:
        return out
    except OSError as exc:
        if problems is not None:
            problems.append((str(root), describe(exc)))
        return out
    for name in names:
        path = root / name
        data, why = read_json_checked(path, MAX_MANIFEST_BYTES)
        if data is not None and not isinstance(data.get("runs", []), list):
            data, why = None, "`runs` is not a list"
        if data is not None:
            out.append(data)
        elif why is not None and problems is not None:
            problems.append((str(path), why))
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


def unreadable_record(run_id: str, path: str | os.PathLike, reason: str,
                      remedy: str = "a rerun of the sweep runs it again and rewrites it") -> dict:
    """The stand-in record of a run whose record.json cannot be read: status ``unreadable``, the file named."""
    return {"run_id": run_id, "status": UNREADABLE, "config": {}, "metrics": {}, "timing": {}, "env": {},
            "error": f"unreadable {path}: {reason}; {remedy}"}


def load_records(out_dir: str | os.PathLike, *, unreadable: bool = False, warn: bool = True) -> list[dict]:
    """Every readable record.json under OUT/runs.

    An unreadable record.json (truncated, not JSON, not UTF-8, not a record, not a regular file) and an entry
    of OUT/runs that is no folder are never dropped silently: ``warn`` emits a
    warning naming the file, and ``unreadable=True`` includes it as a record with status ``unreadable``."""
    root = str(runs_root(out_dir))
    out = []
    ids, bad_entries = scan_runs(out_dir)
    for path, problem in bad_entries:
        if warn:
            warnings.warn(f"unreadable run folder {path}: {problem}", RuntimeWarning, stacklevel=2)
        if unreadable:
            out.append(unreadable_record(os.path.basename(path), path, problem,
                                         "move it away (a rerun does not replace what is not a run folder)"))
    for run_id in ids:
        path = os.path.join(root, run_id, RECORD)
        record, problem = read_record_checked(path)
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


def read_history(run_dir: str | os.PathLike, problems: list[str] | None = None) -> list[dict]:
    """The parsed lines of a run's history.jsonl; a torn last line (a run still writing) is skipped. A file
    that is not a regular file, and lines that are not JSON objects or longer than MAX_HISTORY_LINE, are
    skipped too and described in ``problems`` when given."""
    out = []
    path = Path(run_dir) / HISTORY
    try:
        fh = open_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        return out
    except OSError as exc:
        if problems is not None:
            problems.append(f"{path}: {describe(exc)}")
        return out
    bad = 0
    with fh:
        while True:
            line = fh.readline(MAX_HISTORY_LINE + 1)
            if not line:
                break
            if len(line) > MAX_HISTORY_LINE:
                bad += 1
                while line and not line.endswith(b"\n"):  # skip the rest of the runaway line
                    line = fh.readline(MAX_HISTORY_LINE)
                continue
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                bad += line.endswith(b"\n")  # a torn last line is a run still writing, not damage
                continue
            if isinstance(item, dict):
                out.append(item)
            else:
                bad += 1
    if bad and problems is not None:
        problems.append(f"{path}: {bad} line(s) skipped (not a JSON object, or longer than "
                        f"{MAX_HISTORY_LINE} bytes)")
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
            problems: list[str] = []
            for item in read_history(root / run_id, problems):
                step, epoch, split = (_scalar(item.get(k)) for k in HISTORY_KEYS)
                for key, value in item.items():
                    if key in HISTORY_KEYS or type(value) not in (int, float):
                        continue  # curves are numbers: text, lists, booleans and nulls are not points
                    cols["run_id"].append(run_id)
                    cols["step"].append(step)
                    cols["epoch"].append(epoch)
                    cols["split"].append(split)
                    cols["metric"].append(key)
                    cols["value"].append(float(value))
            for problem in problems:
                warnings.warn(f"damaged history {problem}", RuntimeWarning, stacklevel=2)
    return pd.DataFrame(cols)


def _scalar(value: Any) -> Any:
    """A history coordinate as it can be grouped on: a number or a string; anything else is None."""
    return value if type(value) in (int, float, str) else None


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
    "read_record_checked",
    "record_problem",
    "scan_runs",
    "remove_leftover_tmp",
    "run_path",
    "run_statuses",
    "write_json_atomic",
    "write_manifest",
    "write_record",
]
