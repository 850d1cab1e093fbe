"""Fixtures of the engine tests: a registered tiny task and config files written on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = "tests.engine.tiny_task:TinyTask"


@pytest.fixture
def tiny(monkeypatch):
    """Register the tiny test task as ``tiny`` (in this process; subprocesses use the ``module:Class`` path)."""
    from benchmarks import tasks

    monkeypatch.setitem(tasks.TASKS, "tiny", TINY)
    return "tiny"


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", text) -> Path of a config file under tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


@pytest.fixture(autouse=True)
def _no_pending_checkpoint_request():
    from benchmarks.training.loop import clear_checkpoint_request

    clear_checkpoint_request()
    yield
    clear_checkpoint_request()
