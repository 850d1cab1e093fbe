"""Executors: resource planning of the local executor, the registry, sweep progress, crash handling."""

from __future__ import annotations

import concurrent.futures as cf
import io
import multiprocessing
import signal

import pytest

from benchmarks import store
from benchmarks.config.validate import resolve_config
from benchmarks.engine import executors
from benchmarks.engine.executors import EXECUTORS, DebugExecutor, LocalExecutor, SweepProgress, get_executor
from benchmarks.engine.spec import RunSpec, compute_run_id


def test_registry_names():
    assert set(EXECUTORS) == {"debug", "local", "slurm"}
    assert EXECUTORS["slurm"] == "benchmarks.engine.slurm:SlurmExecutor"
    assert isinstance(get_executor("debug", {"progress": False}), DebugExecutor)
    with pytest.raises(KeyError, match="unknown executor 'x'; known: debug, local, slurm"):
        get_executor("x")


def test_cpu_slots_split_the_cores(monkeypatch):
    monkeypatch.setattr(executors, "detect_gpus", lambda: [])
    monkeypatch.setattr(executors.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert LocalExecutor({}).plan_slots(100) == (16, 1, [])
    assert LocalExecutor({"max_parallel": 4}).plan_slots(100) == (4, 4, [])
    assert LocalExecutor({"max_parallel": 3}).plan_slots(100) == (3, 5, [])
    assert LocalExecutor({"max_parallel": 4}).plan_slots(2) == (2, 8, [])  # never more workers than runs


def test_gpu_slots_one_run_per_gpu_unless_asked(monkeypatch):
    monkeypatch.setattr(executors, "detect_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(executors.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert LocalExecutor({}).plan_slots(10) == (2, 8, ["0", "1"])
    assert LocalExecutor({"runs_per_gpu": 2}).plan_slots(10) == (4, 4, ["0", "0", "1", "1"])
    assert LocalExecutor({"runs_per_gpu": 2, "max_parallel": 3}).plan_slots(10) == (3, 5, ["0", "0", "1"])
    assert LocalExecutor({}).plan_slots(1) == (1, 16, ["0"])


def test_detect_gpus_respects_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert executors.detect_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert executors.detect_gpus() == []


def test_sweep_progress_counts():
    stream = io.StringIO()
    progress = SweepProgress(3, stream=stream)
    progress.started(2)
    progress.finished("a", "done")
    progress.started()
    progress.finished("b", "failed")
    progress.finished("c", "diverged")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["[1/3] 1 done, 1 running  a: done", "[2/3] 1 done, 1 running, 1 failed  b: failed",
                     "[3/3] 1 done, 0 running, 1 diverged, 1 failed  c: diverged",
                     "sweep: [3/3] 1 done, 0 running, 1 diverged, 1 failed"]


def test_debug_executor_entries(tmp_path):
    resolved = resolve_config({"task": "tests.engine.tiny_task:TinyTask", "optimizer": {"name": "adam"},
                               "train": {"batch_size": 64, "device": "cpu"}})
    spec = RunSpec(compute_run_id(resolved), resolved, tmp_path)
    entries = DebugExecutor({"progress": False}).launch([spec], tmp_path / "sweeps" / "s")
    assert entries == [{"run_id": spec.run_id, "executor": "debug", "job_id": None, "log": None}]
    assert store.read_record(spec.run_dir)["status"] == "done"


def test_worker_crash_is_recorded_as_interrupted(tmp_path):
    """A run whose worker died did not fail by an exception of its own: a plain rerun must resume it."""
    resolved = resolve_config({"task": "tests.engine.tiny_task:TinyTask", "optimizer": {"name": "adam"}})
    spec = RunSpec(compute_run_id(resolved), resolved, tmp_path)
    spec.run_dir.mkdir(parents=True)
    store.write_record(spec.run_dir, {"run_id": spec.run_id, "config": resolved, "status": "running"})
    assert executors._record_worker_crash(spec, cf.process.BrokenProcessPool("gone")) == ("interrupted", None)
    record = store.read_record(spec.run_dir)
    assert record["status"] == "interrupted" and record["error"].startswith("worker process died")


def test_worker_crash_leaves_an_interrupted_run_interrupted(tmp_path):
    """A run that recorded its own interruption (Ctrl-C) resumes on a rerun: a broken pool noticed afterwards
    must not turn it into ``failed``, which a rerun skips."""
    resolved = resolve_config({"task": "tests.engine.tiny_task:TinyTask", "optimizer": {"name": "adam"}})
    spec = RunSpec(compute_run_id(resolved), resolved, tmp_path)
    spec.run_dir.mkdir(parents=True)
    store.write_record(spec.run_dir, {"run_id": spec.run_id, "config": resolved, "status": "interrupted"})
    executors._record_worker_crash(spec, RuntimeError("killed"))
    assert store.read_record(spec.run_dir)["status"] == "interrupted"


def _sigint_disposition():
    return str(signal.getsignal(signal.SIGINT))


def test_pool_workers_start_with_ctrl_c_ignored_and_take_it_only_while_running_a_run(monkeypatch):
    """An idle or starting worker killed by Ctrl-C would break the pool (its runs recorded as failed)."""
    ctx = multiprocessing.get_context("spawn")
    before = signal.getsignal(signal.SIGINT)
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        with executors._spawn_ignoring_sigint():
            future = pool.submit(_sigint_disposition)
        assert signal.getsignal(signal.SIGINT) is before  # this process takes Ctrl-C again
        assert future.result(timeout=120) == str(signal.SIG_IGN)

    seen = []
    monkeypatch.setattr(executors, "execute_run", lambda spec: seen.append(signal.getsignal(signal.SIGINT)) or "done")
    try:
        assert executors._worker_run(object(), None) == "done"
        assert seen == [executors._on_stop_signal]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # idle again: ignored
    finally:
        signal.signal(signal.SIGINT, before)
