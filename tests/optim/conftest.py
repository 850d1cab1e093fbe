"""Implementation variants that only run on accelerators by default are forced on the CPU by test id:
"single-select" (device-side selection of the single-tensor path) and "foreach-segmented" (the batched
projection of the multi-tensor path)."""

import pytest

from adamp import _projection


@pytest.fixture(autouse=True)
def _accelerator_variants_on_cpu(request, monkeypatch):
    if "single-select" in request.node.name:
        monkeypatch.setattr(_projection, "BRANCH_ON_CPU", False)
    if "foreach-segmented" in request.node.name:
        monkeypatch.setattr(_projection, "SEGMENTED_ON_CPU", True)
