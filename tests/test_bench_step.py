"""benchmarks.bench_step: the CPU peak-memory measurement, the memory batches and a small end-to-end run."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import adamp
import benchmarks.reference
from benchmarks import bench_common, bench_iteration, bench_step

CPU = torch.device("cpu")
MIB = 2**20


def _bytes(n: int) -> torch.Tensor:
    return torch.empty(n, dtype=torch.uint8)


# --- peak_extra_mib ------------------------------------------------------------------------------------------

def test_peak_is_the_most_held_at_once():
    def step():
        a = _bytes(4 * MIB)
        b = _bytes(2 * MIB)
        del a, b

    assert bench_step.peak_extra_mib(step, CPU) == pytest.approx(6.0, abs=1e-3)


def test_peak_counts_frees_in_time_order():
    def step():
        a = _bytes(4 * MIB)
        del a
        b = _bytes(2 * MIB)  # reuses the room a left: 4 MiB at most, not 6
        del b

    assert bench_step.peak_extra_mib(step, CPU) == pytest.approx(4.0, abs=1e-3)


def test_peak_does_not_count_a_replaced_buffer_as_extra():
    held = [_bytes(8 * MIB)]  # allocated before the profiler starts: it cannot see this one's free

    def step():  # swaps a held buffer for a new one, as a step that rebuilds its state would
        held.pop()
        held.append(_bytes(8 * MIB))
        tmp = _bytes(1 * MIB)
        del tmp

    assert bench_step.peak_extra_mib(step, CPU) == pytest.approx(1.0, abs=1e-3)


def test_peak_of_a_real_step_is_positive_and_bounded(one_thread):
    params = [torch.nn.Parameter(torch.randn(256, 256)) for _ in range(4)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(params, lr=1e-3, foreach=True)
    opt.step()  # the state exists before the measured step, as in the benchmark
    peak = bench_step.peak_extra_mib(opt.step, CPU)
    param_mib = sum(p.numel() * p.element_size() for p in params) / MIB
    assert 0 < peak <= 4 * param_mib


# --- plan_batches / add_ratios --------------------------------------------------------------------------------

def _entry(label: str, family: str) -> bench_step.Entry:
    return bench_step.Entry(label, family, lambda p: None)


def test_plan_batches_splits_by_kind_and_repeats_that_kinds_baselines():
    base = {"A", "OA", "S", "OS"}
    chosen = [_entry("x1", "adamp"), _entry("A", "adam"), _entry("x2", "sgdp"), _entry("S", "sgd"),
              _entry("OA", "adamp"), _entry("OS", "sgdp"), _entry("x3", "adamp"), _entry("x4", "adamp"),
              _entry("x5", "sgdp"), _entry("x6", "sgd")]
    cost = {"A": 3, "OA": 3, "S": 2, "OS": 2, "x1": 3, "x2": 2, "x3": 3, "x4": 3, "x5": 2, "x6": 2}
    batches = bench_step.plan_batches(chosen, base, lambda e: cost[e.label], budget=12)
    assert len(batches) > 1
    others = []
    for b in batches:
        labels = [e.label for e in b]
        kinds = {bench_step.KIND[e.family] for e in b}
        assert len(kinds) == 1  # a batch never mixes Adam-type and SGD-type entries
        assert ({"A", "OA"} if kinds == {"adam"} else {"S", "OS"}) <= set(labels)
        assert sum(cost[x] for x in labels) <= 12
        assert labels == [e.label for e in chosen if e.label in labels]  # order of `chosen` kept
        others += [x for x in labels if x not in base]
    assert sorted(others) == ["x1", "x2", "x3", "x4", "x5", "x6"]  # each exactly once
    assert [x for x in others if x in ("x1", "x3", "x4")] == ["x1", "x3", "x4"]  # consecutive within a kind


def test_plan_batches_one_batch_when_all_fit_or_budget_unknown():
    chosen = [_entry("A", "adam"), _entry("x1", "adamp"), _entry("x2", "sgdp")]
    for budget in (None, 100):
        assert bench_step.plan_batches(chosen, {"A"}, lambda e: 10, budget) == [chosen]


def test_plan_batches_names_the_need_when_baselines_and_one_entry_do_not_fit():
    chosen = [_entry("A", "adam"), _entry("x1", "adamp"), _entry("x2", "sgdp")]
    with pytest.raises(MemoryError, match=r"adam-type entries need 2\.0 GB \(baselines A plus the largest entry\)"
                                         r" but the budget is 1\.5 GB"):
        bench_step.plan_batches(chosen, {"A"}, lambda e: 10**9, budget=int(1.5e9))


def test_add_ratios_use_the_baseline_of_the_same_batch():
    def row(batch, label, family, ms):
        return dict(model="m", batch=batch, optimizer=label, family=family, median_ms=ms)

    rows = [row(0, "torch adamw foreach", "adam", 2.0), row(0, "torch sgd foreach", "sgd", 1.0),
            row(0, "official adamp 0.3.0", "adamp", 8.0), row(0, "mine", "adamp", 4.0),
            row(1, "torch adamw foreach", "adam", 5.0), row(1, "torch sgd foreach", "sgd", 4.0),
            row(1, "official adamp 0.3.0", "adamp", 20.0), row(1, "mine", "adamp", 10.0)]
    bench_step.add_ratios(rows, CPU)
    mine = [r for r in rows if r["optimizer"] == "mine"]
    assert [r["ratio_to_adamw"] for r in mine] == [2.0, 2.0]
    assert [r["ratio_to_sgd"] for r in mine] == [4.0, 2.5]
    assert [r["speedup_vs_official"] for r in mine] == [2.0, 2.0]


# --- bench_model with batches ---------------------------------------------------------------------------------

def _tiny(name, device):
    gen = torch.Generator().manual_seed(1)
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(device)) for s in ((64, 32), (64,), (8, 4, 3, 3))]


@pytest.fixture
def tiny_bench(monkeypatch):
    """Tiny params, a stand-in official package (no download) and no compiled entries (compiling takes minutes
    on the CPU)."""
    monkeypatch.setattr(bench_step, "build_params", _tiny)
    monkeypatch.setattr(benchmarks.reference, "load_reference", lambda: (
        lambda p, **kw: adamp.AdamP(p, **kw, foreach=False), lambda p, **kw: adamp.SGDP(p, **kw, foreach=False)))
    real_entries = bench_step.entries
    monkeypatch.setattr(bench_step, "entries",
                        lambda device, ref: [e for e in real_entries(device, ref) if "inductor" not in e.label])
    param_bytes = sum(p.numel() * p.element_size() for p in _tiny("", CPU))
    return param_bytes


def _run(monkeypatch, available):
    monkeypatch.setattr(bench_step, "available_memory_bytes", lambda device: available)
    return bench_step.bench_model("tiny", CPU, rounds=2, steps=1, warmup=1, with_reference=True, only=None)


def test_bench_model_splits_into_batches_each_with_the_baselines(tiny_bench, monkeypatch, one_thread, capsys):
    chosen = bench_step.entries(CPU, True)
    baselines = {*bench_step.ratio_baselines(CPU), *bench_step.OFFICIAL.values()}
    assert baselines <= {e.label for e in chosen}
    # the Adam-type baselines (3+3 params) plus room for one more Adam-type entry
    rows = _run(monkeypatch, available=int(10 * tiny_bench / (1 - bench_step.MEMORY_MARGIN)))
    batches = sorted({r["batch"] for r in rows})
    assert len(batches) > 1
    assert f"{len(chosen)} entries in {len(batches)} batches" in capsys.readouterr().out
    others = [r["optimizer"] for r in rows if r["optimizer"] not in baselines]
    assert sorted(others) == sorted(e.label for e in chosen if e.label not in baselines)  # each exactly once
    adamw, sgd = bench_step.ratio_baselines(CPU)
    for b in batches:
        in_batch = {r["optimizer"]: r for r in rows if r["batch"] == b}
        kind = {bench_step.KIND[r["family"]] for r in in_batch.values()}
        assert len(kind) == 1
        own = adamw if kind == {"adam"} else sgd
        ratio = "ratio_to_adamw" if kind == {"adam"} else "ratio_to_sgd"
        assert own in in_batch
        for r in in_batch.values():
            assert r[ratio] == pytest.approx(r["median_ms"] / in_batch[own]["median_ms"])
            official = in_batch[bench_step.OFFICIAL[r["family"]]]
            assert r["speedup_vs_official"] == pytest.approx(official["median_ms"] / r["median_ms"])
            assert math.isfinite(r["step_peak_extra_mib"]) and r["step_peak_extra_mib"] >= 0


def test_bench_model_skips_a_model_that_cannot_fit(tiny_bench, monkeypatch, one_thread, capsys):
    assert _run(monkeypatch, available=tiny_bench) == []
    assert "tiny: skipped, not enough memory: adam-type entries need" in capsys.readouterr().out


def test_bench_model_one_batch_when_everything_fits(tiny_bench, monkeypatch, one_thread, capsys):
    rows = _run(monkeypatch, available=10**12)
    assert {r["batch"] for r in rows} == {0}
    assert len(rows) == len(bench_step.entries(CPU, True))
    assert "batches" not in capsys.readouterr().out


# --- main ----------------------------------------------------------------------------------------------------

def test_main_writes_csv_and_json_with_the_cpu_memory_column(tmp_path, one_thread):
    argv = ["--models", "resnet50", "--rounds", "1", "--steps", "1", "--warmup", "1", "--only", "adamw foreach",
            "--no-reference", "--device", "cpu", "--out", str(tmp_path)]
    assert bench_step.main(argv) == 0
    with open(tmp_path / "step.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["optimizer"] for r in rows] == ["torch adamw foreach"]
    row = rows[0]
    assert row["batch"] == "0"
    assert float(row["ratio_to_adamw"]) == 1.0
    peak = float(row["step_peak_extra_mib"])
    assert math.isfinite(peak) and peak > 0
    data = json.loads((tmp_path / "step.json").read_text())
    assert data["rows"][0]["step_peak_extra_mib"] == pytest.approx(peak)
    assert data["environment"]["dirty"] in (True, False, None)  # None only outside a git checkout
    assert (tmp_path / "step.png").exists()


def test_merge_keeps_other_models_and_replaces_the_rerun_one(tmp_path, one_thread, monkeypatch):
    monkeypatch.setattr(bench_step, "build_params", _tiny)
    old_env = {"device_name": "earlier run"}
    old_rows = [dict(model="vit_b16", optimizer="torch adamw foreach", median_ms=9.0),
                dict(model="resnet50", optimizer="stale", median_ms=1.0)]
    (tmp_path / "step.json").write_text(json.dumps({"environment": old_env, "rows": old_rows}))
    argv = ["--models", "resnet50", "--rounds", "1", "--steps", "1", "--warmup", "1", "--only", "adamw foreach",
            "--no-reference", "--device", "cpu", "--out", str(tmp_path), "--merge"]
    assert bench_step.main(argv) == 0
    data = json.loads((tmp_path / "step.json").read_text())
    assert [(r["model"], r["optimizer"]) for r in data["rows"]] == [("vit_b16", "torch adamw foreach"),
                                                                   ("resnet50", "torch adamw foreach")]
    assert data["environments"]["vit_b16"] == old_env
    assert data["environments"]["resnet50"]["device"] == "cpu"
    (tmp_path / "step.json").write_text("{not json")
    with pytest.raises(SystemExit, match="--merge: cannot read .*step.json"):
        bench_step.main(argv)


def test_target_summary_judges_the_fastest_of_ours_per_model():
    def row(model, label, family, **ratios):
        return dict(model=model, optimizer=label, family=family, **ratios)

    nan = float("nan")
    rows = [row("resnet50", "adamp foreach (ours)", "adamp", ratio_to_adamw=9.0, ratio_to_sgd=nan,
                speedup_vs_official=3.0),
            row("resnet50", "adamp fused-triton (ours)", "adamp", ratio_to_adamw=1.2, ratio_to_sgd=nan,
                speedup_vs_official=30.0),
            row("resnet50", "official adamp 0.3.0", "adamp", ratio_to_adamw=0.5, ratio_to_sgd=nan,
                speedup_vs_official=1.0),
            row("resnet50", "sgdp fused (ours)", "sgdp", ratio_to_adamw=nan, ratio_to_sgd=2.0,
                speedup_vs_official=4.0)]
    gpu = bench_step.target_summary(rows, torch.device("cuda"))
    assert gpu[1] == ("  resnet50: adamp fused-triton (ours) 1.20x (ratio_to_adamw, target <= 1.5x) met; "
                      "30.0x faster than official (target >= 25x) met")
    assert gpu[2] == "  resnet50: sgdp fused (ours) 2.00x (ratio_to_sgd, target <= 1.5x) MISSED"
    cpu = bench_step.target_summary(rows, CPU)
    assert cpu[1:] == ["  resnet50: adamp fused-triton (ours) 1.20x (ratio_to_adamw, target <= 1.5x) met"]


def test_skip_leaves_out_matching_entries(tiny_bench, monkeypatch, one_thread):
    monkeypatch.setattr(bench_step, "available_memory_bytes", lambda device: 10**12)
    rows = bench_step.bench_model("tiny", CPU, rounds=1, steps=1, warmup=1, with_reference=False, only="torch",
                                  skip="adam")
    labels = {r["optimizer"] for r in rows}
    assert labels == {"torch sgd foreach", "torch sgd fused"}
    rows = bench_step.bench_model("tiny", CPU, rounds=1, steps=1, warmup=1, with_reference=False, only="torch",
                                  skip="adam,fused")
    assert {r["optimizer"] for r in rows} == {"torch sgd foreach"}


def test_gpu_entries_time_the_non_default_projections_beside_the_defaults():
    labels = [e.label for e in bench_step.entries(torch.device("cuda"), with_reference=False)]
    for name in ("adamp", "sgdp"):
        for impl in ("default", "single", "foreach", "fused", "fused-inductor", "foreach-per-tensor",
                     "fused-inductor-segmented"):
            assert f"{name} {impl} (ours)" in labels
    cpu = [e.label for e in bench_step.entries(CPU, with_reference=False)]
    assert not [label for label in cpu if "segmented" in label or "per-tensor" in label]
    # on the CPU fused=True is the foreach path again (no Triton): only the explicit inductor entry is timed
    assert "adamp fused (ours)" not in cpu and "adamp fused-inductor (ours)" in cpu


def test_only_and_skip_take_comma_separated_texts():
    assert bench_common.matches("adamp default (ours)", "default,official", None)
    assert bench_common.matches("official adamp 0.3.0", "default,official", None)
    assert not bench_common.matches("torch adamw fused", "default,official", None)
    assert not bench_common.matches("adamp fused-inductor (ours)", None, "segmented,inductor")


# --- iteration mode ------------------------------------------------------------------------------------------

def test_iteration_mode_survives_a_failing_peer_and_times_the_official_on_a_contiguous_copy(monkeypatch,
                                                                                           one_thread):
    """A candidate that raises (here: at its first step, as the official AdamP does on channels_last weights)
    becomes a row with its error and the others are timed; the official stand-in trains a contiguous model,
    and its overhead is against torch's AdamW on a contiguous model."""
    class ViewOnly(torch.optim.SGD):  # raises on channels_last weights, like the official package's .view
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.ndim == 4:
                        p.view(p.size(0), -1)
            return super().step(closure)

    def fail(params):
        raise RuntimeError("broken peer")

    cl, contiguous = torch.channels_last, torch.contiguous_format
    choices = {
        "torch adamw fused": (lambda p: torch.optim.AdamW(p, lr=1e-3), cl),
        "adamp default (ours)": (lambda p: adamp.AdamP(p, lr=1e-3), cl),
        "raises when built": (fail, cl),
        "official-like on channels_last": (lambda p: ViewOnly(p, lr=1e-3), cl),
        "torch adamw fused [contiguous]": (lambda p: torch.optim.AdamW(p, lr=1e-3), contiguous),
        "official-like [contiguous]": (lambda p: ViewOnly(p, lr=1e-3), contiguous),
    }
    monkeypatch.setattr(bench_iteration, "iteration_choices", lambda device: choices)
    monkeypatch.setattr(bench_iteration, "ITERATION_MODEL", "resnet18")
    monkeypatch.setattr(bench_iteration, "ITERATION_IMAGE", 32)
    monkeypatch.setattr(bench_iteration, "ITERATION_STEPS", 1)
    rows = bench_iteration.bench_iteration(CPU, [2], rounds=1, only=None)
    by = {r["optimizer"]: r for r in rows}
    assert list(by) == list(choices)
    assert by["raises when built"]["error"] == "RuntimeError: broken peer"
    assert "view" in by["official-like on channels_last"]["error"]
    for label in ("torch adamw fused", "adamp default (ours)", "official-like [contiguous]"):
        assert by[label]["error"] == "" and by[label]["median_ms"] > 0
    assert by["official-like [contiguous]"]["memory_format"] == "contiguous"
    assert by["official-like [contiguous]"]["overhead_vs_adamw_pct"] == pytest.approx(
        (by["official-like [contiguous]"]["median_ms"] / by["torch adamw fused [contiguous]"]["median_ms"] - 1)
        * 100)
    assert math.isnan(by["raises when built"]["median_ms"])


def test_the_transformer_xl_set_has_the_wt103_word_embedding():
    params = bench_step.build_params("transformer_xl_wt103", torch.device("meta"))
    assert max(p.shape[0] for p in params) == 267_735
    assert (267_735, 410) in [tuple(p.shape) for p in params]


def test_switched_entry_sets_the_switch_only_while_stepping(monkeypatch):
    from adamp import _projection

    seen = []
    p = torch.nn.Parameter(torch.ones(3, 2))
    p.grad = torch.ones_like(p)
    opt = adamp.AdamP([p], foreach=True)
    monkeypatch.setattr(opt, "step", lambda: seen.append(_projection.SEGMENTED))
    wrapped = bench_common.per_tensor(opt)
    wrapped.step()
    assert seen == [False] and _projection.SEGMENTED is None
    assert wrapped.state is opt.state
