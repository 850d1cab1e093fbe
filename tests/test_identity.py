"""Byte-identity of what the suite produces, against files written by the code before issue 29's split.

Moving code between modules must not change a single value: the run records and histories of short
fixed-seed runs (the training loop, checkpointing, diagnostics, the optimizers), the sbatch scripts of a
SLURM submission (settings, submission, code snapshot), and the toy problems' tables and figure data.

The expected files live in ``tests/golden/``. The run records are float32 arithmetic on 2- and 3-element
tensors; should another CPU or torch version round differently, regenerate them with
``BENCHMARKS_REGEN_GOLDEN=1`` from a commit known to be right and say so in the commit message.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("BENCHMARKS_REGEN_GOLDEN") == "1"


def _check(name: str, got: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(got)
        pytest.skip(f"wrote {path}")
    expected = path.read_text()
    first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    assert got == expected, f"{name} differs from the stored output from character {first} on"


# -- run records ----------------------------------------------------------------------------------------

#: record fields that depend on the clock, the host or the checkout, not on what the run computed
_VOLATILE_RECORD = ("timing", "env", "attempt", "started", "ended")


def _run(out: Path, raw: dict) -> dict:
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run

    config = resolve_config(raw)
    spec = RunSpec(run_id=compute_run_id(config), config=config, out_dir=out)
    assert execute_run(spec) == "done"
    record = json.loads((spec.run_dir / "record.json").read_text())
    history = [json.loads(line) for line in (spec.run_dir / "history.jsonl").read_text().splitlines()]
    for line in history:
        line.pop("samples_per_s", None)  # throughput: the clock
    kept = {k: v for k, v in record.items() if k not in _VOLATILE_RECORD}
    kept["timing.steps"] = record["timing"]["steps"]
    csv = spec.run_dir / "metrics.csv"
    csv_lines = [x for x in csv.read_text().splitlines() if ",samples_per_s," not in x] if csv.exists() else None
    return {"record": kept, "history": history, "metrics_csv": csv_lines}


def test_run_records_and_histories_are_unchanged(tmp_path: Path) -> None:
    common = {"device": "cpu", "num_threads": 1, "deterministic": True, "seed": 3}
    runs = [
        {"task": "toy2d", "optimizer": {"name": "sgdp", "lr": 0.04, "momentum": 0.9, "nesterov": True},
         "train": {**common, "epochs": 2, "steps_per_epoch": 7, "log_every": 3, "diagnostics": "step",
                   "checkpoint_every_steps": 4, "logger": "csv", "schedule": {"name": "cosine",
                                                                              "warmup_epochs": 0.5}}},
        {"task": "toy3d", "optimizer": {"name": "adamp", "lr": 0.01, "weight_decay": 0.1},
         "train": {**common, "epochs": 3, "steps_per_epoch": 5, "log_every": 2, "eval_every": 2,
                   "max_steps": 13, "diagnostics": "epoch"}},
        {"task": "toy2d", "optimizer": {"name": "adamp", "lr": 0.1, "foreach": False},
         "train": {**common, "epochs": 1, "steps_per_epoch": 6, "log_every": 1}},
    ]
    got = {}
    for i, raw in enumerate(runs):
        got[str(i)] = _run(tmp_path / "out", raw)
    _check("run_records.json", json.dumps(got, indent=1, sort_keys=True, allow_nan=True) + "\n")


# -- SLURM submission -----------------------------------------------------------------------------------

def test_sbatch_scripts_are_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch scripts of a real submission path (submitit's SlurmExecutor, an ``sbatch`` that only
    answers with a job id): one array of two runs and a single job with other settings. No SLURM needed."""
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.slurm import SlurmExecutor
    from benchmarks.engine.spec import RunSpec, compute_run_id

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    counter = tmp_path / "job_counter"
    sbatch.write_text(f'#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 4241)\nn=$((n+1))\necho $n > {counter}\n'
                      'echo "Submitted batch job $n"\n')
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    srun = bin_dir / "srun"  # submitit only checks that it exists
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    section_a = {"partition": "gpu", "account": "proj", "qos": "high", "constraint": "a100", "time": "2:00:00",
                 "gpus_per_node": 8, "tasks_per_node": 8, "cpus_per_task": 10, "mem": 500,
                 "array_parallelism": 3, "setup": ["module load cuda"],
                 "sbatch_extra": {"exclusive": True, "comment": "adamp sweep"}}
    section_b = {"partition": "cpu", "time": 30, "mem": "16000M", "job_name": "single", "signal_delay_s": 300}
    specs = []
    for seed, section in ((0, section_a), (1, section_a), (2, section_b)):
        config = resolve_config({"task": "toy2d", "optimizer": {"name": "sgdp", "lr": 0.04, "momentum": 0.9},
                                 "train": {"seed": seed, "steps_per_epoch": 5}, "slurm": section})
        specs.append(RunSpec(run_id=compute_run_id(config), config=config, out_dir=tmp_path / "out"))
    executor = SlurmExecutor({"slurm_cluster": "slurm", "slurm_max_array_size": 100, "slurm_partition": None})
    sweep_dir = tmp_path / "out" / "sweeps" / "s"
    entries = executor.launch(specs, sweep_dir)
    code_dirs = list((sweep_dir / "code").iterdir())
    assert len(code_dirs) == 1
    scripts = sorted((sweep_dir / "slurm").rglob("*_submission.sh"))
    assert len(scripts) == 2

    def normal(text: str) -> str:
        return (text.replace(str(code_dirs[0]), "<CODE>").replace(str(tmp_path), "<TMP>")
                .replace(sys.executable, "<PYTHON>"))

    got = {normal(str(p)): normal(p.read_text()) for p in scripts}
    got["entries"] = [normal(json.dumps(e, sort_keys=True)) for e in entries]
    _check("sbatch_scripts.json", json.dumps(got, indent=1, sort_keys=True) + "\n")


# -- toy tables and figure data -------------------------------------------------------------------------

def _toy_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A results frame and a history frame shaped like ``load_results``/``load_history`` of toy runs,
    filled from a fixed numpy seed (no training: these test the analysis only)."""
    rng = np.random.RandomState(7)
    rows, hist = [], []
    toy2d = [("sgd", 0.0, 0.04, 0.0, True), ("sgd", 0.9, 0.04, 0.0, True), ("sgdp", 0.9, 0.04, 0.0, True),
             ("sgd", 0.99, 0.04, 0.0, True), ("sgdp", 0.99, 0.04, 0.0, False), ("sgd", 0.9, 0.02, 0.0, True),
             ("sgd", 0.9, 0.04, 0.0, True), ("sgd", 0.9, 0.04, 0.0, True), ("adamp", 0.0, 0.04, 0.1, True)]
    for i, (name, mom, lr, wd, pb) in enumerate(toy2d):
        steps = 12
        log_every = 3 if lr == 0.02 else 1
        run_id = f"toy2d-{name}-{i:02d}"
        w_norm = 1.0 + np.cumsum(rng.uniform(0.0, 0.3 if mom else 0.05, steps))
        angle = 90.0 * np.exp(-np.arange(steps) * rng.uniform(0.1, 0.5))
        rows.append({"run_id": run_id, "status": "done", "task": "toy2d", "optimizer.name": name,
                     "optimizer.lr": lr, "optimizer.momentum": mom, "optimizer.weight_decay": wd,
                     "optimizer.project_buffer": pb if name == "sgdp" else np.nan, "train.seed": i % 3,
                     "train.log_every": log_every, "train.steps_per_epoch": steps, "train.epochs": 1,
                     "model.init_norm": 1.0, "timing.steps": steps, "metrics.w_norm": float(w_norm[-1] + 0.1),
                     "metrics.angle_deg": float(angle[-1] / 2), "metrics.steps_to_reach": float(rng.randint(3, 12)),
                     "metrics.steps_to_converge": float(rng.randint(5, 12)),
                     "metrics.w_x": float(w_norm[-1]), "metrics.w_y": 0.01})
        for s in range(log_every, steps + 1, log_every):
            rad = np.deg2rad(angle[s - 1])
            for metric, value in (("w_norm", w_norm[s - 1]), ("angle_deg", angle[s - 1]),
                                  ("w_x", w_norm[s - 1] * np.cos(rad)), ("w_y", w_norm[s - 1] * np.sin(rad))):
                hist.append({"run_id": run_id, "step": s, "epoch": s / steps, "split": "train", "metric": metric,
                             "value": float(value)})
    toy3d = [("sgd", 0.9, 0.0035, 0.0, -2.0), ("sgd", 0.9, 0.0035, 0.2, -2.0), ("sgdp", 0.9, 0.0035, 0.0, -2.0),
             ("sgdp", 0.9, 0.0035, 0.0, -1.5)]
    for i, (name, mom, lr, wd, start) in enumerate(toy3d):
        steps = 10
        run_id = f"toy3d-{name}-{i:02d}"
        vals = {m: np.cumsum(rng.normal(0.0, 0.2, steps)) for m in ("psi", "phi", "w1", "w2", "w3")}
        r = 1.0 + np.cumsum(rng.uniform(0.0, 0.2, steps))
        rows.append({"run_id": run_id, "status": "done", "task": "toy3d", "optimizer.name": name,
                     "optimizer.lr": lr, "optimizer.momentum": mom, "optimizer.weight_decay": wd,
                     "optimizer.project_buffer": True if name == "sgdp" else np.nan, "train.seed": 0,
                     "train.log_every": 1, "train.steps_per_epoch": steps, "train.epochs": 1,
                     "data.start_psi": start, "data.start_phi": 2.0, "data.rosenbrock_a": 1.0,
                     "data.rosenbrock_b": 1.0, "timing.steps": steps, "metrics.r": float(r[-1]),
                     "metrics.max_r": float(r.max()), "metrics.max_r_step": float(r.argmax()),
                     "metrics.distance": float(rng.uniform(0, 2)), "metrics.objective": float(rng.uniform(0, 5)),
                     "metrics.steps_to_converge": -1.0, "metrics.psi": float(vals["psi"][-1]),
                     "metrics.phi": float(vals["phi"][-1])})
        for s in range(1, steps + 1):
            for metric in ("psi", "phi", "w1", "w2", "w3"):
                hist.append({"run_id": run_id, "step": s, "epoch": s / steps, "split": "train", "metric": metric,
                             "value": float(vals[metric][s - 1])})
            for metric, value in (("r", r[s - 1]), ("distance", abs(vals["psi"][s - 1] - 1.0))):
                hist.append({"run_id": run_id, "step": s, "epoch": s / steps, "split": "train", "metric": metric,
                             "value": float(value)})
    rows.append({"run_id": "toy2d-failed", "status": "failed", "task": "toy2d", "optimizer.name": "sgd"})
    return pd.DataFrame(rows), pd.DataFrame(hist)


def test_toy_tables_and_figure_data_are_unchanged(tmp_path: Path) -> None:
    from benchmarks.analysis import figures, tables, toy
    from benchmarks.analysis.render import to_markdown

    results, history = _toy_frames()
    growth = toy.norm_growth_table(results)
    got = {
        "norm_growth_table": growth.to_csv(index=False),
        "matched_settings": repr(toy.matched_settings(growth, tolerance=0.5)),
        "lr_dependence": toy.lr_dependence(results).to_csv(index=False),
        "toy3d_table": toy.toy3d_table(results).to_csv(index=False),
        "trajectories_toy2d": toy.trajectories(results, history, "toy2d").to_csv(index=False),
        "trajectories_toy2d_all": toy.trajectories(results, history, "toy2d", unique=False).to_csv(index=False),
        "trajectories_toy3d": toy.trajectories(results, history, "toy3d").to_csv(index=False),
        "markdown_table": toy.markdown_table(growth),
        "toy_tables": [to_markdown(t) for t in tables.toy_tables(results)],
    }
    paths, message = figures.toy_figures(results, history, tmp_path, formats=("png",))
    got["figures"] = [str(p.relative_to(tmp_path)) for p in paths] + [message]
    _check("toy_analysis.json", json.dumps(got, indent=1, sort_keys=True) + "\n")
