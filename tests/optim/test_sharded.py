"""FSDP2 (DTensor shards, 2 CPU ranks, gloo): every implementation equals single-process training, a sharded
optimizer state dict (torch.distributed.checkpoint) resumes exactly, and the collectives of a step are
counted (docs/cluster.md quotes the number)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from tests.optim import sharded

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

EAGER = ["single", "single-select", "foreach", "foreach-segmented"]
#: fused-segmented and fused-triton decline DTensor shards (they address plain memory) and run as "fused";
#: test_subclass_shards_take_the_per_tensor_compiled_path checks that without processes
COMPILED = ["fused"]
#: collectives per step on sharded.Net (3 weights with >= 2 dims, one of each decision): see docs/cluster.md
COLLECTIVES_PER_STEP = 21


def _check(results, impls):
    for name in sharded.KWARGS:
        single = sharded.train_single(name)
        for impl in impls:
            got = results[f"{name}-{impl}"]
            assert "error" not in got, f"{name}-{impl} failed on a rank:\n{got.get('error')}"
            for key, want in single.items():
                diff = ((got["full"][key] - want).abs().max() / want.abs().max()).item()
                assert diff <= 1e-12, (name, impl, key, diff)
                # resumed from a sharded checkpoint halfway: bit-identical to the uninterrupted run
                assert torch.equal(got["resumed"][key], got["full"][key]), (name, impl, key)
            if not impl.startswith("fused"):
                assert got["collectives"] == [COLLECTIVES_PER_STEP] * sharded.STEPS, (name, impl)


@pytest.mark.slow
def test_fsdp2_eager_paths_equal_single_process_training(tmp_path):
    _check(sharded.run(tmp_path, list(sharded.KWARGS), EAGER), EAGER)


@pytest.mark.slow
def test_fsdp2_compiled_path_equals_single_process_training(tmp_path):
    _check(sharded.run(tmp_path, list(sharded.KWARGS), COMPILED), COMPILED)


def test_subclass_shards_take_the_per_tensor_compiled_path(monkeypatch):
    """The batched (segmented) projection and the Triton kernels address plain memory: a tensor subclass gets
    no segmented layout and is never handed to the kernels."""
    from adamp import _fused

    class Tagged(torch.Tensor):
        pass

    w = torch.randn(4, 3)
    monkeypatch.setattr(_fused, "BACKEND", "triton")
    assert _fused.segmented_layout([w.as_subclass(Tagged)], 0.1) is None
    assert _fused.segmented_layout([w], 0.1) is not None
    from adamp import _triton

    monkeypatch.setattr(_triton, "available", lambda device: True)  # as on a GPU with Triton
    assert _fused.mode([w])[0] == "triton"
    impl, why = _fused.mode([w.as_subclass(Tagged)])
    assert impl != "triton" and "subclass" in why
