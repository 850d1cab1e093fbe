"""Regression tests of engine bugs: resume edge cases, config errors, concurrent writers."""

from __future__ import annotations

import math

import pytest

from benchmarks import store
from benchmarks.cli import main
from benchmarks.config.validate import resolve_config
from benchmarks.engine import executors
from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run
from benchmarks.training import keys

from tests.engine.tiny_task import TinyTask

TINY = "tests.engine.tiny_task:TinyTask"


class NanFirstEvalTask(TinyTask):
    """TinyTask whose first evaluation in a run folder is NaN (e.g. an fp16 overflow in eval)."""

    def evaluate(self, model):
        metrics = super().evaluate(model)
        marker = self.ctx.run_dir / "evaluated.flag"
        if not marker.exists():
            marker.touch()
            metrics = {k: float("nan") for k in metrics}
        return metrics


def make_spec(out, data=None, train=None, task=TINY) -> RunSpec:
    cfg = {"task": task, "data": data or {}, "optimizer": {"name": "adamp", "lr": 0.01},
           "train": {"epochs": 2, "batch_size": 16, "log_every": 2, "device": "cpu", **(train or {})}}
    resolved = resolve_config(cfg)
    return RunSpec(compute_run_id(resolved), resolved, out)


def _strip(lines):
    return [{k: v for k, v in line.items() if k != "samples_per_s"} for line in lines]


def test_preempted_at_the_last_step_still_evaluates_the_final_model(tmp_path):
    # max_steps=9 ends mid-epoch (4 steps per epoch); the last periodic eval is at step 8. A preemption at
    # step 9 checkpoints before the final evaluation, so the rerun must still do it (not report step 8's).
    train = {"epochs": 10, "max_steps": 9, "eval_every": 2, "checkpoint_every_steps": 100}
    reference = make_spec(tmp_path / "ref", train=train)
    assert execute_run(reference) == "done"

    spec = make_spec(tmp_path / "pre", data={"preempt_at_step": 9}, train=train)
    assert execute_run(spec) == "interrupted"
    assert execute_run(spec) == "done"
    resumed = store.read_record(spec.run_dir)
    ref = store.read_record(reference.run_dir)
    assert resumed["timing"]["resumed_from_step"] == 9
    assert _strip(store.read_history(spec.run_dir)) == _strip(store.read_history(reference.run_dir))
    assert resumed["metrics"] == ref["metrics"]
    assert resumed["timing"]["epochs"] == ref["timing"]["epochs"]


def test_resumed_best_metric_ignores_non_finite_evaluations_like_an_uninterrupted_run(tmp_path):
    task = "tests.engine.test_regressions:NanFirstEvalTask"
    train = {"epochs": 3, "checkpoint_every_steps": 100}
    reference = make_spec(tmp_path / "ref", train=train, task=task)
    assert execute_run(reference) == "done"
    ref = store.read_record(reference.run_dir)
    assert math.isfinite(ref["metrics"]["best_val_loss"])

    spec = make_spec(tmp_path / "pre", data={"preempt_at_step": 6}, train=train, task=task)
    assert execute_run(spec) == "interrupted"  # after the first (NaN) evaluation at step 4
    assert execute_run(spec) == "done"
    resumed = store.read_record(spec.run_dir)
    assert resumed["timing"]["resumed_from_step"] == 6
    assert resumed["metrics"]["best_val_loss"] == ref["metrics"]["best_val_loss"]


@pytest.mark.parametrize("milestones", ["[1, .inf]", "[1, .nan]"])
def test_non_finite_value_inside_a_list_is_a_config_error_with_exit_code_2(write, tmp_path, capsys, milestones):
    cfg = write("c.yaml", f"task: {TINY}\noptimizer: {{name: adamw, lr: 1.0e-2}}\n"
                          f"train: {{device: cpu, schedule: {{name: multistep, milestones: {milestones}}}}}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    assert "`train.schedule.milestones[1]` must be a finite number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_worker_crash_does_not_overwrite_a_run_another_process_took_over(tmp_path, monkeypatch):
    # The dead worker's lock is gone, and a concurrent sweep on the same OUT folder already holds the run.
    monkeypatch.setattr(executors, "CRASH_LOCK_WAIT_S", 0.2, raising=False)
    spec = make_spec(tmp_path)
    spec.run_dir.mkdir(parents=True)
    store.write_record(spec.run_dir, {"run_id": spec.run_id, "config": spec.config, "status": "running"})
    with store.RunLock(spec.run_dir) as other:
        assert other.acquire()
        executors._record_worker_crash(spec, RuntimeError("killed"))
        assert store.read_record(spec.run_dir)["status"] == "running"
    executors._record_worker_crash(spec, RuntimeError("killed"))  # nobody holds it: recorded (interrupted)
    assert store.read_record(spec.run_dir)["status"] == "interrupted"


def test_fractional_warmup_never_exceeds_the_base_lr(tmp_path):
    # warmup_epochs=0.625 at 4 steps per epoch is 2.5 warmup steps: the factors are 0.4, 0.8, then 1 (not 1.2)
    schedule = {**keys.SCHEDULE_COMMON, "warmup_epochs": 0.625}
    assert [keys.lr_factor(schedule, s / 4, 2.0, 2.5, s) for s in range(4)] == pytest.approx([0.4, 0.8, 1.0, 1.0])
    spec = make_spec(tmp_path, train={"log_every": 1, "schedule": schedule})
    assert execute_run(spec) == "done"
    lrs = [line["lr"] for line in store.read_history(spec.run_dir) if line["split"] == "train"]
    assert max(lrs) == pytest.approx(0.01)


@pytest.mark.parametrize("section, message", [
    ("task: 'os:path'\noptimizer: {name: adam}\n", "task `os:path` is <module"),
    (f"task: {TINY}\noptimizer: {{name: adam, 1: 2}}\n", "unknown key `1` at `optimizer.1`"),
])
def test_more_config_errors_exit_2_before_anything_runs(write, tmp_path, capsys, section, message):
    cfg = write("c.yaml", section)
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_dry_run_summary_counts_failed_runs_apart_from_done_ones():
    from benchmarks.engine.sweep import format_plan

    class _Run:
        def __init__(self, status, action):
            self.status, self.action = status, action

    class _Plan:
        runs = [_Run("done", "skip"), _Run("failed", "skip"), _Run(None, "run")]
        skipped = runs[:2]

    # format_plan prints one line per run first; only the summary line matters here
    class _Spec:
        run_id = "x"

    for r in _Plan.runs:
        r.spec, r.label = _Spec(), ""
    assert list(format_plan(_Plan()))[-1] == "3 runs (1 already done; 1 failed, rerun them with --retry-failed)"


@pytest.mark.parametrize("how", ["interrupt", "error while stopping"])
def test_ctrl_c_at_any_point_of_a_run_records_it_interrupted_not_failed(tmp_path, monkeypatch, how):
    """Ctrl-C reaches a run wherever it is, e.g. in the middle of a first import, after which cleanup code can
    fail on the half-imported module. The record must say interrupted (a rerun resumes it), not failed (a rerun
    skips it), and the interrupt must still stop the sweep."""
    from benchmarks.engine import spec as spec_module
    from benchmarks.training import loop as loop_module

    def train(*args, **kwargs):
        if how == "interrupt":
            raise KeyboardInterrupt
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise AttributeError("partially initialized module 'x' has no attribute 'y'")

    monkeypatch.setattr(loop_module, "train", train)
    spec = make_spec(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        spec_module.execute_run(spec)
    record = store.read_record(spec.run_dir)
    assert record["status"] == "interrupted", record["error"]
    assert record["error"].startswith("interrupted (KeyboardInterrupt")
    assert not (spec.run_dir / store.TRACEBACK).exists()
