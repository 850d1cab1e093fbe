"""benchmarks.step_ops: the counts the launch-bound argument for the GPU default rests on."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import adamp
from benchmarks import step_ops


def _params(n: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3, 2, 2, generator=gen)) for _ in range(n)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    return params


def test_host_reads_count_reads_inside_kernels_and_in_python():
    class ReadsBack:
        def step(self):
            w = torch.ones(3)
            if w.sum() > 0:  # one read from Python
                torch.segment_reduce(w, "sum", lengths=torch.tensor([1, 2]))  # two inside the kernel

    assert step_ops.count_step_ops(ReadsBack())["host_reads"] == 3


def test_reads_of_torchs_cpu_step_counters_are_not_device_reads():
    params = _params(3)
    counted = step_ops.count_step_ops(torch.optim.AdamW(params, foreach=True))
    assert counted["host_reads"] == 0 and counted["ops"] > 0


def test_batched_projection_dispatches_the_same_ops_for_4x_the_tensors():
    def ops(n, context):
        with context():
            return step_ops.count_step_ops(adamp.AdamP(_params(n), weight_decay=0.1, foreach=True))["ops"]

    # 12 and 48 equal tensors are both cut into 4 chunks of a quarter of the elements each
    assert ops(12, step_ops.as_on_a_gpu) == ops(48, step_ops.as_on_a_gpu)
    per_tensor = ops(48, step_ops.per_tensor_projection) - ops(12, step_ops.per_tensor_projection)
    assert per_tensor >= 36 * 10  # the per-tensor projection: at least 10 more calls per added weight tensor


def test_our_gpu_paths_never_read_back_and_the_official_code_does():
    from benchmarks.reference import load_reference

    RefAdamP, _ = load_reference()
    with step_ops.as_on_a_gpu():
        for foreach in (False, True):
            assert step_ops.count_step_ops(adamp.AdamP(_params(3), foreach=foreach))["host_reads"] == 0
    # the official code branches on the channel test of every weight tensor, then on the layer test
    assert step_ops.count_step_ops(RefAdamP(_params(3)))["host_reads"] >= 3


def test_main_writes_a_row_per_implementation(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmarks.bench_step.build_params", lambda name, device: _params(5))
    monkeypatch.setattr("benchmarks.bench_step.MODELS", ["tiny"])
    assert step_ops.main(["--models", "tiny", "--no-reference", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "step_ops.csv")))
    labels = {r["optimizer"] for r in rows}
    assert {"adamp foreach (ours)", "adamp foreach-per-tensor (ours)", "torch adamw foreach"} <= labels
    assert all(r["tensors"] == "5" for r in rows)
    doc = json.loads((tmp_path / "step_ops.json").read_text())
    assert doc["environment"]["torch"] == torch.__version__


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        step_ops.main(["--models", "resnet5"])
    assert exc.value.code == 2
    assert "unknown model(s) resnet5" in capsys.readouterr().err
