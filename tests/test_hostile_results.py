"""One regression test per class of hostile input (docs/reliability.md): each ran into a hang, a traceback,
a wrong exit code or a silent exclusion before the class was fixed. Every command runs as a child process
bounded in time and memory (tests/hostile_tools.py), so a regression fails instead of hanging the suite."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tests.hostile_tools import assert_clean, cli

pytestmark = pytest.mark.slow  # every command is a child process (imports torch each time)

CONFIG = """\
task: toy2d
optimizer: {name: sgd, lr: 0.04, momentum: 0.9}
train: {epochs: 1, steps_per_epoch: 5, log_every: 5, device: cpu, num_threads: 1}
"""


def _record(run_id: str, optimizer: str, seed: int, metric, *, status: str = "done", wall=1.0) -> dict:
    return {
        "run_id": run_id, "status": status, "error": None,
        "config": {"task": "toy2d", "data": {}, "model": {}, "optimizer": {"name": optimizer, "lr": 0.1},
                   "train": {"seed": seed}},
        "metrics": {"cosine_similarity": metric},
        "metric_modes": {"cosine_similarity": "max"}, "primary_metric": "cosine_similarity",
        "timing": {"wall_s": wall, "step_time_s": 0.01, "steps": 10}, "env": {"device": "cpu"},
    }


def _folder(root: Path, records: list[dict]) -> Path:
    for rec in records:
        run_dir = root / "runs" / rec["run_id"]
        run_dir.mkdir(parents=True)
        (run_dir / "record.json").write_text(json.dumps(rec, allow_nan=True))
    return root


def _healthy(root: Path) -> Path:
    """4 seeds of sgd and sgdp with metrics that vary by seed."""
    records = []
    for seed in range(4):
        records.append(_record(f"sgd-{seed}", "sgd", seed, 0.5 + 0.01 * seed))
        records.append(_record(f"sgdp-{seed}", "sgdp", seed, 0.6 + 0.013 * seed))
    return _folder(root, records)


def _one_error_line(result, *needles: str) -> str:
    assert_clean(result, "command")
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.text[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# -- class 1: files that are not regular files, or never end --------------------------------------------------

def test_fifo_and_endless_files_are_refused_in_bounded_time(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    result = cli("run", fifo, "--dry-run", "--out", tmp_path / "out")
    assert result.code == 2
    _one_error_line(result, str(fifo), "FIFO")

    endless = tmp_path / "endless.yaml"
    endless.write_text("base: /dev/zero\n" + CONFIG)
    result = cli("run", endless, "--dry-run", "--out", tmp_path / "out")
    assert result.code == 2
    _one_error_line(result, "/dev/zero", "character device")
    assert not (tmp_path / "out").exists()

    out = _healthy(tmp_path / "results")
    record = out / "runs" / "sgd-0" / "record.json"
    record.unlink()
    os.mkfifo(record)
    result = cli("status", out)
    assert_clean(result, "status")
    assert "sgd-0" in result.out and "FIFO" in result.out

    plan = tmp_path / "plan.csv"
    os.mkfifo(plan)
    result = cli("compare", out, "--baseline", "sgdp", "--plan", plan)
    assert result.code == 2
    _one_error_line(result, str(plan), "FIFO")


# -- class 2: symlink loops and wrong kinds of entries --------------------------------------------------------

def test_symlink_loops_and_wrong_kinds_of_entries(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    result = cli("run", loop, "--dry-run")
    assert result.code == 2
    _one_error_line(result, str(loop), "symbolic link loop")

    out = _healthy(tmp_path / "results")
    (out / "runs" / "cycle").symlink_to(out / "runs" / "cycle")
    (out / "runs" / "stray.txt").write_text("not a run")
    result = cli("status", out)
    assert_clean(result, "status")
    assert result.code == 0
    assert "cycle" in result.out and "symbolic link loop" in result.out and "stray.txt" in result.out

    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    runs_file = tmp_path / "runs_is_a_file"
    runs_file.mkdir()
    (runs_file / "runs").write_text("oops")
    for args in (("status", runs_file), ("compare", runs_file), ("run", config, "--out", runs_file)):
        result = cli(*args)
        assert_clean(result, args[0])
        assert result.code != 0, result.text
        assert str(runs_file / "runs") in result.text, result.text


# -- class 3: valid JSON that is not a record -------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["deep", "metrics-string", "config-list", "timing-string", "seed-list"])
def test_a_record_that_is_not_a_record_is_named_unreadable_and_rewritten(tmp_path, damage):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    assert cli("run", config, "--out", out, "--executor", "debug", timeout=300).code == 0
    (run_dir,) = (out / "runs").iterdir()
    path = run_dir / "record.json"
    record = json.loads(path.read_text())
    if damage == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        key, value = {"metrics-string": ("metrics", "95.8"), "config-list": ("config", [1]),
                      "timing-string": ("timing", "1h"), "seed-list": ("seed", [0])}[damage]
        if key == "seed":
            record["config"]["train"]["seed"] = value
        else:
            record[key] = value
        path.write_text(json.dumps(record))
    for command in (("status", out), ("results", out), ("compare", out, "--baseline", "sgd"), ("report", out),
                    ("tables", out)):
        result = cli(*command)
        assert_clean(result, command[0])
        assert run_dir.name in result.text, f"{command[0]} does not name the damaged run\n{result.text[-2000:]}"
    assert "unreadable" in cli("status", out).out
    rerun = cli("run", config, "--out", out, "--executor", "debug", timeout=300)
    assert rerun.code == 0, rerun.text
    assert json.loads(path.read_text())["status"] == "done"


# -- class 4: silent exclusions and coercions ------------------------------------------------------------------

def test_every_run_left_out_is_counted_and_named(tmp_path):
    records = [_record(f"sgd-{s}", "sgd", s, 0.5 + 0.01 * s) for s in range(4)]
    records += [_record(f"sgdp-{s}", "sgdp", s, 0.6 + 0.013 * s) for s in range(4)]
    records += [
        _record("sgd-nan", "sgd", 10, math.nan), _record("sgd-inf", "sgd", 11, math.inf),
        _record("sgd-text", "sgd", 12, "95.8"), _record("sgd-odd", "sgd", 13, 0.5, status="finished"),
        _record("sgdp-wall", "sgdp", 14, 0.61, wall="12 s"),
    ]
    out = _folder(tmp_path / "r", records)
    result = cli("compare", out, "--baseline", "sgdp", "--figure-formats", "png")
    assert_clean(result, "compare")
    assert result.code == 0
    text = result.text
    for run_id, reason in (("sgd-nan", "non-finite"), ("sgd-inf", "non-finite"), ("sgd-text", "not a number"),
                           ("sgd-odd", "unknown status"), ("sgdp-wall", "not a number")):
        line = next((ln for ln in text.splitlines() if run_id in ln), "")
        assert reason in line, f"{run_id} is not named with {reason!r}:\n{text}"
    assert "| 3 / 0 |" in result.out  # the comparison row counts the three done sgd runs it left out
    report = cli("report", out, "--baseline", "sgdp", "--figure-formats", "png")
    assert_clean(report, "report")
    body = (out / "report.md").read_text()
    assert all(r in body for r in ("sgd-nan", "sgd-text", "sgd-odd", "sgdp-wall"))


# -- class 5: code in configs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body", ["raise RuntimeError('boom at import')\n", "import sys\nsys.exit(0)\n"])
@pytest.mark.parametrize("key", ["optimizer.name", "task"])
def test_code_that_fails_at_import_is_a_config_error(tmp_path, body, key):
    (tmp_path / "hostile_mod.py").write_text(body)
    config = tmp_path / "c.yaml"
    if key == "task":
        config.write_text(CONFIG.replace("task: toy2d", "task: 'hostile_mod:Task'"))
    else:
        config.write_text(CONFIG.replace("name: sgd", "name: 'hostile_mod:Opt'"))
    result = cli("run", config, "--out", tmp_path / "out", env={"PYTHONPATH": str(tmp_path)})
    assert result.code == 2, result.text
    line = _one_error_line(result, str(config), f"`{key}`", "hostile_mod")
    assert ("boom at import" in line) or ("sys.exit(0)" in line)
    assert not (tmp_path / "out").exists()
    debug = cli("--debug", "run", config, "--dry-run", env={"PYTHONPATH": str(tmp_path)})
    assert debug.code == 2 and "Traceback" in debug.err  # the traceback on request only


# -- class 6: messages and options ------------------------------------------------------------------------------

def test_long_values_binary_plans_and_bad_options(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.replace("lr: 0.04", "lr: '" + "x" * 1_000_000 + "'"))
    result = cli("run", config, "--dry-run")
    assert result.code == 2
    line = _one_error_line(result, "optimizer.lr")
    assert len(line) < 2000 and "1,000,002 characters" in line  # the value with its quotes

    out = _healthy(tmp_path / "r")
    plan = tmp_path / "plan.csv"
    plan.write_bytes(b"task,steps\n\xff\xfe\x00\x01binary")
    result = cli("compare", out, "--plan", plan)
    assert result.code == 2
    _one_error_line(result, str(plan), "byte offset 13")

    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    for command in ("compare", "report"):
        result = cli(command, out, "--baseline", "sgdp", "--figure-formats", "exe")
        assert result.code == 2
        _one_error_line(result, "exe")
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before, f"{command} wrote files"
