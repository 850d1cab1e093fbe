"""Implementation variants that are off by default or only run on accelerators, forced by test id:
"single-select" (device-side selection of the single-tensor path), "foreach-segmented" (the batched
projection of the multi-tensor path, its default on CUDA and XPU), "foreach-per-tensor" (the per-tensor
projection, its default on the CPU), "fused" (the fused path compiled by inductor: adamp._fused.BACKEND =
"inductor", which runs only when asked for), "fused-segmented" (the same compiling the batched projection,
adamp._fused.SEGMENTED) and "fused-triton" (the fused path's Triton kernels, adamp._fused.BACKEND; on the
CPU through Triton's interpreter, see tests/conftest.py)."""

import pytest
import torch

from adamp import _fused, _projection, _triton


@pytest.fixture(autouse=True)
def _accelerator_variants_on_cpu(request, monkeypatch):
    if "single-select" in request.node.name:
        monkeypatch.setattr(_projection, "BRANCH_ON_CPU", False)
    if "foreach-segmented" in request.node.name:
        monkeypatch.setattr(_projection, "SEGMENTED", True)
    if "foreach-per-tensor" in request.node.name:
        monkeypatch.setattr(_projection, "SEGMENTED", False)
    if "fused-segmented" in request.node.name:
        monkeypatch.setattr(_fused, "SEGMENTED", True)
    if "fused" in request.node.name and "fused-triton" not in request.node.name:
        # "fused" / "fused-segmented": the inductor-compiled path, which runs only when asked for
        monkeypatch.setattr(_fused, "BACKEND", "inductor")
    if "fused-triton" not in request.node.name:
        yield
        return
    if not _triton.available(torch.device("cpu")):
        # only where tests/conftest.py left the interpreter off: machines with a GPU, whose CUDA tests
        # run the compiled kernels instead
        pytest.skip("Triton's interpreter is off on machines with a GPU (see the CUDA tests)")
    monkeypatch.setattr(_fused, "BACKEND", "triton")
    calls = []
    real_launch = _triton.launch
    monkeypatch.setattr(_triton, "launch", lambda *a, **k: calls.append(1) or real_launch(*a, **k))
    yield
    assert calls, "the Triton kernels were never launched: the test ran another implementation"
