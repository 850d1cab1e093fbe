"""Child process of the results-folder fuzzer (tests/test_fuzz_results.py): runs CLI commands, each in a fork.

``python tests/fuzz_driver.py`` reads a JSON list of argument lists on stdin and prints one JSON object per
command: exit code (or the signal that ended it), seconds, peak memory and its stdout/stderr. The suite's
modules are imported once, before forking, so a command costs its own work only; each fork gets
``RLIMIT_DATA`` = MEMORY_LIMIT and is killed (SIGALRM) after TIME_LIMIT_S, the bounds the fuzzer asserts.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile_tools import MEMORY_LIMIT, TIME_LIMIT_S  # noqa: E402


def _preload() -> None:
    """Import what every command imports, so that the forks measure the command and not the imports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import pandas  # noqa: F401
    import torch  # noqa: F401

    import benchmarks.analysis.report  # noqa: F401
    import benchmarks.cli as cli
    import benchmarks.engine.sweep  # noqa: F401
    import benchmarks.tasks.toy  # noqa: F401

    cli.build_parser()


def _child(argv: list[str], out_path: str, err_path: str) -> None:
    out = os.open(out_path, os.O_WRONLY)
    err = os.open(err_path, os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(err, 2)
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.alarm(int(TIME_LIMIT_S))  # the default SIGALRM action ends the process: reported as a signal
    code = 1
    try:
        from benchmarks.cli import main

        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as a traceback, which the fuzzer refuses
        import traceback

        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run(argv: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(delete=False) as o, tempfile.NamedTemporaryFile(delete=False) as e:
        out_path, err_path = o.name, e.name
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(argv, out_path, err_path)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    texts = []
    for path in (out_path, err_path):
        texts.append(Path(path).read_text(errors="replace"))
        os.unlink(path)
    return {
        "argv": argv,
        "code": os.waitstatus_to_exitcode(status),
        "seconds": seconds,
        "max_rss_kb": usage.ru_maxrss,
        "out": texts[0],
        "err": texts[1],
    }


def main() -> None:
    commands = json.load(sys.stdin)
    _preload()
    for argv in commands:
        print(json.dumps(run(argv)), flush=True)


if __name__ == "__main__":
    main()
