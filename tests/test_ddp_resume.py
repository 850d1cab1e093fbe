"""Exact resume under multi-rank DDP: 2 CPU processes (gloo) train digits classification with AdamP / SGDP
through the shared loop (which initialises torch.distributed from WORLD_SIZE / RANK, as torchrun and the
SLURM executor set them); both are killed (SIGKILL) after a checkpoint, restarted on 2 ranks, and must end
with exactly the metrics, history, weights and optimizer state of an uninterrupted 2-rank run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.training.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME

from .runs import assert_same_state

REPO = Path(__file__).resolve().parents[1]
WORLD = 2

# One rank of a run: slowed down by a sleep in every loss call (only so that the kill lands mid-run; the same
# in every launch, and it changes no number).
_RANK = """
import json, sys, time
from pathlib import Path
from benchmarks.engine.spec import RunSpec, execute_run
from benchmarks.tasks.classification import Classification
spec = json.loads(Path(sys.argv[1]).read_text())
original = Classification.loss
def slow_loss(self, model, batch):
    time.sleep(float(sys.argv[2]))
    return original(self, model, batch)
Classification.loss = slow_loss
print(execute_run(RunSpec(run_id=spec["run_id"], config=spec["config"], out_dir=Path(spec["out_dir"]))))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spec(out_dir: Path, optimizer: dict):
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.spec import RunSpec, compute_run_id

    config = resolve_config({
        "task": "classification",
        "data": {"name": "digits", "val_size": 0.2, "split_seed": 0, "augment": "shift"},
        "model": {"name": "digits_cnn", "width": 0.5},
        "optimizer": optimizer,
        # 1,437 training images over 2 ranks, 64 per rank and step: 11 steps per epoch; log_every is not a
        # divisor of checkpoint_every_steps, so a resume must also restore an open logging window
        "train": {"epochs": 2, "batch_size": 64, "seed": 1, "log_every": 3, "checkpoint_every_steps": 4,
                  "device": "cpu", "num_threads": 1, "schedule": {"name": "cosine", "warmup_epochs": 0.5}},
    })
    return RunSpec(run_id=compute_run_id(config), config=config, out_dir=out_dir)


def _launch(spec, tmp: Path, sleep_s: float) -> list[subprocess.Popen]:
    spec_file = tmp / f"spec-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps({"run_id": spec.run_id, "config": spec.config, "out_dir": str(spec.out_dir)}))
    port = _free_port()
    procs = []
    for rank in range(WORLD):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", _RANK, str(spec_file), str(sleep_s)], env=env,
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 240) -> None:
    try:
        for rank, proc in enumerate(procs):
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0 and out.strip().splitlines()[-1:] == ["done"], \
                f"rank {rank} exited {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}"
    finally:
        _kill(procs)  # a rank left waiting for a failed peer


def _kill(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    for proc in procs:
        if proc.returncode is None:
            proc.communicate(timeout=30)


def _history(spec) -> list[dict]:
    lines = (spec.run_dir / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"} for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_two_rank_ddp_run_resumes_exactly(tmp_path: Path) -> None:
    """AdamP only (six process starts take about 2 minutes here; SGDP's state round-trips in tests/optim)."""
    from benchmarks import store

    optimizer = {"name": "adamp", "lr": 1e-3, "weight_decay": 1e-2}
    reference = _spec(tmp_path / "reference", optimizer)
    resumed = _spec(tmp_path / "resumed", optimizer)
    _finish(_launch(reference, tmp_path, 0.0))

    procs = _launch(resumed, tmp_path, 0.1)
    try:
        deadline = time.monotonic() + 180
        # killed once the second checkpoint exists (step 8 of 22), in the middle of a logging window
        while not (resumed.run_dir / PREVIOUS_NAME).exists():
            for proc in procs:
                assert proc.poll() is None, f"a rank ended early:\n{proc.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "no second checkpoint within 180 s"
            time.sleep(0.02)
    finally:
        _kill(procs)
    killed_at = torch.load(resumed.run_dir / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 8 <= killed_at < 22
    assert store.read_record(resumed.run_dir)["status"] == "running"

    _finish(_launch(resumed, tmp_path, 0.0))
    got, want = store.read_record(resumed.run_dir), store.read_record(reference.run_dir)
    assert got["status"] == want["status"] == "done"
    assert got["env"]["world_size"] == want["env"]["world_size"] == WORLD
    assert got["timing"]["resumed_from_step"] == killed_at
    assert got["metrics"] == want["metrics"]  # exact float equality
    assert _history(resumed) == _history(reference)
    final_got = torch.load(resumed.run_dir / CHECKPOINT_NAME, weights_only=True)
    final_want = torch.load(reference.run_dir / CHECKPOINT_NAME, weights_only=True)
    assert final_got["step"] == final_want["step"]
    for key in ("model", "optimizer", "scheduler", "rng"):
        assert_same_state(final_got[key], final_want[key], key)
