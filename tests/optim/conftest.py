"""Implementation variants that are off by default or only run on accelerators, forced by test id:
"single-select" (device-side selection of the single-tensor path), "foreach-segmented" (the batched
projection of the multi-tensor path) and "fused-segmented" (the fused path compiling the batched projection,
adamp._fused.SEGMENTED)."""

import pytest

from adamp import _fused, _projection


@pytest.fixture(autouse=True)
def _accelerator_variants_on_cpu(request, monkeypatch):
    if "single-select" in request.node.name:
        monkeypatch.setattr(_projection, "BRANCH_ON_CPU", False)
    if "foreach-segmented" in request.node.name:
        monkeypatch.setattr(_projection, "SEGMENTED", True)
    if "fused-segmented" in request.node.name:
        monkeypatch.setattr(_fused, "SEGMENTED", True)
