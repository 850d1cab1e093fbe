"""Checkpoints: atomic rotation, corruption fallback, weights_only RNG round trips, and exact resume."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.training.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    capture_rng_state,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _state(step: int) -> dict:
    gen = torch.Generator().manual_seed(step)
    model = torch.nn.Linear(16, 4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, 16, generator=gen)).sum().backward()
    opt.step()
    return {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": capture_rng_state()}


def _assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_and_rotation(tmp_path: Path) -> None:
    assert load_latest_checkpoint(tmp_path) is None
    first, second = _state(1), _state(2)
    assert save_checkpoint(tmp_path, first) == tmp_path / CHECKPOINT_NAME
    save_checkpoint(tmp_path, second)
    _assert_same(load_latest_checkpoint(tmp_path), second)
    _assert_same(torch.load(tmp_path / PREVIOUS_NAME, weights_only=True), first)
    save_checkpoint(tmp_path, _state(3))
    assert torch.load(tmp_path / PREVIOUS_NAME, weights_only=True)["step"] == 2
    # only the two checkpoints, their checksums, nothing temporary left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CHECKPOINT_NAME, CHECKPOINT_NAME + ".sha256", PREVIOUS_NAME, PREVIOUS_NAME + ".sha256"]
    )


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "empty", "truncate_no_checksum"])
def test_damaged_latest_falls_back_to_previous(tmp_path: Path, damage: str) -> None:
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    latest = tmp_path / CHECKPOINT_NAME
    data = latest.read_bytes()
    if damage == "truncate":
        latest.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        middle = len(data) // 2
        latest.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif damage == "empty":
        latest.write_bytes(b"")
    else:  # a killed copy without its checksum file: torch.load must still notice
        latest.write_bytes(data[: len(data) - 100])
        (tmp_path / (CHECKPOINT_NAME + ".sha256")).unlink()
    with pytest.warns(RuntimeWarning, match="unusable"):
        state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["step"] == 1
    assert not latest.exists() and list(tmp_path.glob(CHECKPOINT_NAME + ".corrupt-*"))
    # the bad file was moved aside, so the next save must not rotate it over the good previous one
    save_checkpoint(tmp_path, _state(3))
    assert load_latest_checkpoint(tmp_path)["step"] == 3
    assert torch.load(tmp_path / PREVIOUS_NAME, weights_only=True)["step"] == 1


def test_everything_corrupt_starts_over_instead_of_crashing(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning):
        assert load_latest_checkpoint(tmp_path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_latest_checkpoint(tmp_path) is None  # quarantined: no second warning, no crash


def test_valid_file_without_checksum_is_used(tmp_path: Path) -> None:
    """A kill between moving the new file in and writing its checksum must not discard it."""
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    (tmp_path / (CHECKPOINT_NAME + ".sha256")).unlink()
    assert load_latest_checkpoint(tmp_path)["step"] == 2


def test_killed_writer_leaves_previous_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path, _state(1))

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # stands in for the job being killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, _state(2))
    monkeypatch.undo()
    assert load_latest_checkpoint(tmp_path)["step"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_unsafe_values_rejected_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['extra'\]\['lr'\].*numpy"):
        save_checkpoint(tmp_path, {"extra": {"lr": np.float64(0.1)}})
    with pytest.raises(TypeError, match=r"state\['fn'\]"):
        save_checkpoint(tmp_path, {"fn": lambda: 0})
    assert not any(tmp_path.iterdir())


def test_rng_state_round_trip_through_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in the legacy numpy state
    random.gauss(0, 1)
    save_checkpoint(tmp_path, {"rng": capture_rng_state()})
    expected = (random.random(), random.gauss(0, 1), np.random.standard_normal(4).tolist(), torch.rand(4))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(load_latest_checkpoint(tmp_path)["rng"])
    got = (random.random(), random.gauss(0, 1), np.random.standard_normal(4).tolist(), torch.rand(4))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


# -- exact resume through the shared loop -----------------------------------------------------------------
#
# A run interrupted at any point and resumed must end bit-identical to the same run left alone: final
# metrics, history (minus wall-clock throughput), model, optimizer, scheduler and RNG states.

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

TINY = "tests.engine.tiny_task:TinyTask"
REPO = Path(__file__).resolve().parents[1]


def _spec(out_dir: Path, **data):
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.spec import RunSpec, compute_run_id

    config = resolve_config({
        "task": TINY,
        "data": {"n": 64, **data},
        "optimizer": {"name": "adamp", "lr": 0.01, "weight_decay": 0.01},
        # log_every deliberately not a divisor of checkpoint_every_steps: a resume must not shift the
        # logging windows; 32 steps is a multiple of 4, so both runs end with a checkpoint to compare
        "train": {"epochs": 4, "batch_size": 8, "seed": 3, "log_every": 5, "checkpoint_every_steps": 4,
                  "device": "cpu", "num_threads": 1, "schedule": {"name": "cosine", "warmup_epochs": 1}},
    })
    return RunSpec(run_id=compute_run_id(config), config=config, out_dir=out_dir)


def _history(spec) -> list[dict]:
    lines = (spec.run_dir / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"} for line in lines]


def _assert_resumed_equals_reference(resumed, reference) -> None:
    from benchmarks import store

    got, want = store.read_record(resumed.run_dir), store.read_record(reference.run_dir)
    assert got["status"] == want["status"] == "done"
    assert got["timing"]["resumed_from_step"], "the second attempt did not resume from a checkpoint"
    assert got["metrics"] == want["metrics"]  # exact float equality, train_loss included
    assert _history(resumed) == _history(reference)
    final_got = torch.load(resumed.run_dir / CHECKPOINT_NAME, weights_only=True)
    final_want = torch.load(reference.run_dir / CHECKPOINT_NAME, weights_only=True)
    assert final_got["step"] == final_want["step"] == 32
    for key in ("model", "optimizer", "scheduler", "rng"):
        _assert_same(final_got[key], final_want[key])


def test_preempted_run_resumes_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.engine.spec import execute_run
    from benchmarks.training import loop
    from tests.engine.tiny_task import TinyTask

    reference = _spec(tmp_path / "reference")
    assert execute_run(reference) == "done"

    resumed = _spec(tmp_path / "resumed")
    original = TinyTask.loss
    seen = {"n": 0}

    def loss_then_preempt(self, model, batch):
        seen["n"] += 1
        if seen["n"] == 11:  # mid-epoch, between checkpoints, inside a logging window
            loop.request_checkpoint()  # what the SLURM job does on the pre-timeout signal
        return original(self, model, batch)

    monkeypatch.setattr(TinyTask, "loss", loss_then_preempt)
    assert execute_run(resumed) == "interrupted"
    assert torch.load(resumed.run_dir / CHECKPOINT_NAME, weights_only=True)["step"] == 11
    monkeypatch.setattr(TinyTask, "loss", original)
    assert execute_run(resumed) == "done"
    _assert_resumed_equals_reference(resumed, reference)


_CHILD = """
import json, sys
from pathlib import Path
from benchmarks.engine.spec import RunSpec, execute_run
spec = json.loads(Path(sys.argv[1]).read_text())
execute_run(RunSpec(run_id=spec["run_id"], config=spec["config"], out_dir=Path(spec["out_dir"])))
"""


def test_sigkilled_run_resumes_bit_identical(tmp_path: Path) -> None:
    """A job killed without warning (node failure, scontrol requeue, OOM) resumes from its last checkpoint."""
    from benchmarks.engine.spec import execute_run

    # sleep_s only slows the steps (so the kill lands mid-run); it is part of both configs
    reference = _spec(tmp_path / "reference", sleep_s=0.05)
    resumed = _spec(tmp_path / "resumed", sleep_s=0.05)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"run_id": resumed.run_id, "config": resumed.config,
                                     "out_dir": str(resumed.out_dir)}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(spec_file)], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        # kill once the second checkpoint exists (then checkpoint.prev.pt holds the first)
        while not (resumed.run_dir / PREVIOUS_NAME).exists():
            assert child.poll() is None, f"child ended early: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no second checkpoint within 90 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    killed_at = torch.load(resumed.run_dir / CHECKPOINT_NAME, weights_only=True)["step"]
    assert 8 <= killed_at < 32
    assert execute_run(reference) == "done"
    assert execute_run(resumed) == "done"
    _assert_resumed_equals_reference(resumed, reference)
