"""Launching runs for the workflows: each sweep is a ``python -m benchmarks run`` child process, so a run
that crashes cannot take the workflow's bookkeeping with it, and Ctrl-C reaches the child's own handling
(runs recorded ``interrupted``, resumed by the next launch)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from .battery import ROOT, BatteryTask


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # the children must import this checkout's packages, wherever the workflow was started from
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def benchmarks(args: Sequence[str], quiet: bool = False, log: Path | None = None) -> int:
    """``python -m benchmarks ARGS`` in the repository root; its exit code. ``log``: where its output goes."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as fh:
            return _wait(subprocess.Popen([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=_env(),
                                          stdout=fh, stderr=subprocess.STDOUT))
    out = subprocess.DEVNULL if quiet else None
    return _wait(subprocess.Popen([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=_env(), stdout=out))


def _wait(child: subprocess.Popen) -> int:
    try:
        return child.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the child too: let it record its runs `interrupted` (subprocess.call would kill it)
        try:
            child.wait(timeout=120)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            child.kill()
            child.wait()
        raise


def dry_run(paths: Sequence[Path], out: Path) -> int:
    return benchmarks(["run", *map(str, paths), "--dry-run", "--out", str(out)], quiet=True)


def run(paths: Sequence[Path], out: Path, executor: str, max_parallel: int | None = None,
        log: Path | None = None) -> int:
    extra = ["--max-parallel", str(max_parallel)] if max_parallel else []
    return benchmarks(["run", *map(str, paths), "--out", str(out), "--executor", executor, *extra], log=log)


def parallel(max_parallel: int | None) -> int:
    """Runs at a time of the local executor: ``max_parallel``, at most the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, max_parallel or cores))


def count_to_run(paths: Sequence[Path], out: Path) -> int:
    """How many runs of these configs are not finished in ``out`` (0 when they do not validate)."""
    from benchmarks.config.errors import ConfigError
    from benchmarks.engine.sweep import plan_sweep

    try:
        return len(plan_sweep(list(paths), out_dir=out, check_data=False).to_run)
    except ConfigError:
        return 0


def ensure_data(task: BatteryTask) -> str | None:
    """Write a task's generated data set on first use; the reason when that failed (None: ready)."""
    if task.data is None:
        return None
    folder, module = task.data
    if (ROOT / folder).is_dir() and any((ROOT / folder).iterdir()):
        return None
    print(f"== {task.name}: writing its data set into {folder} (once)", flush=True)
    rc = subprocess.call([sys.executable, "-m", module, folder], cwd=ROOT, env=_env())
    return None if rc == 0 else f"its data could not be written (python -m {module} {folder} exited {rc})"


def machine() -> str:
    """The machine in words, for results files: architecture, CPU model, cores, torch version."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh.read(1 << 20).splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import torch

    return f"{platform.machine()} {model}, {os.cpu_count()} cores, torch {torch.__version__}"


__all__ = ["benchmarks", "count_to_run", "dry_run", "ensure_data", "machine", "parallel", "run"]
