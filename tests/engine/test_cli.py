"""The `python -m benchmarks` CLI: run (debug and local executors), dry-run, skip/retry, exit codes, status,
results, help, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import store
from benchmarks.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests.engine.tiny_task:TinyTask"

GRID = f"""\
task: {TINY}
optimizer: {{name: adamw, lr: 1.0e-2}}
train: {{epochs: 1, batch_size: 32, device: cpu}}
grid:
  optimizer.name: [adamw, adamp]
  train.seed: [0, 1]
"""


def run_cli(*argv: str) -> int:
    return main([str(a) for a in argv])


def test_dry_run_lists_runs_and_writes_nothing(write, tmp_path, capsys):
    cfg = write("grid.yaml", GRID)
    out = tmp_path / "out"
    assert run_cli("run", cfg, "--out", out, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "4 runs (0 already done)"
    assert [l.split()[0] for l in lines[:-1]] == ["run"] * 4
    assert lines[0].split()[1].startswith("tests.engine.tiny_task-TinyTask-adamw-")
    assert lines[0].endswith("[new]         optimizer.name=adamw train.seed=0")
    assert lines[3].endswith("[new]         optimizer.name=adamp train.seed=1")
    assert not out.exists()


def test_run_then_rerun_skips_finished_runs(write, tmp_path, capsys):
    cfg = write("grid.yaml", GRID)
    out = tmp_path / "out"
    assert run_cli("run", cfg, "--out", out, "--executor", "debug") == 0
    frame = store.load_results(out)
    assert len(frame) == 4 and (frame["status"] == "done").all()
    manifests = store.list_manifests(out)
    assert len(manifests) == 1 and manifests[0]["executor"] == "debug" and len(manifests[0]["runs"]) == 4
    assert set(manifests[0]["runs"][0]) == {"run_id", "executor", "job_id", "log"}
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/record.json")}
    capsys.readouterr()

    assert run_cli("run", cfg, "--out", out, "--executor", "debug") == 0
    assert "4 runs (4 already done), 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/record.json")} == mtimes

    # one more seed: only the new runs execute
    assert run_cli("run", cfg, "--out", out, "--set", "grid.train.seed=[0, 1, 2]", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "6 runs (4 already done)"


def test_config_error_exits_2_and_writes_nothing(write, tmp_path, capsys):
    cfg = write("bad.yaml", GRID.replace("lr: 1.0e-2", "lrr: 1.0e-2"))
    out = tmp_path / "out"
    assert run_cli("run", cfg, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}: unknown key `lrr` at `optimizer.lrr` (torch.optim.adamw:AdamW); "
                          "did you mean `lr`?")
    assert not out.exists()
    syntax = write("syntax.yaml", "task: [\n")
    assert run_cli("run", syntax, "--out", out, "--dry-run") == 2
    assert f"error: {syntax}: YAML syntax error at line 2" in capsys.readouterr().err
    assert run_cli("run", cfg.with_name("good.yaml"), "--out", out) == 2  # missing file
    assert run_cli("run", write("g.yaml", GRID), "--out", out, "--set", "train.epochs=0") == 2
    assert not out.exists()


def test_failed_runs_exit_1_are_skipped_then_retried(write, tmp_path, capsys):
    cfg = write("f.yaml", GRID + "zip:\n  data.fail_at_step: [null, 1]\n")
    out = tmp_path / "out"
    assert run_cli("run", cfg, "--out", out, "--executor", "debug", "--set", "grid.optimizer.name=[adamw]",
                   "--set", "grid.train.seed=[0]") == 1
    statuses = sorted(store.run_statuses(out).values())
    assert statuses == ["done", "failed"]
    capsys.readouterr()
    args = ["run", cfg, "--out", out, "--set", "grid.optimizer.name=[adamw]", "--set", "grid.train.seed=[0]"]
    assert run_cli(*args, "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "2 runs (1 already done; 1 failed, rerun them with --retry-failed)"
    assert any(l.startswith("skip ") and "[failed]" in l for l in lines)
    assert run_cli(*args, "--dry-run", "--retry-failed") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 runs (1 already done)"
    assert run_cli(*args, "--executor", "debug", "--retry-failed") == 1
    failed = [r for r in store.load_records(out) if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempt"] == 2


def test_smoke_uses_task_overrides_and_own_folder(write, tmp_path, monkeypatch, capsys):
    cfg = write("exp.yaml", GRID)
    monkeypatch.chdir(tmp_path)
    assert run_cli("run", cfg, "--smoke", "--executor", "debug", "--set", "grid.optimizer.name=[adamw]",
                   "--set", "grid.train.seed=[0]") == 0
    records = store.load_records(tmp_path / "runs" / "exp-smoke")
    assert len(records) == 1
    assert records[0]["config"]["train"]["max_steps"] == 2 and records[0]["config"]["data"]["n"] == 16


def test_status_and_results(write, tmp_path, capsys):
    cfg = write("s.yaml", GRID + "zip:\n  data.fail_at_step: [null, 1]\n")
    out = tmp_path / "out"
    run_cli("run", cfg, "--out", out, "--executor", "debug", "--set", "grid.train.seed=[0]")
    capsys.readouterr()
    assert run_cli("status", out) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{out}: 4 runs: 2 done, 2 failed\nfailed:\n")
    assert text.count("RuntimeError: boom at step 1") == 2 and "latest launch:" in text
    assert run_cli("results", out) == 0
    table = capsys.readouterr().out.splitlines()
    header = table[0].split()
    assert header[:2] == ["run_id", "status"] and "optimizer.name" in header and "metrics.val_loss" in header
    assert "train.seed" not in header  # the same in every run: not shown
    assert len(table) == 5
    assert run_cli("results", out, "--csv", tmp_path / "r.csv", "--all-columns") == 0
    assert "train.seed" in (tmp_path / "r.csv").read_text().splitlines()[0]
    assert run_cli("status", tmp_path / "nothing") == 1


def test_help_explains_with_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--set", "--executor", "--dry-run", "--max-parallel", "--retry-failed", "--smoke", "--out",
                   "examples:", "python -m benchmarks run", "exit codes"):
        assert needle in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "python -m benchmarks status" in capsys.readouterr().out


def test_tasks_and_optimizers_lists(tiny, capsys):
    assert run_cli("tasks") == 0
    assert "tiny" in capsys.readouterr().out
    assert run_cli("optimizers") == 0
    text = capsys.readouterr().out
    assert "adamp" in text and "timm:adamp" in text and "RMSprop" in text


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "BENCHMARKS_NO_PROGRESS": "1"}


@pytest.mark.slow
def test_local_executor_runs_in_parallel_and_ctrl_c_resumes(write, tmp_path):
    # each run sleeps 40 ms per step for 20 steps, so there is time to interrupt the sweep
    cfg = write("slow.yaml", f"task: {TINY}\ndata: {{sleep_s: 0.04}}\noptimizer: {{name: adamw, lr: 0.01}}\n"
                             "train: {epochs: 5, batch_size: 16, device: cpu, log_every: 1}\n"
                             "grid:\n  train.seed: [0, 1, 2]\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks", "run", str(cfg), "--out", str(out), "--max-parallel", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def training():  # a run that has logged a step: past its setup (Ctrl-C during setup: test_regressions.py)
        return any(store.run_path(out, rid).joinpath(store.HISTORY).exists()
                   for rid, status in store.run_statuses(out).items() if status == "running")

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not training():
        time.sleep(0.05)
    assert training()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    statuses = store.run_statuses(out)
    assert "done" not in statuses.values() or len(statuses) < 3
    if not set(statuses.values()) <= {"interrupted", "running", "done"}:
        errors = {rid: (store.read_record(store.run_path(out, rid)) or {}).get("error") for rid in statuses}
        tracebacks = {rid: store.run_path(out, rid).joinpath(store.TRACEBACK).read_text()
                      for rid in statuses if store.run_path(out, rid).joinpath(store.TRACEBACK).exists()}
        pytest.fail(f"statuses after Ctrl-C: {statuses}\nerrors: {errors}\ntracebacks: {tracebacks}\n"
                    f"output:\n{output}", pytrace=False)
    assert "rerun the same command to resume" in output

    result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(store.run_statuses(out).values()) == ["done"] * 3
    assert "local: " in result.stderr and "2 process(es), 1 torch thread(s) each" in result.stderr
    manifest = store.list_manifests(out)[-1]
    assert manifest["executor"] == "local" and manifest["status"] == "launched"
    for entry in manifest["runs"]:
        assert Path(entry["log"]).exists()


def test_pdb_opens_post_mortem_on_failure(write, tmp_path, monkeypatch):
    import pdb

    seen = []
    monkeypatch.setattr(pdb, "post_mortem", lambda tb: seen.append(tb.tb_frame.f_code.co_name))
    cfg = write("p.yaml", f"task: {TINY}\ndata: {{fail_at_step: 1}}\noptimizer: {{name: adam}}\n"
                          "train: {device: cpu}\n")
    assert run_cli("run", cfg, "--out", tmp_path / "o", "--executor", "debug", "--pdb") == 1
    assert seen == ["execute_run"]
    assert run_cli("run", cfg, "--out", tmp_path / "o2", "--pdb") == 2
    assert not (tmp_path / "o2").exists()
