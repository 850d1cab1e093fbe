"""``compare-mine`` and ``calibrate`` end to end on a tiny battery (issue 26): verdicts stream task by task,
Ctrl-C keeps them and the same command resumes, a task that cannot see gives no verdict, cards are written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.workflows import battery as bat

from tests.test_battery import TINY, write_battery

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "BENCHMARKS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _cli(*args, env_extra=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env={**ENV, **(env_extra or {})},
                          capture_output=True, text=True, timeout=timeout)


def _two_tasks(tmp_path: Path) -> Path:
    return write_battery(tmp_path / "battery", {"a": TINY, "b": {**TINY, "model": {"name": "digits_cnn", "width": 0.5}}})


def test_an_optimizer_that_does_not_import_stops_everything_before_a_run(tmp_path):
    battery = _two_tasks(tmp_path)
    res = _cli("compare-mine", "nope_not_here.mod:X", "--battery", str(battery), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "PYTHONPATH" in res.stderr and "nothing was run" in res.stderr
    assert not list((tmp_path / "out").glob("*/runs/*"))


def test_an_unknown_task_is_a_config_error(tmp_path):
    res = _cli("compare-mine", "sgd", "--battery", str(_two_tasks(tmp_path)), "--only", "a,zz",
               "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "zz" in res.stderr and "a, b" in res.stderr


@pytest.mark.slow
def test_verdicts_stream_ctrl_c_keeps_them_and_a_rerun_resumes(tmp_path):
    battery = _two_tasks(tmp_path)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "benchmarks", "compare-mine", "torch.optim:SGD", "--kw", "lr: 1.0e-4, momentum: 0.0",
            "--battery", str(battery), "--cards", str(tmp_path / "nocards"), "--out", str(out), "--max-parallel", "2"]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    first = None
    deadline = time.monotonic() + 500
    assert proc.stdout is not None
    for line in proc.stdout:  # the first task's verdict arrives while the second task still has to run
        if line.startswith("| a |"):
            first = line
            break
        assert time.monotonic() < deadline
    assert first is not None and "AdamP better" in first, first
    time.sleep(3)  # task b is running now
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
    rest, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, (rest, err[-3000:])
    assert "interrupted" in err and "rerun the same command" in err
    report = (out / "report.md").read_text()
    assert "| a |" in report and "| b |" not in report
    a_records = sorted((out / "a" / "runs").glob("*/record.json"))
    stamps = {p: p.stat().st_mtime_ns for p in a_records}
    assert len(a_records) == 6

    # a card for task b that says it cannot see: its verdict must then be withheld
    cfg_b = bat.load_task_config(bat.load_battery(battery).tasks[1])
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "cards.json").write_text(json.dumps({"machine": "test", "cards": {"b": {
        "digest": bat.config_digest(cfg_b), "sees": False, "alpha": 0.025, "mode": "max", "probes": {},
        "seconds_per_run": 5.0}}}))
    res = subprocess.run(args[:-6] + ["--cards", str(cards), "--out", str(out), "--max-parallel", "2"], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "a: 0 run(s) to do" in res.stdout  # resumed: task a's finished runs are not run again
    assert {p: p.stat().st_mtime_ns for p in a_records} == stamps
    row_b = [line for line in res.stdout.splitlines() if line.startswith("| b |")]
    assert len(row_b) == 1 and "no verdict" in row_b[0] and "cannot see" in row_b[0]
    assert "Overall: AdamP better on 1 task(s)" in res.stdout and "no verdict on 1" in res.stdout
    report = (out / "report.md").read_text()
    assert "| seed | AdamP | yours |" in report and "lr: 0.0001" in report


@pytest.mark.slow
def test_calibrate_writes_a_card_per_task_and_compare_mine_prints_it(tmp_path):
    battery = write_battery(tmp_path / "battery", {"a": TINY}, toy=True)
    cards = tmp_path / "cards"
    res = _cli("calibrate", "--battery", str(battery), "--seeds", "0,1,2", "--out", str(tmp_path / "cal"),
               "--cards", str(cards), "--max-parallel", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((cards / "cards.json").read_text())
    card = data["cards"]["a"]
    assert set(card["probes"]) == {"broken", "moderate", "aa"} and card["metric"] == "top1"
    assert card["probes"]["aa"]["seeds"] == [0, 1, 2]  # the A/A stream's seeds 1000.. are paired with 0..
    assert card["untrained"] is not None and card["seconds_per_run"] > 0 and data["machine"]
    assert "| a | top1 (higher is better) |" in (cards / "cards.md").read_text()
    # identical settings are the baseline's runs, named as such; the toy row says whether it converged
    res = _cli("compare-mine", "adamp", "--kw", "lr: 1.0e-2, weight_decay: 1.0e-2", "--battery", str(battery),
               "--cards", str(cards), "--out", str(tmp_path / "cal" / "mine"))
    assert res.returncode == 0, res.stderr[-3000:]
    row = [line for line in res.stdout.splitlines() if line.startswith("| a |")][0]
    assert "identical to the baseline's runs" in row and "no verdict" in row
    toy = [line for line in res.stdout.splitlines() if line.startswith("| toy")][0]
    assert "converged after" in toy and "lr 0.01" in toy


@pytest.mark.parametrize("extra, message", [
    (["--space", "space.yaml"], "--space is the search space of --trials"),
    (["--trials", "2", "--seeds", "0,999"], "must not include 999"),
    (["--trials", "0"], "--trials must be >= 1"),
])
def test_bad_tuning_options_are_config_errors(tmp_path, extra, message):
    res = _cli("compare-mine", "sgd", "--battery", str(_two_tasks(tmp_path)), "--out", str(tmp_path / "out"), *extra)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not (tmp_path / "out" / "a").exists()


@pytest.mark.slow
def test_equal_tuning_budgets_before_the_verdict(tmp_path):
    battery = write_battery(tmp_path / "battery", {"a": TINY}, toy=True)
    space = tmp_path / "space.yaml"
    space.write_text("optimizer.lr: {log_uniform: [1.0e-3, 1.0e-1]}\n")
    res = _cli("compare-mine", "torch.optim:SGD", "--kw", "momentum: 0.9", "--trials", "2", "--space", str(space),
               "--battery", str(battery), "--cards", str(tmp_path / "nocards"), "--out", str(tmp_path / "out"),
               "--max-parallel", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "a: yours (SGD): space" in res.stdout and "a: AdamP (adamp): space registry default" in res.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "each optimizer got 2 trials per task" in report and "Budget: each optimizer 2 trials" in report
    assert "Expected best top1 over k trials" in report and "Time to target" in report
    assert "Performance profile over tasks" in report and (tmp_path / "out" / "figures").is_dir()
    # the verdict compares the selected points at the comparison's seeds, never at the tuning seed
    finals = [json.loads(p.read_text()) for p in (tmp_path / "out" / "a" / "tune" / "final" / "runs").glob("*/record.json")]
    assert sorted(r["config"]["train"]["seed"] for r in finals) == [0, 0, 1, 1, 2, 2]
    trials = [json.loads(p.read_text()) for p in (tmp_path / "out" / "a" / "tune" / "trials" / "runs").glob("*/record.json")]
    assert len(trials) == 4 and {r["config"]["train"]["seed"] for r in trials} == {999}
    assert [line for line in res.stdout.splitlines() if line.startswith("| a |")]
    toy = [line for line in res.stdout.splitlines() if line.startswith("| toy")][0]
    assert "yours (lr 0.04)" in toy  # the toy is not tuned: without an lr it runs at the toy's own
