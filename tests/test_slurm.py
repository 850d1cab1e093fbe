"""The SLURM executor: settings, sbatch script, status, array splitting; and a real SLURM end to end.

Tests marked ``slurm`` need a running SLURM (``sudo bash scripts/slurm_local.sh up``) and run only when
``BENCHMARKS_SLURM`` is set (CI sets it after starting the local cluster). The others need no SLURM.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
import torch
from submitit.slurm.slurm import _make_sbatch_string

from benchmarks.config.errors import ConfigError
from benchmarks.engine import slurm, slurm_status as slurm_status_module
from benchmarks.engine.slurm import SlurmExecutor, snapshot_code
from benchmarks.engine.slurm_job import SlurmRun
from benchmarks.engine.slurm_settings import add_cli_arguments, merge_settings, settings_from_args
from benchmarks.engine.slurm_status import slurm_status, slurm_status_report
from benchmarks.engine.spec import RunSpec, compute_run_id

from .runs import assert_same_state

TINY = "tests.engine.tiny_task:TinyTask"
needs_slurm = pytest.mark.skipif(not os.environ.get("BENCHMARKS_SLURM"),
                                 reason="set BENCHMARKS_SLURM=1 with a running SLURM (scripts/slurm_local.sh up)")


def _spec(out_dir: Path, seed: int = 0, slurm_section: dict | None = None, **data) -> RunSpec:
    from benchmarks.config.validate import resolve_config

    raw = {
        "task": TINY,
        "data": {"n": 64, **data},
        "optimizer": {"name": "adamp", "lr": 0.01},
        "train": {"epochs": 4, "batch_size": 8, "seed": seed, "log_every": 4, "checkpoint_every_steps": 4,
                  "device": "cpu", "num_threads": 1},
    }
    if slurm_section is not None:
        raw["slurm"] = slurm_section
    config = resolve_config(raw)
    return RunSpec(run_id=compute_run_id(config), config=config, out_dir=out_dir)


# -- settings ---------------------------------------------------------------------------------------------

def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(argv)


def test_cli_flags_override_the_config_section() -> None:
    args = _parse(["--partition", "gpu", "--time", "1-02:00:00", "--gpus-per-node", "4", "--tasks-per-node", "4",
                   "--mem", "32G", "--sbatch-extra", "exclusive", "--sbatch-extra", "mail-type=END"])
    section = {"partition": "cpu", "time": 30, "account": "proj", "qos": "low",
               "sbatch_extra": {"comment": "adamp", "mail-type": "FAIL"}}
    merged = merge_settings(section, settings_from_args(args))
    assert merged["partition"] == "gpu"  # flag wins
    assert merged["account"] == "proj" and merged["qos"] == "low"  # config kept where no flag was given
    assert merged["time"] == 26 * 60
    assert merged["gpus_per_node"] == 4 and merged["tasks_per_node"] == 4 and merged["mem"] == "32G"
    assert merged["sbatch_extra"] == {"comment": "adamp", "mail-type": "END", "exclusive": True}
    assert merged["cpus_per_task"] == 1 and merged["array_parallelism"] == 256  # defaults
    assert merge_settings(None, settings_from_args(_parse([]))) == merge_settings({}, {})


@pytest.mark.parametrize("value, minutes", [(90, 90), ("90", 90), ("1:30:00", 90), ("2-00:00:00", 2880),
                                            ("45:30", 46), ("1-12", 2160)])
def test_time_formats(value, minutes) -> None:
    assert merge_settings({"time": value}, None)["time"] == minutes


@pytest.mark.parametrize("section, match", [
    ({"partion": "gpu"}, r"unknown key `partion`.*did you mean `partition`"),
    ({"time": "soon"}, r"slurm\.time.*\[D-\]HH:MM"),
    ({"time": 0}, r"slurm\.time.*positive"),
    ({"mem": "lots"}, r"slurm\.mem"),
    ({"cpus_per_task": 0}, r"slurm\.cpus_per_task.*>= 1"),
    ({"nodes": 1.5}, r"slurm\.nodes"),
    ({"sbatch_extra": ["exclusive"]}, r"slurm\.sbatch_extra.*mapping"),
])
def test_bad_settings_are_config_errors(section, match) -> None:
    with pytest.raises(ConfigError, match=match):
        merge_settings(section, None)


def test_bad_config_section_fails_before_submitting(tmp_path: Path) -> None:
    spec = _spec(tmp_path, slurm_section={"gpus": 2})
    with pytest.raises(ConfigError, match=r"unknown key `gpus`.*" + spec.run_id):
        SlurmExecutor({"slurm_cluster": "debug"}).launch([spec], tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "slurm").exists()


def test_sbatch_script(tmp_path: Path) -> None:
    settings = merge_settings({"partition": "gpu", "account": "proj", "qos": "high", "constraint": "a100",
                               "time": "2:00:00", "gpus_per_node": 8, "tasks_per_node": 8, "cpus_per_task": 10,
                               "mem": 500, "array_parallelism": 3, "setup": ["module load cuda"],
                               "sbatch_extra": {"exclusive": True, "comment": "adamp sweep"}}, None)
    code = tmp_path / "code" / "stamp"
    params = SlurmExecutor.submitit_parameters(settings, code)
    script = _make_sbatch_string(command="python -m submitit.core._submit x", folder=tmp_path / "%j",
                                 map_count=10, **params)
    for line in ("--partition=gpu", "--account=proj", "--qos=high", "--constraint=a100", "--time=120",
                 "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=10", "--mem=500G",
                 "--array=0-9%3", "--signal=USR2@120", "#SBATCH --exclusive\n", "--comment='adamp sweep'"):
        assert line in script, line
    # the job imports the snapshot, not the live checkout
    assert script.index("module load cuda") < script.index(f"export PYTHONPATH={code}")
    assert script.index(f"export PYTHONPATH={code}") < script.index("srun")


def test_snapshot_copies_the_packages_it_needs(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert slurm._referenced_packages([spec]) == ["tests"]
    code = snapshot_code(tmp_path / "sweep", ("benchmarks", "adamp", "tests", "torch"))
    assert code.parent == tmp_path / "sweep" / "code"
    assert (code / "benchmarks" / "engine" / "slurm.py").read_bytes() == Path(slurm.__file__).read_bytes()
    assert (code / "adamp").is_dir() and (code / "tests" / "engine" / "tiny_task.py").is_file()
    assert not (code / "torch").exists()  # installed packages do not change with the checkout
    assert not list(code.rglob("__pycache__")) and not list((tmp_path / "sweep" / "code").glob(".partial-*"))


def test_checkpointable_requeues_the_same_run(tmp_path: Path) -> None:
    job = SlurmRun("/frozen/code", grace_s=7.0)
    job._signal = 12  # seen by one process; must not travel with the requeued submission
    assert isinstance(job, submitit.helpers.Checkpointable)
    spec = _spec(tmp_path)
    delayed = job.checkpoint(spec)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.args == (spec,) and isinstance(delayed.function, SlurmRun)
    copy = pickle.loads(pickle.dumps(delayed.function))
    assert (copy.code_dir, copy.grace_s, copy._signal) == ("/frozen/code", 7.0, None)


# -- the submission path without SLURM: submitit's DebugExecutor ---------------------------------------

def test_launch_splits_arrays_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pdb

    # DebugExecutor drops into pdb.post_mortem on a failing job, which under pytest hides the real error
    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: None)
    sizes: list[int] = []
    original = submitit.DebugExecutor.map_array

    def spy(self, fn, *iterables):
        sizes.append(len(iterables[0]))
        return original(self, fn, *iterables)

    monkeypatch.setattr(submitit.DebugExecutor, "map_array", spy)
    specs = [_spec(tmp_path / "out", seed=s) for s in range(5)]
    executor = SlurmExecutor({"slurm_cluster": "debug", "slurm_max_array_size": 2})
    entries = executor.launch(specs, tmp_path / "out" / "sweeps" / "s")
    assert sizes == [2, 2, 1]
    assert [e["run_id"] for e in entries] == [s.run_id for s in specs]
    assert all(e["executor"] == "slurm" and e["job_id"] and e["log"] for e in entries)
    results = [job.result() for job in executor.jobs]
    assert [r["status"] for r in results] == ["done"] * 5
    for spec in specs:
        assert json.loads((spec.run_dir / "record.json").read_text())["status"] == "done"


# -- status -----------------------------------------------------------------------------------------------

class _FakeScheduler:
    """Stands in for sacct/squeue: answers from canned output and counts the calls."""

    def __init__(self, sacct: str, squeue: str = "", sacct_rc: int = 0):
        self.sacct, self.squeue, self.sacct_rc = sacct, squeue, sacct_rc
        self.calls: list[str] = []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd[0])
        if cmd[0] == "sacct":
            return subprocess.CompletedProcess(cmd, self.sacct_rc, self.sacct, "" if self.sacct_rc == 0 else
                                               "Slurm accounting storage is disabled")
        return subprocess.CompletedProcess(cmd, 0, self.squeue, "")


def _write_record(out: Path, run_id: str, status: str) -> None:
    run_dir = out / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").write_text(json.dumps({"run_id": run_id, "status": status}))


def test_status_per_run_and_polling_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{"run_id": f"r{i}", "executor": "slurm", "job_id": f"12_{i}", "log": f"/logs/12_{i}_0_log.out"}
               for i in range(7)]
    _write_record(tmp_path, "r0", "done")
    _write_record(tmp_path, "r1", "running")
    _write_record(tmp_path, "r2", "interrupted")
    _write_record(tmp_path, "r5", "running")
    _write_record(tmp_path, "r6", "failed")
    sacct = "\n".join([
        "12_0|COMPLETED|0:0|vm",
        "12_1|RUNNING|0:0|vm",
        "12_2|REQUEUED|0:0|vm", "12_2|PENDING|0:0|None assigned",  # -D: every attempt, oldest first
        "12_[3-4%2]|PENDING|0:0|None assigned",  # array tasks not started yet
        "12_5|TIMEOUT|0:0|vm",
        "12_6|FAILED|1:0|vm",
    ]) + "\n"
    fake = _FakeScheduler(sacct)
    monkeypatch.setattr(slurm_status_module.subprocess, "run", fake)
    states = slurm_status(entries, tmp_path)
    got = {r: v["state"] for r, v in states.items()}
    assert got == {"r0": "done", "r1": "running", "r2": "requeued", "r3": "pending", "r4": "pending",
                   "r5": "failed", "r6": "failed"}
    assert states["r2"]["attempts"] == 2 and states["r5"]["slurm_state"] == "TIMEOUT"
    assert fake.calls == ["sacct"]
    # within 30 s the scheduler is not asked again, even by another process (the cache is a file)
    slurm_status(entries, tmp_path)
    assert fake.calls == ["sacct"]
    report = slurm_status_report(tmp_path, [{"runs": entries}])
    assert report.splitlines()[0] == "slurm: 7 runs: 2 pending, 1 running, 1 requeued, 1 done, 2 failed"
    assert "r5  failed    job 12_5  TIMEOUT" in report and "log /logs/12_5_0_log.out" in report
    # an expired cache is refreshed
    slurm_status(entries, tmp_path, max_age_s=0)
    assert fake.calls == ["sacct", "sacct"]


def test_status_without_accounting_uses_squeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{"run_id": f"r{i}", "executor": "slurm", "job_id": f"7_{i}", "log": None} for i in range(3)]
    _write_record(tmp_path, "r0", "done")
    _write_record(tmp_path, "r2", "running")  # its job is gone from the queue: it died
    fake = _FakeScheduler("", squeue="7_1|PENDING|Priority\n", sacct_rc=1)
    monkeypatch.setattr(slurm_status_module.subprocess, "run", fake)
    got = {r: v["state"] for r, v in slurm_status(entries, tmp_path, max_age_s=0).items()}
    assert got == {"r0": "done", "r1": "pending", "r2": "failed"}
    assert fake.calls == ["sacct", "squeue"]


def test_runs_still_queued_are_not_submitted_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import store

    out = tmp_path / "out"
    specs = [_spec(out, seed=s) for s in range(3)]
    logs = tmp_path / "out" / "sweeps" / "old" / "slurm"
    entries = [{"run_id": s.run_id, "executor": "slurm", "job_id": f"9_{i}", "log": str(logs / f"9_{i}" / "x.out")}
               for i, s in enumerate(specs)]
    store.write_manifest(out, "old", {"sweep_id": "old", "executor": "slurm", "runs": entries})
    script = logs / ".submission_file_1.sh"
    fake = _FakeScheduler("", squeue=f"9_0|RUNNING|None|{script}\n9_1|PENDING|Priority|{script}\n"
                                     f"9_2|PENDING|Priority|/elsewhere/slurm/.submission_file_2.sh\n")
    monkeypatch.setattr(slurm_status_module.subprocess, "run", fake)
    # 9_2 was reused by somebody else's job after the cluster was reinstalled: not ours
    assert sorted(slurm._active_jobs(specs)) == sorted([specs[0].run_id, specs[1].run_id])


# -- a real SLURM -----------------------------------------------------------------------------------------

def _wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _record(spec: RunSpec) -> dict:
    try:
        return json.loads((spec.run_dir / "record.json").read_text())
    except (OSError, ValueError):
        return {}


def _signal(job_id: str, sig: str) -> None:
    """``scancel --signal`` a running array task, without letting scancel signal it again later.

    Slurm 22.05 delivers the signal to a running task of an array that still has pending tasks, yet answers
    "Job can not be altered now, try again later"; scancel then retries for about a minute and, once the
    requeued task runs again, signals it a second time. The first attempt is the one wanted: stop scancel
    after it.
    """
    proc = subprocess.Popen(["scancel", f"--signal={sig}", job_id], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=30)
    else:
        assert proc.returncode == 0, proc.stdout.read()


def _sacct_states(job_id: str) -> list[str]:
    proc = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", job_id, "--format=JobID,State"],
                          capture_output=True, text=True, timeout=60)
    return [line.split("|")[1].split()[0] for line in proc.stdout.splitlines() if line.startswith(job_id + "|")]


@pytest.mark.slurm
@needs_slurm
@pytest.mark.timeout(300)
def test_job_array_survives_requeue_and_preemption(tmp_path: Path) -> None:
    """4 runs as one array: one is killed and requeued (``scontrol requeue``), one gets the pre-timeout
    signal. All must end ``done``; the two interrupted ones resumed from a checkpoint, with final weights and
    evaluation metrics equal to the same runs never interrupted. Launching again while the jobs are queued
    must not submit them twice.
    """
    from benchmarks import store
    from benchmarks.engine.spec import execute_run

    out = tmp_path / "out"
    # sleep_s stretches the two runs to be interrupted to a few seconds, so that they are hit mid-way
    specs = [_spec(out, seed=s, sleep_s=0.2 if s < 2 else 0.0, slurm_section={"time": 5}) for s in range(4)]
    options = {"slurm_partition": os.environ.get("BENCHMARKS_SLURM_PARTITION") or None}
    t0 = time.monotonic()
    entries = SlurmExecutor(options).launch(specs, out / "sweeps" / "first")
    assert time.monotonic() - t0 < 30, "launch must return without waiting for the jobs"
    array = entries[0]["job_id"].split("_")[0]
    killed, signalled = entries[0], entries[1]
    try:
        assert [e["job_id"] for e in entries] == [f"{array}_{i}" for i in range(4)]  # one array
        store.write_manifest(out, "first", {"sweep_id": "first", "executor": "slurm", "runs": entries})
        again = SlurmExecutor(options).launch(specs, out / "sweeps" / "second")
        assert [e["job_id"] for e in again] == [e["job_id"] for e in entries]  # queued/running: not resubmitted

        # a hard requeue (node failure, admin): the job is killed and starts again from its last checkpoint
        _wait(lambda: (specs[0].run_dir / "checkpoint.pt").exists(), 120, "a checkpoint of run 0")
        assert _record(specs[0]).get("status") == "running"
        subprocess.run(["scontrol", "requeue", killed["job_id"]], check=True, timeout=30)
        # preemption / time limit: the job gets USR2, checkpoints at the next step, requeues itself
        _wait(lambda: (specs[1].run_dir / "checkpoint.pt").exists(), 120, "a checkpoint of run 1")
        assert _record(specs[1]).get("status") == "running"
        _signal(signalled["job_id"], "USR2")
        _wait(lambda: _record(specs[1]).get("status") == "interrupted", 60, "run 1 to checkpoint and stop")
        _wait(lambda: slurm_status(entries, out, max_age_s=0)[specs[1].run_id]["state"] == "requeued", 30,
              "status to show run 1 requeued")

        # meanwhile: the same two runs, uninterrupted, in this process
        reference = [_spec(tmp_path / "reference", seed=s, sleep_s=0.2, slurm_section={"time": 5}) for s in (0, 1)]
        assert [execute_run(r) for r in reference] == ["done", "done"]

        _wait(lambda: all(_record(s).get("status") == "done" for s in specs), 240, "every run to finish")
    finally:
        subprocess.run(["scancel", array], timeout=30)

    assert {v["state"] for v in slurm_status(entries, out, max_age_s=0).values()} == {"done"}
    assert slurm_status_report(out, max_age_s=0).splitlines()[0] == "slurm: 4 runs: 4 done"
    for spec, entry, ref in ((specs[0], killed, reference[0]), (specs[1], signalled, reference[1])):
        record = _record(spec)
        assert record["attempt"] >= 2 and record["timing"]["resumed_from_step"] >= 4, record["timing"]
        assert "REQUEUED" in _sacct_states(entry["job_id"])
        ref_record = _record(ref)
        for key in ("val_loss", "val_r2", "best_val_loss"):
            assert record["metrics"][key] == ref_record["metrics"][key], key
        got = torch.load(spec.run_dir / "checkpoint.pt", weights_only=True)
        want = torch.load(ref.run_dir / "checkpoint.pt", weights_only=True)
        assert got["step"] == want["step"] == 32
        for name in got["model"]:
            assert torch.equal(got["model"][name], want["model"][name]), name
    for spec in specs[2:]:
        assert _record(spec)["attempt"] == 1
    log = Path(signalled["log"]).read_text()
    assert "code from " + str(out / "sweeps" / "first" / "code") in log  # ran the frozen copy
    assert "checkpointed after signal" in log


@pytest.mark.slurm
@needs_slurm
@pytest.mark.timeout(330)
def test_multi_task_job_trains_with_ddp(tmp_path: Path) -> None:
    """tasks_per_node=2: two processes of one job form a torch.distributed group (gloo on CPUs)."""
    spec = _spec(tmp_path / "out", slurm_section={"time": 5, "tasks_per_node": 2})
    executor = SlurmExecutor({"slurm_partition": os.environ.get("BENCHMARKS_SLURM_PARTITION") or None})
    entries = executor.launch([spec], tmp_path / "out" / "sweeps" / "ddp")
    try:
        job = executor.jobs[0]
        # results() has no timeout; the job needs both CPUs, so it may wait for the other SLURM test's array
        _wait(lambda: job.done(force_check=True), 300, "the DDP job", interval=1.0)
        results = job.results()
    finally:
        subprocess.run(["scancel", entries[0]["job_id"]], timeout=30)
    assert sorted((r["rank"], r["world_size"], r["status"]) for r in results) == [(0, 2, "done"), (1, 2, "done")]
    record = _record(spec)
    assert record["status"] == "done" and record["env"]["world_size"] == 2


_LOCAL_RANK = """
import json, sys
from pathlib import Path
from benchmarks.engine.spec import RunSpec, execute_run
spec = json.loads(Path(sys.argv[1]).read_text())
print(execute_run(RunSpec(run_id=spec["run_id"], config=spec["config"], out_dir=Path(spec["out_dir"]))))
"""


def _two_local_ranks(spec: RunSpec, tmp: Path) -> None:
    """The same run as 2 DDP processes started here (WORLD_SIZE/RANK/MASTER_* as torchrun sets them)."""
    import socket

    spec_file = tmp / "reference-spec.json"
    spec_file.write_text(json.dumps({"run_id": spec.run_id, "config": spec.config, "out_dir": str(spec.out_dir)}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen(
        [sys.executable, "-c", _LOCAL_RANK, str(spec_file)], cwd=repo, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(repo), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
        for rank in range(2)]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0 and out.strip().endswith("done"), err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)


@pytest.mark.slurm
@needs_slurm
@pytest.mark.timeout(420)
def test_multi_task_ddp_job_requeued_mid_run_resumes_exactly(tmp_path: Path) -> None:
    """tasks_per_node=2 (2 DDP ranks, gloo): the job is requeued (``scontrol requeue``: both ranks killed)
    after its first checkpoint, starts again on 2 ranks, resumes, and ends with the metrics and weights of
    the same run on 2 ranks never interrupted."""
    # sleep_s stretches the run (32 steps) to several seconds, so that the requeue lands mid-way
    spec = _spec(tmp_path / "out", seed=5, sleep_s=0.2, slurm_section={"time": 5, "tasks_per_node": 2})
    executor = SlurmExecutor({"slurm_partition": os.environ.get("BENCHMARKS_SLURM_PARTITION") or None})
    entries = executor.launch([spec], tmp_path / "out" / "sweeps" / "ddp")
    job_id = entries[0]["job_id"]
    try:
        _wait(lambda: (spec.run_dir / "checkpoint.pt").exists(), 180, "the first checkpoint of the DDP job")
        assert _record(spec).get("status") == "running"
        subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
        reference = _spec(tmp_path / "reference", seed=5, sleep_s=0.2, slurm_section={"time": 5, "tasks_per_node": 2})
        _two_local_ranks(reference, tmp_path)  # meanwhile (the requeued job waits ~20 s to start again)
        _wait(lambda: _record(spec).get("status") == "done", 300, "the requeued DDP job to finish", interval=1.0)
    finally:
        subprocess.run(["scancel", job_id], timeout=30)
    record, ref_record = _record(spec), _record(reference)
    assert record["env"]["world_size"] == ref_record["env"]["world_size"] == 2
    assert record["attempt"] >= 2 and record["timing"]["resumed_from_step"] >= 4, record["timing"]
    assert "REQUEUED" in _sacct_states(job_id)
    assert record["metrics"] == ref_record["metrics"]  # exact
    got = torch.load(spec.run_dir / "checkpoint.pt", weights_only=True)
    want = torch.load(reference.run_dir / "checkpoint.pt", weights_only=True)
    assert got["step"] == want["step"] == 32
    for name in got["model"]:
        assert torch.equal(got["model"][name], want["model"][name]), name
    assert_same_state(got["optimizer"], want["optimizer"], "optimizer")
    assert_same_state(got["scheduler"], want["scheduler"], "scheduler")
