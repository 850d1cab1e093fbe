"""Shared test setup: the repository root is importable (also in spawned worker processes, which inherit
sys.path), no per-run progress bars clutter the test output, and on machines without a GPU Triton runs in
its interpreter (so the Triton kernels of the fused path are tested on the CPU)."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCHMARKS_NO_PROGRESS", "1")


def _interpret_triton_without_a_gpu() -> None:
    # The fused path's Triton kernels (adamp/_triton.py) run on CPU tensors only under Triton's
    # interpreter, which must be chosen before triton is first imported (torch imports it lazily).
    import torch

    if not torch.cuda.is_available() and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")


_interpret_triton_without_a_gpu()


@pytest.fixture
def one_thread():
    """One intra-op thread: on the 2-core CI machines, with pytest-xdist workers, extra BLAS threads only
    oversubscribe the cores and make tiny models many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
