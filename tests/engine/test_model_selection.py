"""Model selection: test metrics are those of the evaluation chosen on validation, never on test (issue 21.4).

The audio runner reported the last epoch's test accuracy although its reference keeps the best-validation
model (a loss spike in the last epoch gave 64.6% instead of the best model's); the LM runner reported
``best_test_ppl`` (selection on test). ``ScriptedTask`` replays such a run: validation peaks early, the last
epoch spikes, and test accuracy follows validation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import pytest

from benchmarks import store
from benchmarks.config.errors import ConfigError
from benchmarks.engine.spec import RunSpec, execute_run
from benchmarks.engine.spec import compute_run_id
from benchmarks.config import resolve_config

from .tiny_task import TinyTask

VAL = [80.0, 100.0, 100.0, 95.0, 40.0]  # epochs 1..5: the best is epoch 2 (earliest of the tie), spike at 5
TEST = [78.0, 97.0, 98.0, 93.0, 64.6]


class ScriptedTask(TinyTask):
    metrics: ClassVar[Mapping[str, str]] = {"test_acc": "max", "val_acc": "max", "val_loss": "min"}
    selection_metric: ClassVar[str | None] = "val_acc"

    def evaluate(self, model) -> dict[str, float]:
        done = len([1 for line in store.read_history(self.ctx.run_dir) if line.get("split") == "val"])
        return {"val_acc": VAL[done], "test_acc": TEST[done], "val_loss": 1.0 / VAL[done]}


class NoValidationTask(ScriptedTask):
    metrics: ClassVar[Mapping[str, str]] = {"test_acc": "max"}
    selection_metric: ClassVar[str | None] = None


class SelectsOnTestTask(ScriptedTask):
    selection_metric: ClassVar[str | None] = "test_acc"


def _spec(out, select: str, task: str = "ScriptedTask", data: dict[str, Any] | None = None) -> RunSpec:
    cfg = {"task": f"tests.engine.test_model_selection:{task}", "data": data or {},
           "optimizer": {"name": "adamp", "lr": 0.01},
           "train": {"epochs": 5, "batch_size": 16, "log_every": 2, "device": "cpu", "select": select,
                     "checkpoint_every_steps": 100}}
    resolved = resolve_config(cfg)
    return RunSpec(compute_run_id(resolved), resolved, out)


def test_select_best_reports_the_test_metric_of_the_best_validation_epoch(tmp_path):
    spec = _spec(tmp_path, "best")
    assert execute_run(spec) == "done"
    record = store.read_record(spec.run_dir)
    m = record["metrics"]
    assert m["val_acc"] == 100.0 and m["test_acc"] == 97.0  # epoch 2 (earliest best), not 98.0 nor 64.6
    assert m["last_test_acc"] == 64.6 and m["last_val_acc"] == 40.0
    assert m["best_val_acc"] == 100.0 and "best_test_acc" not in m
    assert record["selection"] == {"rule": "best val_acc (max)", "step": 8, "epoch": 2}
    assert record["metric_modes"]["test_acc"] == "max" and record["metric_modes"]["last_test_acc"] == "max"
    assert record["primary_metric"] == "test_acc"


def test_select_last_reports_the_final_model(tmp_path):
    spec = _spec(tmp_path, "last")
    assert execute_run(spec) == "done"
    m = store.read_record(spec.run_dir)["metrics"]
    assert m["test_acc"] == 64.6 and "last_test_acc" not in m and m["best_val_acc"] == 100.0


def test_selection_survives_a_resume(tmp_path):
    ref = _spec(tmp_path / "ref", "best")
    assert execute_run(ref) == "done"
    spec = _spec(tmp_path / "pre", "best", data={"preempt_at_step": 14})  # after the third evaluation
    assert execute_run(spec) == "interrupted"
    assert execute_run(spec) == "done"
    resumed, reference = store.read_record(spec.run_dir), store.read_record(ref.run_dir)
    assert resumed["timing"]["resumed_from_step"] == 14
    assert resumed["metrics"] == reference["metrics"] and resumed["selection"] == reference["selection"]


def test_select_best_needs_a_validation_metric(tmp_path):
    with pytest.raises(ConfigError, match="declares no selection_metric"):
        execute_run(_spec(tmp_path, "best", task="NoValidationTask"))


def test_a_test_metric_can_never_be_the_selection_metric(tmp_path):
    with pytest.raises(ConfigError, match="never a test metric"):
        execute_run(_spec(tmp_path, "last", task="SelectsOnTestTask"))


def test_the_paper_configs_select_as_their_reference_recipes(tmp_path):
    from benchmarks.config import expand, load_config

    for name, rule in [("table7_transformer_xl", "best"), ("table5_speech_commands", "best"),
                       ("table1_resnet18", "last"), ("table6_cub_triplet", "last")]:
        for run, _ in expand(load_config(f"configs/paper/{name}.yaml")):
            assert resolve_config(run)["train"]["select"] == rule, name
