"""The toy problems: objectives (gradients, scale invariance), the tasks under the shared loop, the
reproduction of the paper's norm growth, and the toy report on a results folder made here."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.config.errors import ConfigError
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.toy import (
    SPHERE_ANGLE_SCALE,
    CosineToy,
    Toy2D,
    Toy3D,
    angle_deg,
    angles_to_weight,
    cosine_loss,
    cosine_loss_grad,
    sphere_angles,
    sphere_rosenbrock,
)

ROOT = Path(__file__).resolve().parents[1]


def _random_weights(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    if dim == 3:
        w[:, 2] = w[:, 2].abs() + 0.2  # upper hemisphere, away from the atan2 branch cut
    return w


# -- objectives ----------------------------------------------------------------------------------------

def test_cosine_loss_autograd_matches_finite_differences_and_the_analytic_gradient() -> None:
    target = torch.tensor([[0.6, -0.8]], dtype=torch.float64)
    w = _random_weights(8, 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: cosine_loss(x, target), (w,))
    (grad,) = torch.autograd.grad(cosine_loss(w, target).sum(), w)
    torch.testing.assert_close(grad, cosine_loss_grad(w.detach(), target), rtol=1e-12, atol=1e-12)


def test_sphere_rosenbrock_autograd_matches_finite_differences() -> None:
    w = _random_weights(8, 3, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: sphere_rosenbrock(x, 1.0, 1.0), (w,))
    assert torch.autograd.gradcheck(lambda x: sphere_rosenbrock(x, 0.5, 100.0), (w,))


@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 1e3])
def test_toy_losses_are_scale_invariant(scale: float) -> None:
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w2, w3 = _random_weights(16, 2, seed=2), _random_weights(16, 3, seed=3)
    torch.testing.assert_close(cosine_loss(scale * w2, target), cosine_loss(w2, target), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sphere_rosenbrock(scale * w3), sphere_rosenbrock(w3), rtol=1e-10, atol=1e-12)


def test_toy_gradients_are_orthogonal_to_the_weight() -> None:
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    for w, fn in ((_random_weights(16, 2, seed=4), lambda x: cosine_loss(x, target)),
                  (_random_weights(16, 3, seed=5), lambda x: sphere_rosenbrock(x, 1.0, 1.0))):
        w.requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(w).sum(), w)
        cos = (grad * w).sum(-1) / (grad.norm(dim=-1) * w.norm(dim=-1))
        assert cos.abs().max() < 1e-12
        assert grad.norm(dim=-1).min() > 0  # not trivially orthogonal


def test_sphere_mapping_round_trips_and_places_start_and_optimum_on_the_hemisphere() -> None:
    for psi, phi, r in ((-2.0, 2.0, 1.0), (1.0, 1.0, 2.5), (0.0, -2.9, 0.3)):
        w = angles_to_weight(psi, phi, r)
        assert w.shape == (1, 3) and w[0, 2] > 0
        assert w.norm().item() == pytest.approx(r, rel=1e-6)
        got = sphere_angles(w.double())
        assert got[0].item() == pytest.approx(psi, abs=1e-6) and got[1].item() == pytest.approx(phi, abs=1e-6)
    # the optimum of Rosenbrock(a=1) is (1, 1): the objective is 0 there and positive at the start
    assert sphere_rosenbrock(angles_to_weight(1.0, 1.0)).item() == pytest.approx(0.0, abs=1e-10)
    assert sphere_rosenbrock(angles_to_weight(-2.0, 2.0)).item() == pytest.approx(9.0 + 4.0, rel=1e-5)
    with pytest.raises(ValueError, match="outside the hemisphere"):
        angles_to_weight(SPHERE_ANGLE_SCALE * math.pi / 2, 0.0)


def test_angle_is_unsigned_degrees() -> None:
    target = torch.tensor([[1.0, 0.0]])
    w = torch.tensor([[0.0, 2.0], [0.0, -2.0], [-1.0, 0.0], [3.0, 0.0]])
    torch.testing.assert_close(angle_deg(w, target), torch.tensor([90.0, 90.0, 180.0, 0.0]))


# -- tasks -----------------------------------------------------------------------------------------------

def _config(task: type, **sections: dict) -> dict:
    config = {name: dict(values) for name, values in task.defaults.items()}
    for name, values in sections.items():
        config[name].update(values)
    return config


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(run_dir=tmp_path, device=torch.device("cpu"), seed=0)


def _manual_run(task, optimizer_factory, steps: int) -> dict[str, float]:
    """The shared loop's order of calls, without the loop: loss, zero_grad, backward, step."""
    model = task.build_model()
    optimizer = optimizer_factory(model.parameters())
    count = 0
    for batch in task.train_batches(0):
        loss, extra = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        count += 1
    assert count == steps == task.steps_per_epoch()
    model.eval()
    with torch.no_grad():
        return task.evaluate(model)


def test_toy2d_reproduces_the_papers_norm_growth_and_sgdp_stays_small(tmp_path: Path) -> None:
    """The configured setting (configs/toy/toy2d.yaml): momentum SGD 1 -> 2.93 (0.9) and 1 -> 27.87 (0.99)."""
    from adamp import SGDP

    task = Toy2D(_config(Toy2D), _ctx(tmp_path))
    results = {}
    for name, factory in {
        "sgd0.9": lambda p: torch.optim.SGD(p, lr=0.04, momentum=0.9),
        "sgd0.99": lambda p: torch.optim.SGD(p, lr=0.04, momentum=0.99),
        "sgdp0.9": lambda p: SGDP(p, lr=0.04, momentum=0.9),
        "sgdp0.99": lambda p: SGDP(p, lr=0.04, momentum=0.99),
        "vanilla": lambda p: torch.optim.SGD(p, lr=0.04),
    }.items():
        results[name] = _manual_run(task, factory, 450)
    assert results["sgd0.9"]["norm_growth"] == pytest.approx(2.93, rel=0.01)
    assert results["sgd0.99"]["norm_growth"] == pytest.approx(27.87, rel=0.01)
    assert results["sgdp0.9"]["norm_growth"] < 0.45 * results["sgd0.9"]["norm_growth"]
    assert results["sgdp0.99"]["norm_growth"] < 0.1 * results["sgd0.99"]["norm_growth"]
    assert results["vanilla"]["norm_growth"] < 1.05
    for metrics in results.values():
        assert metrics["norm_growth"] >= 1.0  # tangent steps can only increase the norm
        assert metrics["w_norm"] == pytest.approx(math.hypot(metrics["w_x"], metrics["w_y"]), rel=1e-6)
    assert results["sgd0.9"]["angle_deg"] < 1e-2 and results["sgd0.9"]["steps_to_converge"] > 0


def test_toy3d_momentum_gd_grows_the_radius_and_projection_does_not(tmp_path: Path) -> None:
    """The configured setting (configs/toy/toy3d.yaml), qualitatively as in the paper's plots."""
    from adamp import SGDP

    task = Toy3D(_config(Toy3D), _ctx(tmp_path))
    gd = _manual_run(task, lambda p: torch.optim.SGD(p, lr=0.0035, momentum=0.9), 200)
    wd = _manual_run(task, lambda p: torch.optim.SGD(p, lr=0.0035, momentum=0.9, weight_decay=0.2), 200)
    proj = _manual_run(task, lambda p: SGDP(p, lr=0.0035, momentum=0.9), 200)
    assert gd["r"] == pytest.approx(3.2, rel=0.05) and gd["distance"] > 0.1  # stalls short of the optimum
    assert gd["steps_to_converge"] == -1
    assert 2.0 < wd["max_r"] < 3.2 and 10 < wd["max_r_step"] < 80 and wd["r"] < 1.0
    assert proj["max_r"] < 1.3 and proj["distance"] < 0.01 and 0 < proj["steps_to_converge"] < 200


def test_convergence_bookkeeping_counts_first_hit_and_settling() -> None:
    model = CosineToy(90.0, 1.0)
    for below in (False, True, False, True, True):  # recorded at 0, 1, 2, 3, 4 updates
        model.record(torch.tensor(below))
    settled = model.convergence(final_below=True)  # after 5 updates
    assert settled["steps_to_reach"] == 1 and settled["steps_to_converge"] == 3
    assert model.convergence(final_below=False)["steps_to_converge"] == -1
    fresh = CosineToy(90.0, 1.0)
    assert fresh.convergence(final_below=True) == {"steps_to_reach": 0.0, "steps_to_converge": 0.0,
                                                   "max_norm": pytest.approx(1.0), "max_norm_step": 0.0}
    state = model.state_dict()  # the bookkeeping travels with checkpoints
    assert {"steps_seen", "first_below", "last_above", "max_norm", "max_norm_step"} <= set(state)


@pytest.mark.parametrize(("task", "key", "value", "match"), [
    (Toy2D, "data.init_angle_deg", 180.0, "init_angle_deg"),
    (Toy2D, "data.angle_tol_deg", 0.0, "angle_tol_deg"),
    (Toy2D, "train.steps_per_epoch", 0, "steps_per_epoch"),
    (Toy3D, "data.start_psi", 3.5, "start_psi"),
    (Toy3D, "data.rosenbrock_a", 2.0, "rosenbrock_a"),
    (Toy3D, "model.init_norm", -1.0, "init_norm"),
])
def test_bad_settings_are_config_errors_naming_the_key(tmp_path: Path, task, key, value, match) -> None:
    section, _, name = key.partition(".")
    with pytest.raises(ConfigError, match=match):
        task(_config(task, **{section: {name: value}}), _ctx(tmp_path))


# -- through the engine -----------------------------------------------------------------------------------

def _execute(out: Path, task: str, optimizer: dict, steps: int, **train) -> str:
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run

    config = resolve_config({"task": task, "optimizer": optimizer,
                             "train": {"steps_per_epoch": steps, "log_every": 1, "device": "cpu",
                                       "num_threads": 1, **train}})
    run_id = compute_run_id(config)
    status = execute_run(RunSpec(run_id=run_id, config=config, out_dir=out))
    run_dir = out / "runs" / run_id
    assert status == "done", (run_dir / "traceback.txt").read_text() if (run_dir / "traceback.txt").exists() else status
    return run_id


def test_toys_run_through_execute_run_with_per_step_history(tmp_path: Path) -> None:
    from benchmarks import store

    out = tmp_path / "out"
    id2 = _execute(out, "toy2d", {"name": "sgdp", "lr": 0.04, "momentum": 0.9}, 12, diagnostics="step")
    id3 = _execute(out, "toy3d", {"name": "sgd", "lr": 0.0035, "momentum": 0.9}, 10)
    results = store.load_results(out).set_index("run_id")
    assert results.loc[id2, "metrics.norm_growth"] > 1.0
    assert results.loc[id3, "metrics.r"] > 1.0
    history = store.load_history(out)
    train2 = history[(history["run_id"] == id2) & (history["split"] == "train")]
    norms = train2[train2["metric"] == "w_norm"].sort_values("step")
    assert list(norms["step"]) == list(range(1, 13))
    assert norms["value"].iloc[0] == pytest.approx(1.0)  # step 1 logs the initial weight
    diag = history[(history["run_id"] == id2) & (history["split"] == "diag")]
    assert {"si_weight_norm", "effective_step_size", "si_fraction"} <= set(diag["metric"])
    fractions = diag[diag["metric"] == "si_fraction"].sort_values("step")["value"]
    assert len(fractions) == 12 and fractions.between(0.0, 1.0).all()
    # The first step's gradient is exactly orthogonal to the weight it is paired with in either call order
    # (before or after the update: see test_diagnostics for why the order matters on later steps).
    assert fractions.iloc[0] == 1.0
    train3 = history[(history["run_id"] == id3) & (history["split"] == "train")]
    assert {"psi", "phi", "r", "distance"} <= set(train3["metric"])
    assert train3[train3["metric"] == "psi"].sort_values("step")["value"].iloc[0] == pytest.approx(-2.0, abs=1e-5)


def _load_report_script():
    spec = importlib.util.spec_from_file_location("toy_report", ROOT / "scripts" / "toy_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_report_on_a_small_results_folder(tmp_path: Path) -> None:
    from benchmarks import store
    from benchmarks.analysis import toy, toy_plots

    out = tmp_path / "out"
    for opt in ({"name": "sgd", "lr": 0.04, "momentum": 0.0}, {"name": "sgd", "lr": 0.04, "momentum": 0.9},
                {"name": "sgdp", "lr": 0.04, "momentum": 0.9}, {"name": "sgd", "lr": 0.04, "momentum": 0.99},
                {"name": "sgdp", "lr": 0.04, "momentum": 0.99, "project_buffer": False}):
        _execute(out, "toy2d", opt, 40)
    _execute(out, "toy2d", {"name": "sgd", "lr": 0.02, "momentum": 0.9}, 40, log_every=10)
    for opt in ({"name": "sgd", "lr": 0.0035, "momentum": 0.9},
                {"name": "sgd", "lr": 0.0035, "momentum": 0.9, "weight_decay": 0.2},
                {"name": "sgdp", "lr": 0.0035, "momentum": 0.9}):
        _execute(out, "toy3d", opt, 30)

    results, history = store.load_results(out), store.load_history(out)
    table = toy.norm_growth_table(results)
    row = table[(table["method"] == "momentum SGD") & (table["momentum"] == 0.9) & (table["lr"] == 0.04)].iloc[0]
    assert row["paper"] == 2.93 and row["vs_momentum_sgd"] == 1.0
    sgdp = table[(table["method"] == "SGDP") & (table["momentum"] == 0.9)].iloc[0]
    assert sgdp["vs_momentum_sgd"] < 0.9 and math.isnan(sgdp["paper"])
    assert table[table["momentum"] == 0.99]["paper"].dropna().tolist() == [27.87]
    assert set(table["method"]) == {"vanilla SGD", "momentum SGD", "SGDP", "SGDP (paper semantics)"}
    assert not toy.lr_dependence(results).empty  # lr 0.02 and 0.04 for momentum SGD 0.9
    traj = toy.trajectories(results, history, "toy2d")
    one = traj[traj["method"] == "momentum SGD"].groupby("run_id")["iteration"].agg(["min", "max", "size"])
    assert (one["min"] == 0).any() and (one["max"] == 40).all()  # initial weight ... final weight
    three = toy.toy3d_table(results)
    assert set(three["method"]) == {"momentum GD", "momentum GD + WD", "momentum GD + projection"}
    assert three["paper"].str.contains("3.2").any()

    gif = toy_plots.animate_toy2d(traj, 0.04, tmp_path / "anim" / "toy.gif", max_frames=3)
    assert gif.stat().st_size > 0 and gif.read_bytes()[:3] == b"GIF"

    report = _load_report_script()
    dest = tmp_path / "report"
    assert report.main([str(out), "--out", str(dest), "--no-animation"]) == 0
    md = (dest / "table.md").read_text()
    assert "2.93" in md and "27.87" in md and "paper (project page)" in md
    csv = pd.read_csv(dest / "table.csv")
    assert {"method", "momentum", "lr", "norm_growth", "paper", "vs_momentum_sgd"} <= set(csv.columns)
    assert (dest / "toy3d.csv").exists() and (dest / "lr_sweep.csv").exists()
    pngs = {p.name for p in dest.glob("*.png")}
    assert {"toy2d_curves_lr0.04.png", "toy2d_plane_lr0.04.png", "toy3d_paths.png", "toy3d_space.png",
            "toy2d_norm_vs_lr.png"} <= pngs
    assert "toy2d_curves_lr0.02.png" not in pngs  # lr 0.02 was logged every 10 steps only
    assert report.main([str(tmp_path / "missing")]) == 1


def test_toy_configs_expand_to_the_documented_runs() -> None:
    from benchmarks.engine.sweep import plan_sweep

    plan = plan_sweep([str(ROOT / "configs/toy/toy2d.yaml"), str(ROOT / "configs/toy/toy3d.yaml")], [],
                      out_dir=None, smoke=False, retry_failed=False)
    configs = [r.spec.config for r in plan.runs]
    toy2d = [c for c in configs if c["task"] == "toy2d"]
    toy3d = [c for c in configs if c["task"] == "toy3d"]
    assert len(toy2d) == 10 and len(toy3d) == 4
    assert {c["optimizer"]["lr"] for c in toy2d} == {0.04} and {c["train"]["steps_per_epoch"] for c in toy2d} == {450}
    assert {(c["optimizer"]["name"], c["optimizer"]["momentum"]) for c in toy2d} >= {
        ("sgd", 0.0), ("sgd", 0.9), ("sgd", 0.95), ("sgd", 0.99), ("sgdp", 0.9), ("sgdp", 0.95), ("sgdp", 0.99)}
    assert {c["optimizer"].get("weight_decay") for c in toy3d} == {0.0, 0.2}
    assert all(c["train"]["steps_per_epoch"] == 200 for c in toy3d)
    json.dumps(configs)  # resolved configs are plain JSON
