"""Running the CLI on hostile input as a user would: a child process bounded in time and memory.

Shared by tests/test_hostile_results.py (one regression test per class of docs/reliability.md) and
tests/test_fuzz_results.py (the property-based fuzzer of results folders).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: every command must end within this (seconds; HOSTILE_TIME_LIMIT_S raises it on a shared, busy machine) ...
TIME_LIMIT_S = float(os.environ.get("HOSTILE_TIME_LIMIT_S", "20"))
#: ... and within this much memory (bytes): RLIMIT_DATA, the heap and private mappings a runaway read would
#: grow (RLIMIT_AS would also count the shared libraries torch maps, several GB of address space)
MEMORY_LIMIT = 2**30
#: the exit codes the CLI documents (benchmarks/cli.py): 0 success, 1 nothing to show / failed runs /
#: unexpected error as one line, 2 config or usage error
DOCUMENTED_EXITS = (0, 1, 2)
#: the small real sweep the fuzzer damages
SWEEP = ROOT / "tests" / "data" / "fuzz_sweep.yaml"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


@dataclass
class Result:
    code: int
    out: str
    err: str
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, env: dict | None = None,
        timeout: float = TIME_LIMIT_S) -> Result:
    """``python -m benchmarks ARGS`` in a child process limited to TIME_LIMIT_S and MEMORY_LIMIT; a command
    that runs past the limit is killed and reported with ``timed_out``."""
    extra = dict(env or {})
    paths = [str(ROOT), *([extra.pop("PYTHONPATH")] if "PYTHONPATH" in extra else [])]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "BENCHMARKS_NO_PROGRESS": "1",
                "PYTHONPATH": os.pathsep.join(paths), **extra}
    full_env.pop("BENCHMARKS_DEBUG", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks", *map(str, args)], cwd=cwd or ROOT,
                              env=full_env, capture_output=True, text=True, errors="replace", timeout=timeout,
                              preexec_fn=_limit_memory, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")
        return Result(-9, text(exc.stdout), text(exc.stderr), timed_out=True)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def build_real_folder(dest: Path) -> Path:
    """Run the 6-run toy sweep of tests/data/fuzz_sweep.yaml into ``dest`` (a few seconds)."""
    result = cli("run", SWEEP, "--out", dest, "--executor", "debug", "--no-progress", timeout=300)
    assert result.code == 0, result.text
    return dest


def copy_folder(src: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    return dest


def assert_clean(result: Result, what: str) -> None:
    """The guarantees of every command on any input: ended in time, a documented exit code, no traceback."""
    assert not result.timed_out, f"{what}: still running after {TIME_LIMIT_S} s\n{result.text[-2000:]}"
    assert result.code in DOCUMENTED_EXITS, f"{what}: exit {result.code}\n{result.text[-3000:]}"
    assert "Traceback (most recent call last)" not in result.text, f"{what}: traceback\n{result.text[-3000:]}"
    assert "MemoryError" not in result.text, f"{what}: out of memory\n{result.text[-2000:]}"
