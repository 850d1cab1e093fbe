"""Fixtures of the fault-injection suite: the uninterrupted reference sweep (once per test process)."""

from __future__ import annotations

import pytest

from . import harness


@pytest.fixture(scope="session")
def reference_out(tmp_path_factory):
    """OUT folder of the sweep run once without faults."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = harness.write_config(folder)
    out = folder / "out"
    result = harness.run(cfg, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="session")
def reference(reference_out):
    """Snapshot of the uninterrupted sweep: what every faulted sweep must end up equal to."""
    snap = harness.snapshot(reference_out)
    assert len(snap) == harness.N_RUNS and {s["status"] for s in snap.values()} == {"done"}
    return snap


@pytest.fixture
def trial(tmp_path):
    """A config file and an OUT folder for one trial; every process it leaves behind is killed afterwards."""
    markers: list[str] = []

    class Trial:
        cfg = harness.write_config(tmp_path)
        out = tmp_path / "out"

        @staticmethod
        def marker() -> str:
            markers.append(harness.new_marker())
            return markers[-1]

    yield Trial
    for marker in markers:
        harness.kill_all(marker)
