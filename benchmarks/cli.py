"""Command line: ``python -m benchmarks <command>`` (also installed as ``adamp-bench``).

Exit codes: 0 success; 1 some runs failed or were left interrupted, also by an earlier launch (or nothing to
show; a full disk; an unexpected error, shown as one `error:` line); 2 config error (nothing launched, nothing
written); 130 interrupted by Ctrl-C, 143 by SIGTERM (the runs are recorded interrupted; rerun the same command
to resume). Every error is one `error:` line; `--debug` (or BENCHMARKS_DEBUG=1) adds its traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import Sequence

from benchmarks.config.errors import ConfigError

MAIN_EPILOG = """\
examples:
  python -m benchmarks run configs/examples/toy_sweep.yaml --dry-run     # list the runs, launch nothing
  python -m benchmarks run configs/examples/toy_sweep.yaml               # run them here (process pool)
  python -m benchmarks status runs/toy_sweep                             # done/running/failed counts
  python -m benchmarks results runs/toy_sweep                            # one row per run
  python -m benchmarks tasks                                             # registered tasks
  python -m benchmarks optimizers                                        # accepted optimizer names

`python -m benchmarks <command> --help` explains each command.
"""

RUN_DESCRIPTION = """\
Expand the config files into runs (grid x zip), validate every run before anything starts, skip runs that
already finished in OUT, and execute the rest.

Config file (YAML): task, data, model, optimizer, train, and optionally base (inherit from another file,
path relative to this one), grid (cartesian product over dotted keys), zip (keys varied together),
slurm (executor settings, not part of the run id), name and tags. See docs/architecture.md.

Each run is stored in OUT/runs/<run_id>/ (record.json, history.jsonl); <run_id> hashes the run's resolved
config (all defaults filled in), so rerunning the same command skips finished runs and resumes the rest.
"""

RUN_EPILOG = """\
examples:
  # what would run, with the run ids and which are already done:
  python -m benchmarks run configs/examples/toy_sweep.yaml --dry-run
  # run on this machine, 2 runs at a time (each gets cores/2 torch threads):
  python -m benchmarks run configs/examples/toy_sweep.yaml --max-parallel 2
  # change values without editing the file (values are YAML: 3 is an int, 1e-3 a float, [0,1] a list):
  python -m benchmarks run cfg.yaml --set optimizer.lr=3e-3 --set train.epochs=5
  # replace a grid axis (grid keys are dotted, so everything after `grid.` is the axis name):
  python -m benchmarks run cfg.yaml --set grid.train.seed=[0,1,2,3]
  # a seconds-long version of every run (the task's smoke settings; written to runs/<stem>-smoke):
  python -m benchmarks run cfg.yaml --smoke
  # in this process, one run after another, so breakpoints work (--pdb: debugger at a failing run's error):
  python -m benchmarks run cfg.yaml --executor debug --pdb
  # retry the runs that failed last time (finished ones are always skipped):
  python -m benchmarks run cfg.yaml --retry-failed

exit codes: 0 ok, 1 some runs failed or are left interrupted (a rerun resumes interrupted runs; failed ones
need --retry-failed), 2 config error (nothing launched or written), 130 Ctrl-C, 143 SIGTERM.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every command (analysis commands are added when that module exists)."""
    from benchmarks.engine.executors import EXECUTORS

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark suite for the AdamP/SGDP optimizers: run config grids, inspect and analyse results.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback behind an error line (also: BENCHMARKS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="expand config files into runs and execute them", description=RUN_DESCRIPTION,
                         epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config file(s)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a dotted key with a YAML value, e.g. --set optimizer.lr=1e-3 (repeatable); "
                          "it wins over the file and over a grid axis of the same key")
    run.add_argument("--executor", choices=list(EXECUTORS), default="local",
                     help="local: process pool on this machine (default); debug: in this process, sequentially "
                          "(pdb works); slurm: a submitit job array")
    run.add_argument("--out", metavar="DIR", default=None,
                     help="results folder (default: runs/<config stem>, runs/<stem>-smoke with --smoke)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print one line per run, ending with 'N runs (M already done)'; "
                          "launch and write nothing (above 200 runs only the first and last 100 are listed)")
    run.add_argument("--list-all", action="store_true", help="with --dry-run: list every run, however many")
    run.add_argument("--allow-large-grid", action="store_true",
                     help="plan and launch a sweep of more runs than --max-runs (refused otherwise)")
    run.add_argument("--max-runs", type=_positive_int, default=None, metavar="N",
                     help="the most runs a sweep may have without --allow-large-grid (default 10000)")
    run.add_argument("--skip-data-check", action="store_true",
                     help="do not check that data.root and weight files exist before launch (e.g. data only "
                          "mounted on the compute nodes); the runs then fail at start if they do not")
    run.add_argument("--max-parallel", type=_positive_int, default=None, metavar="N",
                     help="local executor: at most N runs at once (default: one per CPU core, or one per GPU); "
                          "on the CPU each run gets cores // N torch threads")
    run.add_argument("--runs-per-gpu", type=_positive_int, default=1, metavar="N",
                     help="local executor with GPUs: runs sharing one GPU (default 1)")
    run.add_argument("--retry-failed", action="store_true", help="run failed runs again (they are skipped otherwise)")
    run.add_argument("--smoke", action="store_true",
                     help="apply each task's smoke settings (tiny data, a few steps) to check a config end to end")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (also: BENCHMARKS_NO_PROGRESS=1)")
    run.add_argument("--pdb", action="store_true",
                     help="with --executor debug: open the pdb post-mortem debugger at a failing run's exception")
    from benchmarks.engine.slurm_settings import add_cli_arguments

    add_cli_arguments(run)
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="counts of done/running/failed runs in a results folder",
                            description="Show how far the sweeps in a results folder got: counts per status, "
                                        "the failed runs with their error, the runs still running, the latest launch.",
                            epilog="example:\n  python -m benchmarks status runs/toy_sweep",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("out", metavar="DIR", help="results folder (the --out of `run`)")
    status.set_defaults(func=cmd_status)

    results = sub.add_parser("results", help="print the runs of a results folder as a table",
                             description="One row per run: run id, status, the config keys that differ between "
                                         "runs, final metrics and timings (load the same table in Python with "
                                         "benchmarks.load_results(DIR)).",
                             epilog="examples:\n  python -m benchmarks results runs/toy_sweep\n"
                                    "  python -m benchmarks results runs/toy_sweep --csv results.csv --all-columns",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    results.add_argument("out", metavar="DIR", nargs="+", help="results folder(s)")
    results.add_argument("--all-columns", action="store_true", help="every column, not only those that vary")
    results.add_argument("--csv", metavar="FILE", help="also write the table as CSV ('-' for stdout only)")
    results.add_argument("--sort", metavar="COLUMN", help="sort by this column")
    results.set_defaults(func=cmd_results)

    tasks = sub.add_parser("tasks", help="list the registered tasks")
    tasks.set_defaults(func=cmd_tasks)

    optimizers = sub.add_parser("optimizers", help="list the accepted optimizer names",
                                description="Registered names, torch.optim classes and timm optimizers (timm:<name>); "
                                            "any importable class also works as package.module:Class.")
    optimizers.add_argument("--no-timm", action="store_true", help="omit timm's optimizers")
    optimizers.set_defaults(func=cmd_optimizers)

    from benchmarks.analysis import commands as analysis_commands

    analysis_commands.register(sub)
    from benchmarks.workflows import calibrate, mine, tune

    mine.register(sub)
    calibrate.register(sub)
    tune.register(sub)
    return parser


# -- commands --------------------------------------------------------------------------------------------

def _print_warnings(warnings: Sequence[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: plan (validate everything), print or launch."""
    from benchmarks import store
    from benchmarks.engine.sweep import format_plan, launch_sweep, plan_summary, plan_sweep

    from benchmarks.engine.sweep import DEFAULT_MAX_RUNS

    if args.pdb and args.executor != "debug":
        raise ConfigError("--pdb needs --executor debug (the other executors run in other processes)")
    max_runs = None if args.allow_large_grid else (args.max_runs or DEFAULT_MAX_RUNS)
    plan = plan_sweep(args.configs, args.overrides, out_dir=args.out, smoke=args.smoke,
                      retry_failed=args.retry_failed, max_runs=max_runs, check_data=not args.skip_data_check)
    _print_warnings(plan.warnings)
    if args.dry_run:
        out = sys.stdout
        out.writelines(line + "\n" for line in format_plan(plan, limit=None if args.list_all else 200))
        return 0
    todo = plan.to_run
    print(f"{plan_summary(plan)}, {len(todo)} to run; "
          f"results in {', '.join(str(o) for o in plan.out_dirs)}", file=sys.stderr)
    if not todo:
        return _left_behind(plan, args.executor)
    options = {k: v for k, v in vars(args).items() if k not in ("func", "configs", "overrides")}
    options["progress"] = not args.no_progress
    if args.no_progress:
        os.environ["BENCHMARKS_NO_PROGRESS"] = "1"
    try:
        launch_sweep(plan, args.executor, options)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 143 if _TERMINATED else 130
    return _left_behind(plan, args.executor)


def _left_behind(plan, executor: str) -> int:
    """1 (and a line saying so) when runs of the plan are failed or interrupted after the launch, else 0.

    A rerun that skips failed runs must not look like a clean finish; interrupted runs (a worker died, the
    disk filled up) are resumed by the same command."""
    from benchmarks import store

    if executor not in ("local", "debug"):
        return 0  # the runs are still queued or running elsewhere
    statuses: dict[str, str] = {}
    for out in plan.out_dirs:
        statuses.update(store.run_statuses(out, [r.spec.run_id for r in plan.runs if r.spec.out_dir == out]))
    failed = sorted(rid for rid, s in statuses.items() if s == "failed")
    paths = {r.spec.run_id: r.spec.run_dir for r in plan.runs}
    elsewhere = sorted(rid for rid, s in statuses.items() if s == "running" and store.RunLock(paths[rid]).is_held())
    stopped = sorted(rid for rid, s in statuses.items()
                     if s == "interrupted" or (s == "running" and rid not in elsewhere))
    where = plan.out_dirs[0] if plan.out_dirs else "OUT"
    if elsewhere:
        print(f"{len(elsewhere)} run(s) are running in another process (a concurrent `run` on the same folder)",
              file=sys.stderr)
    if stopped:
        print(f"{len(stopped)} run(s) interrupted (e.g. a worker process died): rerun the same command to resume "
              f"them", file=sys.stderr)
    if failed:
        print(f"{len(failed)} run(s) failed (rerun them with --retry-failed); see "
              f"`python -m benchmarks status {where}`", file=sys.stderr)
    return 1 if failed or stopped else 0


class _sigterm_as_interrupt:
    """SIGTERM (what `kill`, SLURM and most schedulers send first) stops a sweep as Ctrl-C does: the runs are
    recorded interrupted. The flag it returns tells whether SIGTERM was the cause."""

    def __init__(self):
        self.flag = _Flag()
        self._previous = None

    def __enter__(self) -> "_Flag":
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self.flag

    def _handle(self, signum, frame) -> None:
        if self.flag:
            return  # already stopping: a second SIGTERM must not cut the recording short
        self.flag.set()
        _TERMINATED.set()
        raise KeyboardInterrupt("SIGTERM")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _Flag:
    def __init__(self):
        self.value = False

    def set(self) -> None:
        self.value = True

    def __bool__(self) -> bool:
        return self.value


#: set when SIGTERM stopped the command (exit 143 instead of Ctrl-C's 130)
_TERMINATED = _Flag()


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: counts per status, failed runs with their errors, running runs, latest launch."""
    import collections

    from benchmarks import store

    out = Path(args.out)
    if not out.is_dir():
        what = "does not exist" if not os.path.lexists(out) else "is not a folder"
        print(f"error: {out} {what} (expected a results folder with runs/ or sweeps/)", file=sys.stderr)
        return 1
    if not any(os.path.lexists(out / d) for d in (store.RUNS_DIR, store.SWEEPS_DIR)):
        print(f"error: {out} holds no runs (expected {out}/runs/ or {out}/sweeps/)", file=sys.stderr)
        return 1
    for sub in (store.RUNS_DIR, store.SWEEPS_DIR):
        if os.path.lexists(out / sub) and not (out / sub).is_dir():
            print(f"error: {out / sub} is not a folder (a results folder keeps its runs in {out}/runs/ and its "
                  f"launches in {out}/sweeps/); move it away", file=sys.stderr)
            return 1
    records = {r["run_id"]: r for r in store.load_records(out, unreadable=True, warn=False)}
    stale = set()
    for rid, record in records.items():
        # a run killed hard (SIGKILL, node failure) still says "running", but its lock died with it
        if record.get("status") == "running" and not store.RunLock(store.run_path(out, rid)).is_held():
            stale.add(rid)
            records[rid] = {**record, "status": "interrupted",
                            "error": "stale: its process is gone (killed hard); a rerun resumes it"}
    bad_manifests: list[tuple[str, str]] = []
    manifests = store.list_manifests(out, bad_manifests)
    queued = set()
    for manifest in manifests:
        for entry in manifest.get("runs", []):
            run_id = entry.get("run_id") if isinstance(entry, dict) else None
            if isinstance(run_id, str) and run_id not in records:
                queued.add(run_id)
    counts = collections.Counter(str(r.get("status")) for r in records.values())
    counts["queued"] += len(queued)
    total = len(records) + len(queued)
    order = ["done", "running", "queued", "interrupted", "diverged", "failed", store.UNREADABLE]
    parts = [f"{counts[s]} {s}" for s in order if counts[s]]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in order and n]
    print(f"{out}: {total} runs: {', '.join(parts) if parts else 'none'}")
    unknown = sorted({str(r.get("status")) for r in records.values()} - {*store.STATUSES, store.UNREADABLE})
    for label in ("failed", "diverged", "interrupted", store.UNREADABLE, *unknown):
        bad = [r for r in records.values() if str(r.get("status")) == label]
        if bad:
            print(f"{label}:" if label not in unknown else f"{cut_long_values(label)} (not a status the suite "
                                                           f"writes; the analysis leaves these runs out):")
            for r in sorted(bad, key=lambda r: r["run_id"]):
                error = str(r.get("error") or "").splitlines()
                print(f"  {r['run_id']}: {error[0] if error else ''}")
    if bad_manifests:
        print("unreadable launch manifests (status ignores them):")
        for path, why in bad_manifests:
            print(f"  {path}: {why}")
    running = sorted(rid for rid, r in records.items() if r.get("status") == "running")
    if running:
        print("running:")
        for rid in running:
            started = (records[rid].get("timing") or {}).get("started")
            print(f"  {rid} (started {started})")
    if manifests:
        m = manifests[-1]
        skipped = m.get("skipped") if isinstance(m.get("skipped"), list) else []
        print(f"latest launch: {m.get('sweep_id')} with executor {m.get('executor')}, {len(m.get('runs', []))} runs "
              f"launched, {len(skipped)} skipped ({m.get('status')})")
    if any(m.get("executor") == "slurm" for m in manifests):
        from benchmarks.engine.slurm_status import slurm_status_report

        report = slurm_status_report(out, manifests)
        if report:
            print(report)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """``results``: the runs as a table (the columns that vary, metrics, timings)."""
    import pandas as pd

    from benchmarks.store import load_results

    for folder in args.out:
        if not Path(folder).exists():
            raise ConfigError(f"results folder {folder} does not exist")
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder} is a file, not a results folder (the --out of `run`)")
    frame = load_results(args.out)
    if frame.empty:
        print(f"no runs in {', '.join(args.out)}", file=sys.stderr)
        return 1
    if args.sort:
        if args.sort not in frame.columns:
            print(f"error: no column {args.sort!r}; columns: {', '.join(frame.columns)}", file=sys.stderr)
            return 2
        frame = frame.sort_values(args.sort)
    shown = frame
    if not args.all_columns:
        keep = ["run_id", "status"]
        for col in frame.columns:
            if col in keep or col.startswith(("env.", "timing.")) or col == "error":
                continue
            if col.startswith("metrics."):
                keep.append(col)
                continue
            try:
                varies = frame[col].nunique(dropna=True) > 1
            except TypeError:
                varies = frame[col].astype(str).nunique() > 1
            if varies:
                keep.append(col)
        keep += [c for c in ("timing.wall_s", "timing.step_time_s") if c in frame.columns]
        shown = frame[keep]
    if args.csv:
        if args.csv == "-":
            shown.to_csv(sys.stdout, index=False)
            return 0
        shown.to_csv(args.csv, index=False)
    with pd.option_context("display.max_columns", None, "display.width", 250, "display.max_colwidth", 60,
                           "display.max_rows", None):
        print(shown.to_string(index=False))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    """``tasks``: registered task names with their description and metrics."""
    from benchmarks.tasks import TASKS, get_task

    for name in sorted(TASKS):
        try:
            cls = get_task(name)
            metrics = ", ".join(f"{m} ({d})" for m, d in (getattr(cls, "metrics", {}) or {}).items())
            print(f"{name:16s} {cls.description}" + (f"  [metrics: {metrics}]" if metrics else ""))
        except Exception as exc:  # noqa: BLE001 - one broken task must not hide the others
            print(f"{name:16s} (unavailable: {type(exc).__name__}: {exc})")
    return 0


def cmd_optimizers(args: argparse.Namespace) -> int:
    """``optimizers``: every name ``optimizer.name`` accepts."""
    from benchmarks.registry import list_optimizers

    rows = list_optimizers()
    for kind, title in (("registry", "registered"), ("torch.optim", "torch.optim classes"),
                        ("timm", "timm (timm:<name>; timm's factory defaults applied, see docs)")):
        if kind == "timm" and args.no_timm:
            continue
        print(f"{title}:")
        for row in rows:
            if row["kind"] == kind:
                print(f"  {row['name']:24s} {row['target']}")
    print("any importable optimizer class: package.module:Class")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks`` / ``adamp-bench``; returns the exit code."""
    with _sigterm_as_interrupt():
        return _main(argv)


#: set when SIGTERM stopped the command (exit 143 instead of Ctrl-C's 130)


def _main(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
    except KeyboardInterrupt:  # Ctrl-C while the modules load: nothing ran yet
        print("interrupted", file=sys.stderr)
        return 143 if _TERMINATED else 130
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False)) or os.environ.get("BENCHMARKS_DEBUG", "") not in ("", "0")
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        print(f"warning: {cut_long_values(str(message))}", file=sys.stderr)

    previous_showwarning = warnings.showwarning
    if not debug:  # a warning is one line, as an error is (its source line only with --debug)
        warnings.showwarning = one_line
    try:
        return _dispatch(args, debug)
    finally:
        warnings.showwarning = previous_showwarning


def _dispatch(args: argparse.Namespace, debug: bool) -> int:
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away must not give a traceback at exit
        return code
    except ConfigError as exc:
        if debug:
            from benchmarks.config import imports

            if imports.last_traceback:  # the code a config names raised while being imported
                print(imports.last_traceback, file=sys.stderr, end="")
            else:
                traceback.print_exception(exc, file=sys.stderr)
        print(f"error: {cut_long_values(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 143 if _TERMINATED else 130
    except BrokenPipeError:
        # the reader went away (`status DIR | head`): not an error of this command, and no traceback
        _silence_stdout()
        return 141
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _unexpected(exc, debug)
        from benchmarks.store import describe_out_of_space

        message = exc.strerror if exc.strerror and exc.strerror[0].islower() else \
            f"{describe_out_of_space(exc)}; free space and rerun the same command to resume"
        print(f"error: {message}", file=sys.stderr)
        return 1
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - input a user can produce never ends in a traceback
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            exc = RuntimeError("code called sys.exit(0) in the middle of the command (it did not finish)")
        elif isinstance(exc, SystemExit):
            exc = RuntimeError(f"code called sys.exit({exc.code!r}) in the middle of the command")
        return _unexpected(exc, debug)


def _unexpected(exc: BaseException, debug: bool) -> int:
    """One line for an error no check above anticipated (exit 1); the traceback with --debug."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    where = ""
    tb = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if tb:
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno}"
        where += "; rerun with --debug or BENCHMARKS_DEBUG=1 for the traceback)" if not debug else ")"
    text = str(exc) or type(exc).__name__
    print(f"error: {cut_long_values(f'{type(exc).__name__}: {text}')}{where}", file=sys.stderr)
    return 1


#: longest value an error line quotes whole; longer ones are cut and their length given
MAX_VALUE_CHARS = 200
_LONG_TOKEN = re.compile(r"\S{%d,}" % (MAX_VALUE_CHARS + 1))


def cut_long_values(message: str, limit: int = 4000) -> str:
    """An error line with every value (a run of text without spaces) over MAX_VALUE_CHARS cut to its start and
    its length, and the line itself to ``limit`` characters: a 1 MB value is never echoed whole."""
    message = _LONG_TOKEN.sub(
        lambda m: f"{m.group(0)[:80]}... ({len(m.group(0)):,} characters)", message)
    if len(message) > limit:
        message = f"{message[:limit]}... ({len(message):,} characters in all)"
    return message


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


__all__ = ["build_parser", "main"]
