"""Executors: how the runs of a sweep get executed.

* ``debug``: one after another in this process (breakpoints work; ``--pdb`` opens the post-mortem debugger
  at a failing run's exception, which is still recorded);
* ``local``: a pool of worker processes on this machine, resource aware: with GPUs one run per GPU (or
  ``--runs-per-gpu``), on the CPU ``--max-parallel`` runs sharing the cores (each run gets
  ``cores // parallel`` torch threads). Ctrl-C and SIGTERM stop cleanly: interrupted runs are recorded
  ``interrupted`` (or stay ``running`` if killed hard; ``status`` shows those as interrupted once their lock
  is gone) and the same command later resumes the sweep. Workers die with the sweep process (a parent-death
  signal and a watchdog on its pid), recording their runs ``interrupted``. A worker that dies (killed, out
  of memory) leaves its run and the runs of the pool it broke ``interrupted``, and the sweep goes on with a
  fresh pool; a full disk stops the sweep with a one-line error, its runs ``interrupted``;
* ``slurm``: a submitit job array (``benchmarks.engine.slurm``, separate module).

Every executor takes the CLI options as one mapping (``Executor(options)``; keys are the argparse dests, e.g.
``max_parallel``, ``runs_per_gpu``, ``progress``, plus whatever its own CLI flags add) and implements
``launch(specs, sweep_dir) -> list[dict]`` returning one manifest entry per run:
``{"run_id", "executor", "job_id", "log"}``. ``sweep_dir`` is ``OUT/sweeps/<sweep_id>/``, the folder for the
launch's logs; each spec carries its own ``out_dir`` and its full resolved config (``spec.config["slurm"]``
holds the config file's executor settings).
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures as cf
import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, ClassVar, Mapping

from benchmarks import store

from .spec import RunSpec, execute_run

#: executor name -> "module:Class" (imported on use)
EXECUTORS: dict[str, str] = {
    "debug": "benchmarks.engine.executors:DebugExecutor",
    "local": "benchmarks.engine.executors:LocalExecutor",
    "slurm": "benchmarks.engine.slurm:SlurmExecutor",
}


class Executor(abc.ABC):
    """Base class of every executor."""

    #: registry name (``--executor``)
    name: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options: dict[str, Any] = dict(options or {})

    @abc.abstractmethod
    def launch(self, specs: list[RunSpec], sweep_dir: Path) -> list[dict]:
        """Start (or run) every spec; return one manifest entry per spec, in order."""

    def preflight(self, specs: list[RunSpec]) -> None:
        """Check that this executor can launch at all (e.g. a scheduler answers), before anything is written;
        raise :class:`benchmarks.config.errors.ConfigError` with a one-line reason otherwise."""

    def entry(self, spec: RunSpec, job_id: str | None = None, log: str | os.PathLike | None = None) -> dict:
        """A manifest entry in the shared shape."""
        return {"run_id": spec.run_id, "executor": self.name, "job_id": job_id,
                "log": str(log) if log is not None else None}


def get_executor(name: str, options: Mapping[str, Any] | None = None) -> Executor:
    """Instantiate the executor registered under ``name``."""
    if name not in EXECUTORS:
        raise KeyError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(options)


class SweepProgress:
    """Sweep-level progress: a bar over runs plus done/running/failed counts (printed when no TTY)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total = total
        self.counts: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.stream = stream or sys.stderr
        self.bar = None
        self.enabled = enabled and total > 0
        if self.enabled and self.stream.isatty() and os.environ.get("BENCHMARKS_NO_PROGRESS", "0") != "1":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="sweep", unit="run", file=self.stream, dynamic_ncols=True)

    def summary(self) -> str:
        parts = [f"{self.counts['done']} done", f"{self.running} running"]
        for status in ("diverged", "failed", "interrupted"):
            if self.counts[status]:
                parts.append(f"{self.counts[status]} {status}")
        finished = sum(self.counts.values())
        return f"[{finished}/{self.total}] " + ", ".join(parts)

    def started(self, n: int = 1) -> None:
        self.running += n
        if self.bar is not None:
            self.bar.set_postfix_str(self.summary().split("] ", 1)[1])

    def live(self, run_id: str, line: str) -> None:
        """A running run's latest progress line (from its log file)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(f"{run_id}: {line}")
        else:
            print(f"  {run_id}: {line}", file=self.stream, flush=True)

    def finished(self, run_id: str, status: str) -> None:
        self.running = max(0, self.running - 1)
        self.counts[status] += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self.summary().split("] ", 1)[1])
            if status not in ("done",):
                self.bar.write(f"{run_id}: {status}")
        else:
            print(f"{self.summary()}  {run_id}: {status}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            print(f"sweep: {self.summary()}", file=self.stream, flush=True)


class DebugExecutor(Executor):
    """Runs every spec in this process, one after another, so breakpoints and pdb work."""

    name: ClassVar[str] = "debug"

    def launch(self, specs: list[RunSpec], sweep_dir: Path) -> list[dict]:
        progress = SweepProgress(len(specs), enabled=self.options.get("progress", True))
        entries = []
        try:
            for spec in specs:
                progress.started()
                status = execute_run(spec, post_mortem=bool(self.options.get("pdb")))
                progress.finished(spec.run_id, status)
                entries.append(self.entry(spec))
        finally:
            progress.close()
        return entries


# -- local process pool ----------------------------------------------------------------------------------

_WORKER_GPU: str | None = None
#: an interrupt (SIGINT/SIGTERM) is being handled by the run of this worker: further ones are not raised again,
#: so that they cannot cut the recording of the first one short
_STOPPING = False
#: SIGTERM (or the sweep process died): the worker exits once its run recorded itself interrupted
_TERMINATED = False
#: seconds a worker whose sweep process died gives its run to record itself before it exits anyway
PARENT_GONE_GRACE_S = 60.0
_PR_SET_PDEATHSIG = 1


def _on_stop_signal(signum, frame) -> None:
    """SIGINT/SIGTERM while a run executes: KeyboardInterrupt once (the run records itself interrupted)."""
    global _STOPPING, _TERMINATED
    if signum == signal.SIGTERM:
        _TERMINATED = True
    if _STOPPING:
        return
    _STOPPING = True
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(PARENT_GONE_GRACE_S)
            os._exit(1)


def _die_with_parent(parent_pid: int | None) -> None:
    """Make this worker get SIGTERM when the sweep process dies, however it dies (SIGKILL included).

    Linux: PR_SET_PDEATHSIG; everywhere: a thread polling the parent's pid (the worker is re-parented when
    the sweep process dies). SIGTERM stops a running run as Ctrl-C does (recorded ``interrupted``) and kills
    an idle worker."""
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent_pid:  # died before the death signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_init(gpu_queue, threads: int, quiet: bool, parent_pid: int | None = None) -> None:
    """Pin a worker process to one GPU (if any) and to its share of the CPU threads; tie it to the sweep."""
    global _WORKER_GPU
    _die_with_parent(parent_pid)
    if gpu_queue is not None:
        _WORKER_GPU = str(gpu_queue.get())
        os.environ["CUDA_VISIBLE_DEVICES"] = _WORKER_GPU  # before anything initialises CUDA in this process
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if quiet:
        os.environ["BENCHMARKS_NO_PROGRESS"] = "1"
    import torch

    torch.set_num_threads(threads)


def _worker_run(spec: RunSpec, log_path: str | None) -> str:
    """Execute one spec in a worker, with its stdout/stderr going to the run's log file.

    Ctrl-C reaches a worker only here: workers start with SIGINT ignored (:func:`_spawn_ignoring_sigint`),
    and a run takes it as KeyboardInterrupt, records itself ``interrupted`` and hands the interrupt back to
    the sweep. An idle or starting worker killed by Ctrl-C would break the pool. SIGTERM (sent by the sweep
    when it stops, by the pool when another worker died, by the parent-death signal, or by ``kill``) does the
    same, after which the worker exits: its run is recorded and its pool is going away."""
    global _STOPPING, _TERMINATED
    _STOPPING = _TERMINATED = False
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    try:
        if log_path is None:
            return execute_run(spec)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", buffering=1, encoding="utf-8") as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return execute_run(spec)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _TERMINATED:
            os._exit(128 + int(signal.SIGTERM))


@contextlib.contextmanager
def _spawn_ignoring_sigint():
    """Ignore SIGINT in this process while pool workers are spawned (``submit`` starts them): a spawned
    process inherits the ignored disposition, and Python then installs no KeyboardInterrupt handler. A
    Ctrl-C in this short window still reaches the running workers, whose interrupts end the sweep."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def detect_gpus() -> list[str]:
    """GPU ids this process may use (CUDA_VISIBLE_DEVICES respected), without initialising CUDA here."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        return []


class LocalExecutor(Executor):
    """A pool of spawned worker processes on this machine, resource aware (see the module docstring)."""

    name: ClassVar[str] = "local"

    def plan_slots(self, n_runs: int) -> tuple[int, int, list[str]]:
        """(parallel runs, torch threads per run, GPU id per slot)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        gpus = [] if self.options.get("cpu_only") else detect_gpus()
        max_parallel = self.options.get("max_parallel")
        if gpus:
            per_gpu = max(1, int(self.options.get("runs_per_gpu") or 1))
            slots = [g for g in gpus for _ in range(per_gpu)]
            if max_parallel:
                slots = slots[: max(1, int(max_parallel))]
            parallel = max(1, min(len(slots), n_runs))
            slots = slots[:parallel]
        else:
            parallel = int(max_parallel) if max_parallel else cores
            parallel = max(1, min(parallel, n_runs))
            slots = []
        threads = max(1, cores // parallel)
        return parallel, threads, slots

    def launch(self, specs: list[RunSpec], sweep_dir: Path) -> list[dict]:
        sweep_dir = Path(sweep_dir)
        log_dir = sweep_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        parallel, threads, slots = self.plan_slots(len(specs))
        entries = [self.entry(spec, log=log_dir / f"{spec.run_id}.log") for spec in specs]
        if not specs:
            return entries
        show = self.options.get("progress", True)
        if show:
            where = f"{len(slots)} GPU slot(s) ({','.join(slots)})" if slots else f"{parallel} process(es)"
            print(f"local: {len(specs)} runs on {where}, {threads} torch thread(s) each; logs in {log_dir}",
                  file=sys.stderr, flush=True)
        ctx = multiprocessing.get_context("spawn")
        gpu_queue = None
        if slots:
            gpu_queue = ctx.Manager().Queue()
            for slot in slots:
                gpu_queue.put(slot)
        progress = SweepProgress(len(specs), enabled=show)

        def new_pool() -> cf.ProcessPoolExecutor:
            return cf.ProcessPoolExecutor(max_workers=parallel, mp_context=ctx, initializer=_worker_init,
                                          initargs=(gpu_queue, threads, True, os.getpid()))

        pool = new_pool()
        futures: dict[cf.Future, RunSpec] = {}
        logs: dict[str, str] = {entry["run_id"]: entry["log"] for entry in entries}
        pending = list(zip(specs, entries))
        no_space: OSError | None = None
        self.crashed: list[str] = []
        live = _LiveLines(progress)
        try:
            # Submit only as many as can run, so that the "running" count is true and Ctrl-C has little to cancel.
            def refill() -> None:
                while pending and len(futures) < parallel and no_space is None:
                    spec, entry = pending.pop(0)
                    with _spawn_ignoring_sigint():
                        future = pool.submit(_worker_run, spec, entry["log"])
                    futures[future] = spec
                    progress.started()

            def settle(future: cf.Future, spec: RunSpec) -> bool:
                """Record the outcome of a finished future; True when its pool is broken."""
                nonlocal no_space
                broken = False
                try:
                    status = future.result()
                except store.OutOfSpace as exc:
                    status = "interrupted"
                    no_space = no_space or exc
                except Exception as exc:  # noqa: BLE001 - a dead worker is an interrupted run, not a dead sweep
                    broken = isinstance(exc, BrokenProcessPool)
                    status, full = _record_worker_crash(spec, exc)
                    no_space = no_space or full
                    if status == "interrupted":
                        self.crashed.append(spec.run_id)
                progress.finished(spec.run_id, status)
                return broken

            refill()
            while futures:
                done, _ = cf.wait(list(futures), timeout=live.interval, return_when=cf.FIRST_COMPLETED)
                if not done:
                    live.poll([(spec.run_id, logs.get(spec.run_id)) for spec in futures.values()])
                    continue
                broken = False
                for future in done:
                    broken = settle(future, futures.pop(future)) or broken
                if broken:
                    # The other runs of a broken pool were stopped with it (SIGTERM: they record themselves
                    # interrupted, so that a rerun resumes them).
                    for future in cf.wait(list(futures)).done:
                        settle(future, futures.pop(future))
                    # A killed worker (e.g. by the OOM killer) breaks the whole pool: start a fresh one so that
                    # the remaining runs still execute.
                    pool.shutdown(wait=False, cancel_futures=True)
                    _reap_workers(pool)
                    pool = new_pool()
                    if gpu_queue is not None:
                        for slot in slots:
                            gpu_queue.put(slot)
                refill()
        except KeyboardInterrupt:
            # SIGINT/SIGTERM may have reached this process alone (kill PID, a scheduler): stop the runs too, so
            # that they record themselves interrupted before this process exits (a second signal is ignored).
            _terminate_workers(pool)
            cf.wait(list(futures), timeout=STOP_WAIT_S)
            for future in futures:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            progress.close()
            print("interrupted: runs in progress are recorded as interrupted; rerun the same command to resume "
                  "(finished runs are skipped)", file=sys.stderr, flush=True)
            raise
        else:
            pool.shutdown(wait=True)
            progress.close()
        if no_space is not None:
            where = ", ".join(sorted({str(spec.out_dir) for spec in specs}))
            raise store.OutOfSpace(no_space.errno, f"{store.describe_out_of_space(no_space)}: the sweep stopped "
                                                   f"({len(pending)} run(s) not started, the runs in progress "
                                                   f"recorded interrupted); free space in {where} and rerun the "
                                                   f"same command to resume")
        return entries


#: seconds to wait for a dead worker's run lock (its killed siblings and their children exit within that)
CRASH_LOCK_WAIT_S = 10.0
#: seconds the sweep waits, when stopped, for its runs to record themselves interrupted
STOP_WAIT_S = 60.0


def _terminate_workers(pool: cf.ProcessPoolExecutor) -> None:
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            if process.is_alive():
                process.terminate()
        except (OSError, ValueError, AttributeError):
            pass


def _reap_workers(pool: cf.ProcessPoolExecutor, timeout: float = 30.0) -> None:
    """Wait for the workers of a broken pool (stopped with SIGTERM, they record their runs first) and kill
    the ones still alive after ``timeout``: a straggler would keep the pool's manager thread, which the
    interpreter joins at exit, waiting forever."""
    deadline = time.monotonic() + timeout
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5.0)
        except (OSError, ValueError, AttributeError, AssertionError):
            pass


class _LiveLines:
    """Shows the latest progress line of each running run (read from its log file) in the sweep's display:
    every 2 s on a terminal, every ``BENCHMARKS_PROGRESS_INTERVAL`` seconds (default 30) otherwise, and only
    lines that changed."""

    def __init__(self, progress: SweepProgress):
        self.progress = progress
        tty = progress.bar is not None
        default = 2.0 if tty else 30.0
        try:
            self.interval = float(os.environ.get("BENCHMARKS_PROGRESS_INTERVAL", default))
        except ValueError:
            self.interval = default
        self.interval = self.interval if progress.enabled and self.interval > 0 else None
        self.shown: dict[str, str] = {}

    def poll(self, running: list[tuple[str, str | None]]) -> None:
        for run_id, log in running:
            line = last_progress_line(log) if log else None
            if line and self.shown.get(run_id) != line:
                self.shown[run_id] = line
                self.progress.live(run_id, line)


def last_progress_line(log_path: str | os.PathLike, tail_bytes: int = 8192) -> str | None:
    """The last ``[HH:MM:SS] step ...`` line a run wrote to its log file (see ``training.history.progress_line``)."""
    try:
        from benchmarks.safe_read import open_regular

        with open_regular(log_path) as fh:  # a FIFO put in its place must not block the sweep display
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if line.startswith("[") and "] step " in line:
            return line.strip()
    return None


def _record_worker_crash(spec: RunSpec, exc: BaseException) -> tuple[str, OSError | None]:
    """A worker that died (killed, out of memory, stopped with its broken pool) may not have written its
    final record: record ``interrupted`` for it, so that a plain rerun resumes it (the run did not fail by an
    exception of its own). Returns (the run's status now, the out-of-space error when the disk is full).

    Only under the run's lock: once the dead worker's lock is gone, another sweep sharing the OUT folder may
    already have taken the run over, and its record must not be overwritten with this one's.
    """
    lock = store.RunLock(spec.run_dir)
    deadline = time.monotonic() + CRASH_LOCK_WAIT_S
    while not lock.acquire(attempts=1):
        if time.monotonic() >= deadline:
            return "running", None  # a live process owns the run; it writes the record
        time.sleep(0.05)
    try:
        record = store.read_record(spec.run_dir) or {"run_id": spec.run_id, "config": spec.config, "metrics": {},
                                                     "timing": {}, "env": store.collect_env(None)}
        if record.get("status") in store.FINISHED or record.get("status") in ("interrupted", "failed"):
            return str(record["status"]), None  # the run recorded its own end
        if isinstance(exc, BrokenProcessPool):
            why = "worker process died (killed by a signal, e.g. the OOM killer, or stopped with its pool)"
        else:
            why = f"worker error: {type(exc).__name__}: {exc}"
        record["status"] = "interrupted"
        record["error"] = f"{why}; a rerun of the sweep resumes it"
        try:
            store.write_record(spec.run_dir, record)
        except OSError as err:
            if store.out_of_space(err) is not None:
                return "interrupted", err  # still "running" on disk: with its lock free it reads as interrupted
            print(f"warning: could not record run {spec.run_id} as interrupted: {err}", file=sys.stderr, flush=True)
        return "interrupted", None
    finally:
        lock.release()


__all__ = ["EXECUTORS", "DebugExecutor", "Executor", "LocalExecutor", "SweepProgress", "detect_gpus", "get_executor",
           "last_progress_line"]
