"""Shared test setup: the repository root is importable (also in spawned worker processes, which inherit
sys.path), and no per-run progress bars clutter the test output."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCHMARKS_NO_PROGRESS", "1")


@pytest.fixture
def one_thread():
    """One intra-op thread: on the 2-core CI machines, with pytest-xdist workers, extra BLAS threads only
    oversubscribe the cores and make tiny models many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
