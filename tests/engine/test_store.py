"""The results store: loaders, atomic writes, and many processes writing into one OUT folder."""

from __future__ import annotations

import json
import multiprocessing

import pandas as pd
import pytest

import benchmarks
from benchmarks import store
from benchmarks.config.validate import resolve_config
from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run

TINY = "tests.engine.tiny_task:TinyTask"


def spec_for(out, seed: int, **data) -> RunSpec:
    resolved = resolve_config({"task": TINY, "data": data, "optimizer": {"name": "adamw", "lr": 0.01},
                               "train": {"epochs": 1, "batch_size": 32, "log_every": 1, "seed": seed,
                                         "device": "cpu"}})
    return RunSpec(compute_run_id(resolved), resolved, out)


def test_load_results_and_history(tmp_path):
    specs = [spec_for(tmp_path, 0), spec_for(tmp_path, 1), spec_for(tmp_path, 2, fail_at_step=1)]
    assert [execute_run(s) for s in specs] == ["done", "done", "failed"]
    frame = benchmarks.load_results(tmp_path)
    assert len(frame) == 3 and list(frame.columns[:3]) == ["run_id", "status", "task"]
    assert set(frame["run_id"]) == {s.run_id for s in specs}
    row = frame.set_index("run_id").loc[specs[1].run_id]
    assert row["status"] == "done" and row["train.seed"] == 1 and row["optimizer.name"] == "adamw"
    assert row["optimizer.betas"] == (0.9, 0.999) and row["data.n"] == 64 and row["train.schedule.name"] == "constant"
    assert row["metrics.val_loss"] == store.read_record(specs[1].run_dir)["metrics"]["val_loss"]
    assert row["timing.steps"] == 2 and row["timing.wall_s"] > 0 and row["env.python"]
    failed = frame.set_index("run_id").loc[specs[2].run_id]
    assert failed["status"] == "failed" and pd.isna(failed["metrics.val_loss"]) and "boom" in failed["error"]
    assert frame.groupby("optimizer.betas").size().iloc[0] == 3  # tuple cells are hashable

    hist = benchmarks.load_history(tmp_path)
    assert list(hist.columns) == ["run_id", "step", "epoch", "split", "metric", "value"]
    mine = hist[hist.run_id == specs[0].run_id]
    assert set(mine["split"]) == {"train", "val"}
    assert set(mine[mine.split == "val"]["metric"]) == {"val_loss", "val_r2"}
    assert list(mine[(mine.split == "train") & (mine.metric == "loss")]["step"]) == [1, 2]
    assert set(hist["run_id"]) == {s.run_id for s in specs[:2]}  # the failed run logged nothing
    assert len(benchmarks.load_history(tmp_path, run_ids=[specs[0].run_id])) == len(mine)


def test_loaders_on_empty_or_missing_folders(tmp_path):
    assert benchmarks.load_results(tmp_path / "nothing").empty
    assert benchmarks.load_history(tmp_path / "nothing").empty


def test_torn_history_line_and_corrupt_record_are_tolerated(tmp_path):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "history.jsonl").write_text('{"step": 1, "epoch": 0, "split": "train", "loss": 1.0}\n{"step": 2, "ep')
    (run / "record.json").write_text('{"run_id": "x", "sta')
    assert store.read_history(run) == [{"step": 1, "epoch": 0, "split": "train", "loss": 1.0}]
    # never dropped silently: a warning names the file, and the row says the record is unreadable
    with pytest.warns(RuntimeWarning, match=r"unreadable run record .*runs/x/record\.json"):
        frame = benchmarks.load_results(tmp_path)
    assert frame["status"].tolist() == ["unreadable"] and "record.json" in frame["error"][0]
    assert len(benchmarks.load_history(tmp_path)) == 1


def test_atomic_write_leaves_no_temp_files(tmp_path):
    for i in range(5):
        store.write_json_atomic(tmp_path / "r.json", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"] and json.loads((tmp_path / "r.json").read_text()) == {"i": 4}


def _worker(args):
    out, seeds = args
    return [execute_run(spec_for(out, seed)) for seed in seeds]


def test_concurrent_writers_lose_nothing(tmp_path):
    # 4 processes, each executing the SAME 6 runs in a different order, into one OUT: every run must end
    # up done exactly once (attempt 1), with one complete record and an unduplicated history.
    seeds = list(range(6))
    jobs = [(tmp_path, seeds[i:] + seeds[:i]) for i in range(4)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_worker, jobs)
    assert all(s in ("done", "running") for r in results for s in r)
    frame = benchmarks.load_results(tmp_path)
    assert len(frame) == 6 and (frame["status"] == "done").all()
    for run_id in frame["run_id"]:
        record = store.read_record(tmp_path / "runs" / run_id)
        assert record["attempt"] == 1
        lines = store.read_history(tmp_path / "runs" / run_id)
        assert [(l["split"], l["step"]) for l in lines] == [("train", 1), ("train", 2), ("val", 2)]
    leftovers = [p for p in tmp_path.rglob("*.tmp")]
    assert leftovers == []
