"""Fault injection around `python -m benchmarks run`: a small sweep of the tiny engine task, started as a
subprocess, hit by a signal (or a full disk, a corrupted file, a second command), then rerun once.

Every process of one trial carries an environment marker (``FAULT_TRIAL=<id>``; pool workers inherit the
environment), so that orphans are found even after they were re-parented to init.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks import store

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests.engine.tiny_task:TinyTask"

#: 4 runs of 48 steps, 2 at a time; a checkpoint every 5 steps, a log line every 2 (about 2 s per run)
SWEEP = f"""\
task: {TINY}
data: {{sleep_s: 0.03}}
optimizer: {{name: adamw, lr: 1.0e-2}}
train: {{epochs: 12, batch_size: 16, device: cpu, log_every: 2, checkpoint_every_steps: 5}}
grid:
  train.seed: [0, 1, 2, 3]
"""
N_RUNS = 4
#: history keys that measure time, not what was computed
TIMING_KEYS = ("samples_per_s",)
#: process exit / orphan deadlines (seconds; generous for a loaded 2-core CI machine)
EXIT_TIMEOUT_S = 120.0
ORPHAN_TIMEOUT_S = 30.0


def write_config(folder: Path, text: str = SWEEP) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(text)
    return path


def command(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks", "run", str(cfg), "--out", str(out), "--max-parallel", "2", *extra]


def environment(marker: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "BENCHMARKS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
            "FAULT_TRIAL": marker}


def start(cfg: Path, out: Path, marker: str, *extra: str) -> subprocess.Popen:
    """The sweep in its own process group (as a shell job would be), output captured."""
    return subprocess.Popen(command(cfg, out, *extra), cwd=ROOT, env=environment(marker), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(cfg: Path, out: Path, marker: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(cfg, out, *extra), cwd=ROOT, env=environment(marker or new_marker()),
                          capture_output=True, text=True, timeout=EXIT_TIMEOUT_S * 2)


def new_marker() -> str:
    return uuid.uuid4().hex


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def processes(marker: str) -> list[int]:
    """Live (non-zombie) processes of a trial."""
    needle = f"FAULT_TRIAL={marker}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        if needle in _environ(pid).split(b"\0"):
            stat = _stat(pid)
            if stat is not None and stat[0] != "Z":
                out.append(pid)
    return out


def workers(main_pid: int, marker: str) -> list[int]:
    """Pool worker processes of a sweep (children of its main process, not the resource tracker)."""
    out = []
    for pid in processes(marker):
        stat = _stat(pid)
        if stat is None or stat[1] != main_pid:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(pid)
    return out


def wait_for_no_processes(marker: str, timeout: float = ORPHAN_TIMEOUT_S) -> list[int]:
    """Wait until no process of the trial is alive; return the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = processes(marker)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def kill_all(marker: str) -> None:
    """Clean up after a failed test (SIGKILL every process of the trial)."""
    for pid in processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def comparable_history(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in item.items() if k not in TIMING_KEYS} for item in store.read_history(run_dir)]


def snapshot(out: Path) -> dict[str, dict]:
    """run id -> status, metrics, comparable history, attempts; what must equal an uninterrupted sweep."""
    result = {}
    for run_id in store.list_run_ids(out):
        run_dir = store.run_path(out, run_id)
        record = store.read_record(run_dir) or {}
        result[run_id] = {"status": record.get("status"), "metrics": record.get("metrics"),
                          "history": comparable_history(run_dir)}
    return result


def corrupt_records(out: Path) -> list[str]:
    """Record files that exist but cannot be parsed (must always be empty: records are written atomically)."""
    bad = []
    for run_id in store.list_run_ids(out):
        path = store.run_path(out, run_id) / store.RECORD
        if path.exists():
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                bad.append(f"{path}: {exc}")
    return bad


def leftover_tmp(out: Path) -> list[str]:
    return sorted(str(p) for p in (out / store.RUNS_DIR).glob("*/.*.tmp"))


def differences(got: dict[str, dict], want: dict[str, dict]) -> list[str]:
    """Human-readable differences between two snapshots (empty when they are equal)."""
    problems = []
    if sorted(got) != sorted(want):
        problems.append(f"run ids differ: {sorted(got)} vs {sorted(want)}")
    for run_id in sorted(set(got) & set(want)):
        g, w = got[run_id], want[run_id]
        if g["status"] != w["status"]:
            problems.append(f"{run_id}: status {g['status']} vs {w['status']}")
        if g["metrics"] != w["metrics"]:
            problems.append(f"{run_id}: metrics {g['metrics']} vs {w['metrics']}")
        if g["history"] != w["history"]:
            problems.append(f"{run_id}: history of {len(g['history'])} lines differs from the uninterrupted "
                            f"one ({len(w['history'])} lines)")
    return problems
