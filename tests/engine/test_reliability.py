"""Regression tests of issue 22's faults (items 8-12) and issue 21's live progress (item 9), each fast; the
end-to-end fault injection (signals, full disk, corruption, concurrent commands) is in tests/faults/."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import store
from benchmarks.cli import main
from benchmarks.config.validate import resolve_config
from benchmarks.engine.executors import LocalExecutor, last_progress_line
from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run
from benchmarks.training import checkpoint, loop

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests.engine.tiny_task:TinyTask"


def make_spec(out, data=None, train=None) -> RunSpec:
    cfg = {"task": TINY, "data": data or {}, "optimizer": {"name": "adamp", "lr": 0.01},
           "train": {"epochs": 2, "batch_size": 16, "log_every": 2, "device": "cpu", **(train or {})}}
    resolved = resolve_config(cfg)
    return RunSpec(compute_run_id(resolved), resolved, out)


def _strip(lines):
    return [{k: v for k, v in line.items() if k != "samples_per_s"} for line in lines]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "BENCHMARKS_NO_PROGRESS": "1"}


# -- item 9: a rerun that leaves failed runs behind ---------------------------------------------------------

def test_rerun_that_skips_failed_runs_says_so_and_exits_1(write, tmp_path, capsys):
    cfg = write("f.yaml", f"task: {TINY}\noptimizer: {{name: adam}}\ntrain: {{device: cpu, batch_size: 32}}\n"
                          "grid:\n  data.fail_at_step: [null, 1]\n")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--executor", "debug"]) == 1
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--executor", "debug"]) == 1  # nothing to run, 1 failed
    assert "1 run(s) failed (rerun them with --retry-failed)" in capsys.readouterr().err


# -- item 12: stale locks, leftover temporary files ---------------------------------------------------------

def test_status_shows_a_running_run_without_a_live_lock_as_interrupted(tmp_path, capsys):
    spec = make_spec(tmp_path)
    store.write_record(spec.run_dir, {"run_id": spec.run_id, "config": spec.config, "status": "running"})
    assert main(["status", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].endswith(": 1 runs: 1 interrupted") and "stale: its process is gone" in text
    with store.RunLock(spec.run_dir) as lock:  # a live process holds it: really running
        assert lock.acquire()
        assert main(["status", str(tmp_path)]) == 0
        assert "1 running" in capsys.readouterr().out


def test_leftover_temporary_files_of_a_killed_writer_are_removed_when_the_run_restarts(tmp_path):
    spec = make_spec(tmp_path)
    spec.run_dir.mkdir(parents=True)
    leftovers = [spec.run_dir / ".checkpoint-abc123.tmp", spec.run_dir / ".record.json.x1y2.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")  # young: the checkpoint module's own 60 s rule keeps them
    assert execute_run(spec) == "done"
    assert not any(path.exists() for path in leftovers)


# -- item 11: unreadable records, lost history lines, fsync -------------------------------------------------

def test_status_counts_an_unreadable_record_as_unreadable_and_names_the_file(tmp_path, capsys):
    spec = make_spec(tmp_path)
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / store.RECORD).write_text('{"run_id": "x", "sta')
    store.write_manifest(tmp_path, "s1", {"sweep_id": "s1", "runs": [{"run_id": spec.run_id}], "status": "launched"})
    assert main(["status", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "1 unreadable" in text and "queued" not in text
    assert str(spec.run_dir / store.RECORD) in text


def test_resume_after_history_lines_were_lost_gives_the_uninterrupted_history(tmp_path):
    train = {"epochs": 3, "checkpoint_every_steps": 3}
    reference = make_spec(tmp_path / "ref", train=train)
    assert execute_run(reference) == "done"
    spec = make_spec(tmp_path / "cut", data={"preempt_at_step": 10}, train=train)
    assert execute_run(spec) == "interrupted"
    state = checkpoint.load_latest_checkpoint(spec.run_dir)
    lines = (spec.run_dir / store.HISTORY).read_text().splitlines(keepends=True)
    assert state["history_lines"] >= 3
    (spec.run_dir / store.HISTORY).write_text("".join(lines[:1]))  # lost lines the checkpoint counted
    assert execute_run(spec) == "done"
    assert _strip(store.read_history(spec.run_dir)) == _strip(store.read_history(reference.run_dir))
    assert store.read_record(spec.run_dir)["metrics"] == store.read_record(reference.run_dir)["metrics"]


def test_history_is_fsynced_before_each_checkpoint(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spec = make_spec(tmp_path, train={"checkpoint_every_steps": 4})
    assert execute_run(spec) == "done"
    history = str(spec.run_dir / store.HISTORY)
    first_checkpoint = next(i for i, p in enumerate(synced) if ".checkpoint-" in p)
    assert history in synced[:first_checkpoint]


# -- item 10: a full disk -----------------------------------------------------------------------------------

class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes, as on a full file system."""

    def __init__(self, fh, room: int):
        self._fh, self.room = fh, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def test_a_full_disk_while_checkpointing_is_out_of_space_and_the_run_interrupted(tmp_path, monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen",
                        lambda fd, mode="r", *a, **k: _FullDisk(real(fd, mode, *a, **k), 500) if "b" in mode
                        else real(fd, mode, *a, **k))
    with pytest.raises(OSError) as info:
        checkpoint.save_checkpoint(tmp_path / "c", {"w": torch_zeros(10_000)})
    assert info.value.errno == errno.ENOSPC  # was torch's RuntimeError "unexpected pos ..."
    assert not list((tmp_path / "c").glob(".checkpoint-*.tmp"))

    spec = make_spec(tmp_path, train={"checkpoint_every_steps": 2})
    with pytest.raises(store.OutOfSpace):
        execute_run(spec)
    record = store.read_record(spec.run_dir)
    assert record["status"] == "interrupted"  # was "failed", which a rerun skips
    assert record["error"].startswith("no space left on device")
    monkeypatch.setattr(checkpoint.os, "fdopen", real)  # space freed: a rerun finishes it
    assert execute_run(spec) == "done"


def torch_zeros(n):
    import torch

    return torch.zeros(n)


# -- issue 21 item 9: live progress, loggers, SLURM availability, broken pipes ------------------------------

def test_runs_log_a_progress_line_every_log_every_steps(tmp_path):
    spec = make_spec(tmp_path / "out", train={"epochs": 2, "log_every": 2})
    [entry] = LocalExecutor({"progress": False, "max_parallel": 1}).launch([spec], tmp_path / "sweep")
    text = Path(entry["log"]).read_text()
    lines = [line for line in text.splitlines() if "] step " in line]
    assert [line.split("] ", 1)[1].split(" (")[0] for line in lines] == ["step 2/8", "step 4/8", "step 6/8",
                                                                         "step 8/8"]
    assert all(" epoch " in line and " loss " in line and "samples/s" in line and "ETA" in line for line in lines)
    assert last_progress_line(entry["log"]) == lines[-1]


def test_csv_and_tensorboard_loggers_mirror_the_history_and_leave_the_run_id_alone(tmp_path):
    plain = make_spec(tmp_path / "a")
    csv_run = make_spec(tmp_path / "b", train={"logger": "csv"})
    tb_run = make_spec(tmp_path / "c", train={"logger": "tensorboard"})
    assert plain.run_id == csv_run.run_id == tb_run.run_id
    assert execute_run(csv_run) == "done" and execute_run(tb_run) == "done"
    import csv

    rows = list(csv.DictReader(open(csv_run.run_dir / "metrics.csv")))
    losses = [float(r["value"]) for r in rows if r["split"] == "train" and r["metric"] == "loss"]
    assert losses == [l["loss"] for l in store.read_history(csv_run.run_dir) if l["split"] == "train"]
    assert list((tb_run.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(Exception, match="train.logger"):
        make_spec(tmp_path / "d", train={"logger": "wandb"})


def _fake_slurm(folder: Path, ping: str) -> str:
    folder.mkdir()
    for name, body in (("sbatch", "exit 1"), ("scontrol", f"echo '{ping}'")):
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(folder)


@pytest.mark.parametrize("setup", ["no sbatch", "controller down"])
def test_slurm_unavailable_is_a_one_line_error_before_anything_is_written(write, tmp_path, monkeypatch, capsys,
                                                                        setup):
    cfg = write("s.yaml", f"task: {TINY}\noptimizer: {{name: adam}}\ntrain: {{device: cpu}}\n")
    if setup == "no sbatch":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    else:
        monkeypatch.setenv("PATH", _fake_slurm(tmp_path / "bin", "Slurmctld(primary) at head is DOWN"))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--executor", "slurm"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: --executor slurm: ") and "nothing was submitted" in errors[0]
    assert not out.exists()


def test_status_piped_into_a_closed_reader_ends_without_a_traceback(tmp_path):
    for i in range(200):
        store.write_record(tmp_path / "runs" / f"r{i:03d}", {"run_id": f"r{i:03d}", "status": "failed",
                                                             "error": "x" * 200})
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks", "status", str(tmp_path)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # what `| head` does once it has its lines
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
