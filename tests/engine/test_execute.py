"""execute_run and the shared loop: records, histories, divergence, failures, resume, schedules."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import store
from benchmarks.config.validate import resolve_config
from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run
from benchmarks.training import keys, loop

TINY = "tests.engine.tiny_task:TinyTask"


def make_spec(out, data=None, train=None, optimizer=None, task=TINY) -> RunSpec:
    cfg = {"task": task, "data": data or {}, "optimizer": optimizer or {"name": "adamp", "lr": 0.01},
           "train": {"epochs": 2, "batch_size": 16, "log_every": 2, "device": "cpu", **(train or {})}}
    resolved = resolve_config(cfg)
    return RunSpec(compute_run_id(resolved), resolved, out)


def history(spec):
    return store.read_history(spec.run_dir)


def test_done_run_writes_record_and_history(tmp_path):
    spec = make_spec(tmp_path)
    assert execute_run(spec) == "done"
    record = store.read_record(spec.run_dir)
    assert record["run_id"] == spec.run_id and record["status"] == "done" and record["error"] is None
    assert record["config"] == spec.config
    assert set(record["metrics"]) == {"val_loss", "val_r2", "best_val_loss", "train_loss"}
    assert record["metrics"]["best_val_loss"] <= record["metrics"]["val_loss"]
    assert record["timing"]["steps"] == 8 and record["timing"]["step_time_s"] > 0
    assert {"started", "ended", "wall_s", "steps", "step_time_s"} <= set(record["timing"])
    assert set(record["env"]) >= {"torch", "python", "device", "git_commit", "host", "adamp_fused_backend"}
    assert record["env"]["torch"] == torch.__version__
    lines = history(spec)
    train = [l for l in lines if l["split"] == "train"]
    val = [l for l in lines if l["split"] == "val"]
    assert [l["step"] for l in train] == [2, 4, 6, 8] and [l["step"] for l in val] == [4, 8]
    assert [l["epoch"] for l in val] == [1, 2]
    assert all({"loss", "lr", "samples_per_s", "abs_err"} <= set(l) for l in train)
    assert val[-1]["val_loss"] == record["metrics"]["val_loss"]
    assert not (spec.run_dir / "traceback.txt").exists()


def test_finished_run_is_not_run_again(tmp_path):
    spec = make_spec(tmp_path)
    assert execute_run(spec) == "done"
    before = (spec.run_dir / "record.json").read_text()
    assert execute_run(spec) == "done"
    assert (spec.run_dir / "record.json").read_text() == before


def test_nan_loss_is_diverged_and_stops_early(tmp_path):
    spec = make_spec(tmp_path, data={"nan_at_step": 3}, train={"epochs": 5})
    assert execute_run(spec) == "diverged"
    record = store.read_record(spec.run_dir)
    assert record["status"] == "diverged"
    assert record["error"] == "non-finite training loss (nan) at step 4"
    assert record["timing"]["steps"] == 4  # stopped at the first log point after the NaN, not after 20 steps
    assert "val_loss" not in record["metrics"] or math.isfinite(record["metrics"]["val_loss"])


def test_exception_is_failed_with_traceback_and_does_not_raise(tmp_path):
    spec = make_spec(tmp_path, data={"fail_at_step": 3})
    assert execute_run(spec) == "failed"
    record = store.read_record(spec.run_dir)
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom at step 3"
    text = (spec.run_dir / "traceback.txt").read_text()
    assert "Traceback" in text and "boom at step 3" in text and "tiny_task.py" in text


def test_locked_run_is_left_to_its_owner(tmp_path):
    spec = make_spec(tmp_path)
    with store.RunLock(spec.run_dir) as lock:
        assert lock.acquire()
        assert execute_run(spec) == "running"
    assert store.read_record(spec.run_dir) is None
    assert execute_run(spec) == "done"


def test_preemption_checkpoints_and_rerun_resumes_to_identical_result(tmp_path):
    train = {"epochs": 3, "checkpoint_every_steps": 4, "schedule": {"name": "cosine", "warmup_epochs": 1}}
    reference = make_spec(tmp_path / "ref", train=train)
    assert execute_run(reference) == "done"

    spec = make_spec(tmp_path / "pre", data={"preempt_at_step": 6}, train=train)
    assert execute_run(spec) == "interrupted"
    record = store.read_record(spec.run_dir)
    assert record["status"] == "interrupted" and record["error"].startswith("preempted: checkpoint written at step 6")
    assert (spec.run_dir / "checkpoint.pt").exists()

    assert execute_run(spec) == "done"
    resumed = store.read_record(spec.run_dir)
    assert resumed["timing"]["resumed_from_step"] == 6 and resumed["attempt"] == 2
    ref = store.read_record(reference.run_dir)
    assert resumed["metrics"] == ref["metrics"]
    strip = lambda lines: [{k: v for k, v in l.items() if k != "samples_per_s"} for l in lines]  # noqa: E731
    assert strip(history(spec)) == strip(history(reference))


def test_max_steps_and_eval_every(tmp_path):
    spec = make_spec(tmp_path, train={"epochs": 10, "max_steps": 9, "eval_every": 2})
    assert execute_run(spec) == "done"
    lines = history(spec)
    assert [l["step"] for l in lines if l["split"] == "val"] == [8, 9]
    assert store.read_record(spec.run_dir)["timing"]["steps"] == 9


def test_schedule_is_stepped_per_step(tmp_path):
    spec = make_spec(tmp_path, train={"epochs": 4, "log_every": 1, "schedule": {"name": "step", "step_size": 2,
                                                                                  "gamma": 0.5, "warmup_epochs": 1}},
                     optimizer={"name": "sgd", "lr": 0.1})
    assert execute_run(spec) == "done"
    lrs = [l["lr"] for l in history(spec) if l["split"] == "train"]
    # 4 steps per epoch; the logged lr is the one for the NEXT step: warmup over 4 steps, then x0.5 at epoch 2
    expected = [0.1 * f for f in (0.5, 0.75, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25)]
    assert lrs == pytest.approx(expected)


@pytest.mark.parametrize("name, epoch, factor", [
    ("constant", 5.0, 1.0), ("cosine", 0.0, 1.0), ("cosine", 5.0, 0.5), ("cosine", 10.0, 0.0),
    ("multistep", 2.99, 1.0), ("multistep", 3.0, 0.1), ("multistep", 6.0, 0.01),
])
def test_lr_factor(name, epoch, factor):
    schedule = {**keys.SCHEDULE_COMMON, **keys.SCHEDULES[name], "name": name}
    if name == "multistep":
        schedule["milestones"] = [3.0, 6.0]
    assert keys.lr_factor(schedule, epoch, 10.0, 0, 1) == pytest.approx(factor)


def test_precision_grad_clip_and_diagnostics(tmp_path, monkeypatch):
    calls = []

    def fake_collect(model, optimizer):
        calls.append(type(optimizer).__name__)
        return {"weight_norm": 1.5, "flagged_fraction": 0.25}

    monkeypatch.setattr(loop, "_diagnostics_collect", lambda: fake_collect)
    spec = make_spec(tmp_path, train={"precision": "bf16", "grad_clip": 0.5, "diagnostics": "epoch"})
    assert execute_run(spec) == "done"
    diag = [l for l in history(spec) if l["split"] == "diag"]
    assert [(l["epoch"], l["weight_norm"], l["flagged_fraction"]) for l in diag] == [(1, 1.5, 0.25), (2, 1.5, 0.25)]
    assert calls == ["AdamP", "AdamP"]
    fp16 = make_spec(tmp_path, train={"precision": "fp16", "epochs": 1})
    assert execute_run(fp16) == "done", store.read_record(fp16.run_dir)["error"]


def test_history_is_valid_jsonl(tmp_path):
    spec = make_spec(tmp_path)
    execute_run(spec)
    for line in (spec.run_dir / "history.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line), dict)
