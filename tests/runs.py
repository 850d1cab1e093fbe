"""Helpers for tests that execute runs: run a config in this process, compare the states runs stored."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run


def run_to_done(config: dict, out: Path) -> dict:
    """Execute ``config`` into ``out``; assert it finished (showing the run's error and traceback if not) and
    return ``{"record": record.json, "history": [history.jsonl rows]}``."""
    spec = RunSpec(run_id=compute_run_id(config), config=config, out_dir=out)
    status = execute_run(spec)
    record = json.loads((spec.run_dir / "record.json").read_text())
    traceback = spec.run_dir / "traceback.txt"
    assert status == "done", (record.get("error"), traceback.read_text() if traceback.exists() else "")
    history = [json.loads(line) for line in (spec.run_dir / "history.jsonl").read_text().splitlines()]
    return {"record": record, "history": history}


def assert_same_state(a, b, where: str = "") -> None:
    """Exact equality of nested state (dicts, lists, tensors of the same dtype); ``where`` names the path."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where
