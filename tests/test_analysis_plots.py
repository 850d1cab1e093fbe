"""benchmarks.analysis.plots and .report: figure data by hand, files written and readable, CLI end to end.

``write_results_folder`` writes a small results folder in the store's documented format (record.json +
history.jsonl per run); tests/test_notebook.py uses it too.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from benchmarks.analysis import commands, compare, plots, report

ACCURACY = {"sgd": 95.0, "sgdp": 96.0, "adamp": 97.0}


def write_results_folder(out: Path, seeds: int = 3, diverged: bool = True) -> Path:
    """A digits-demo-like results folder: 3 optimizers x ``seeds`` seeds with train/val/diag history, one
    diverged run, and a tagged, shortened language-model run."""
    from benchmarks.store import write_record

    rng = np.random.default_rng(0)

    def write(
        run_id: str, config: dict, status: str, metrics: dict, history: list[dict], error: str | None = None
    ) -> None:
        run_dir = out / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_record(
            run_dir,
            {
                "run_id": run_id,
                "config": config,
                "status": status,
                "metrics": metrics,
                "error": error,
                "timing": {
                    "started": "2026-01-01T00:00:00",
                    "ended": "2026-01-01T00:01:00",
                    "wall_s": 60.0,
                    "steps": 30,
                    "step_time_s": 0.002,
                },
                "env": {
                    "torch": "2.14.1",
                    "python": "3.11.7",
                    "device": "cpu (x86_64, 2 cores)",
                    "git_commit": None,
                    "host": "h",
                },
            },
        )
        (run_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))

    for opt, acc in ACCURACY.items():
        for seed in range(seeds):
            config = {
                "task": "classification",
                "data": {"name": "digits"},
                "model": {"name": "digits_cnn"},
                "optimizer": {"name": opt, "lr": 0.1, "weight_decay": 1e-4},
                "train": {"seed": seed, "epochs": 3, "max_steps": None, "diagnostics": "epoch"},
            }
            history = [
                {"step": 10 * s, "epoch": s / 10, "split": "train", "loss": 2.0 * math.exp(-s / 10) + 0.01 * seed}
                for s in range(1, 31)
            ]
            for epoch in (1, 2, 3):
                history.append(
                    {
                        "step": 100 * epoch,
                        "epoch": epoch,
                        "split": "val",
                        "top1": acc - 3 / epoch + 0.1 * seed,
                        "val_loss": 0.5 / epoch,
                    }
                )
                history.append(
                    {
                        "step": 100 * epoch,
                        "epoch": epoch,
                        "split": "diag",
                        "si_weight_norm": 1 + epoch * (0.2 if opt.endswith("p") else 1.0),
                        "effective_step_size": 1e-3 / epoch,
                        "si_fraction": 0.9 if opt.endswith("p") else 0.0,
                    }
                )
            status, metrics, error = "done", {"top1": acc + 0.1 * seed + rng.normal(0, 0.05), "val_loss": 0.2}, None
            if diverged and opt == "sgd" and seed == seeds - 1:
                status, metrics, error = "diverged", {}, "non-finite training loss (nan) at step 12"
                history = history[:5] + [{"step": 60, "epoch": 0.6, "split": "train", "loss": float("nan")}]
            write(f"classification-{opt}-{seed}", config, status, metrics, history, error)
    for opt, ppl in (("adamw", 90.0), ("adamp", 88.0)):
        config = {
            "task": "language_model",
            "data": {"name": "synthetic"},
            "model": {"name": "transformer_xl", "weight_norm": True},
            "optimizer": {"name": opt, "lr": 1e-3},
            "train": {"seed": 0, "max_steps": 4},
            "tags": {"table": "t07", "reduced": True},
        }
        write(
            f"language_model-{opt}-0",
            config,
            "done",
            {"test_ppl": ppl, "val_ppl": ppl + 1},
            [{"step": 4, "epoch": 1, "split": "train", "loss": 4.5}],
        )
    return out


def history_frame(points: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=["run_id", "step", "epoch", "split", "metric", "value"])


# ---------------------------------------------------------------------------------------- figure data
def test_curve_stats_by_hand():
    hist = history_frame(
        [
            ("a", 1, 0.5, "train", "loss", 2.0),
            ("b", 1, 0.5, "train", "loss", 4.0),
            ("a", 2, 1.0, "train", "loss", 1.0),
            ("b", 2, 1.0, "train", "loss", float("nan")),
            ("c", 1, 0.5, "train", "loss", 100.0),  # another run: not selected
            ("a", 1, 0.5, "val", "loss", 7.0),  # another split
        ]
    )
    st = curve_stats(hist, ["a", "b"])
    assert st["x"].tolist() == [1.0, 2.0] and st.attrs["x"] == "step"
    assert st["mean"].tolist() == [3.0, 1.0] and st["n"].tolist() == [2, 1]
    assert st["std"].iloc[0] == pytest.approx(math.sqrt(2.0)) and math.isnan(st["std"].iloc[1])
    assert curve_stats(hist, ["a", "b"], x="epoch")["x"].tolist() == [0.5, 1.0]


def curve_stats(hist, ids, x="step"):
    return plots.curve_stats(hist, ids, "train", "loss", x)


def test_training_and_diagnostic_specs():
    results = pd.DataFrame(
        [
            {
                "run_id": r,
                "status": "done",
                "task": "classification",
                "data.name": "digits",
                "model.name": "m",
                "optimizer.name": opt,
                "train.seed": s,
                "metrics.top1": 1.0,
            }
            for r, opt, s in (("a", "sgd", 0), ("b", "sgd", 1), ("c", "adamp", 0))
        ]
    )
    points = []
    for run_id in "abc":
        for step in (1, 2):
            points.append((run_id, step, step / 2, "train", "loss", 1.0 / step))
        points.append((run_id, 2, 1, "val", "top1", 90.0))
        points.append((run_id, 2, 1, "val", "val_loss", 0.3))
        points.append((run_id, 2, 1, "diag", "si_fraction", 0.5))
        points.append((run_id, 2, 1, "diag", "custom_stat", 3.0))
        points.append((run_id, 2, 1, "diag", "si_weight_norm", 2.0))
    hist = history_frame(points)
    (spec,) = plots.training_curves(results, hist)
    assert spec.name == "curves_classification_digits_m"
    assert [p.title for p in spec.panels] == [
        "training loss",
        "validation top1 (higher is better)",
        "validation val_loss",
    ]
    labels = [s.label for s in spec.panels[0].series]
    assert labels == ["adamp (n=1)", "sgd (n=2)"]
    sgd = spec.panels[0].series[1]
    assert sgd.lo is not None and np.allclose(sgd.lo, sgd.y)  # identical seeds: zero-width band
    assert spec.panels[0].series[0].lo is None  # one seed: no band
    (diag,) = plots.diagnostic_curves(results, hist)
    assert [p.ylabel for p in diag.panels] == ["si_weight_norm", "si_fraction", "custom_stat"]
    assert plots.diagnostic_curves(results, hist[hist["split"] != "diag"]) == []


def test_colors_are_stable_per_optimizer():
    assert plots.optimizer_color("adamp") == plots.optimizer_color("adamp[lr=0.1]") == plots.OPTIMIZER_COLORS["adamp"]
    assert len({plots.optimizer_color(n) for n in ("sgd", "sgdp", "adam", "adamw", "adamp")}) == 5
    assert plots.optimizer_color("torch.optim:NAdam") == plots.optimizer_color("torch.optim.NAdam")
    assert plots.optimizer_color("mypkg.opt:Adam") != plots.OPTIMIZER_COLORS["adam"]  # another Adam


def test_profile_and_difference_specs():
    prof = pd.DataFrame({"a": [0.5, 1.0], "b": [0.0, 0.5]}, index=pd.Index([1.0, 1.1], name="tau"))
    spec = plots.profile_figure(prof)
    assert [s.label for s in spec.panels[0].series] == ["a", "b"] and spec.panels[0].series[0].kind == "step"
    comparison = pd.DataFrame(
        [
            {
                "group": "g1",
                "method": "sgd",
                "baseline": "adamp",
                "metric": "top1",
                "mode": "max",
                "n_pairs": 3,
                "delta": -1.0,
                "ci_lo": -1.5,
                "ci_hi": -0.5,
                "outcome": "loss",
            },
            {
                "group": "g2",
                "method": "sgd",
                "baseline": "adamp",
                "metric": "ppl",
                "mode": "min",
                "n_pairs": 1,
                "delta": 2.0,
                "ci_lo": np.nan,
                "ci_hi": np.nan,
                "outcome": "inconclusive",
            },
        ]
    )
    spec = plots.difference_figure(comparison)
    assert [p.title for p in spec.panels] == ["g1", "g2"]
    assert spec.panels[0].yticklabels == ["sgd (n=3, loss)"] and "higher is better" in spec.panels[0].xlabel


# ---------------------------------------------------------------------------------------- files
def test_save_writes_readable_png_and_pdf(tmp_path):
    spec = plots.FigureSpec(
        "demo/with:odd name",
        "Demo",
        [
            plots.Panel(
                "p",
                "x",
                "y",
                [
                    plots.Series(
                        "adamp",
                        np.arange(5.0),
                        np.arange(5.0) ** 2,
                        lo=np.arange(5.0),
                        hi=np.arange(5.0) ** 2 + 1,
                        color=plots.optimizer_color("adamp"),
                    )
                ],
            )
        ],
    )
    paths = plots.save(spec, tmp_path)
    assert [p.name for p in paths] == ["demo_with_odd_name.png", "demo_with_odd_name.pdf"]
    image = matplotlib.image.imread(paths[0])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # something was drawn
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left


def test_cli_end_to_end_on_a_results_folder(tmp_path, capsys):
    out = write_results_folder(tmp_path / "out")
    parser = argparse.ArgumentParser(prog="bench")
    commands.register(parser.add_subparsers(dest="command", required=True))

    def call(*argv: str) -> int:
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert call("plots", str(out)) == 0
    pngs = sorted((out / "figures").glob("*.png"))
    assert [p.name for p in pngs] == [
        "curves_classification_digits_digits_cnn.png",
        "curves_language_model_synthetic_transformer_xl.png",
        "diagnostics_classification_digits_digits_cnn.png",
    ]
    assert all(matplotlib.image.imread(p).size > 0 for p in pngs)
    assert len(list((out / "figures").glob("*.pdf"))) == 3

    assert call("tables", str(out)) == 0
    assert sorted(p.name for p in (out / "tables").glob("*.md")) == [
        "digits_demo.md",
        "t07_language_modeling_wikitext103.md",
    ]
    t07 = pd.read_csv(out / "tables" / "t07_language_modeling_wikitext103.csv")
    assert sorted(t07["verdict"]) == ["missing", "missing", "not comparable", "not comparable"]

    capsys.readouterr()
    assert call("compare", str(out), "--baseline", "adamp", "--figure-formats", "png") == 0
    printed = capsys.readouterr().out
    assert "### Comparison with `adamp`" in printed and "| classification / digits / digits_cnn | sgdp |" in printed
    cmp_dir = out / "compare" / "vs-adamp"
    comparison = pd.read_csv(cmp_dir / "comparison.csv").set_index("method")
    assert comparison.loc["sgdp", "n_pairs"] == 3 and comparison.loc["sgdp", "outcome"] == "loss"
    assert comparison.loc["sgd", "n_pairs"] == 2 and comparison.loc["sgd", "failed_method"] == 1
    assert comparison.loc["adamw", "outcome"] == "inconclusive"
    assert not list(cmp_dir.glob("*.pdf"))
    for name in ("performance_profile.png", "paired_differences.png", "wins.csv", "costs.csv"):
        assert (cmp_dir / name).is_file()
    assert call("compare", str(out), "--baseline", "lion") == 2
    assert call("compare", str(out), "--where", "nope=1") == 2
    assert (
        call(
            "compare",
            str(out),
            "--where",
            "task=classification",
            "--metric",
            "val_loss",
            "--mode",
            "min",
            "--out",
            str(tmp_path / "cmp"),
            "--figure-formats",
            "svg",
        )
        == 0
    )
    assert (tmp_path / "cmp" / "paired_differences.svg").is_file()
    assert set(pd.read_csv(tmp_path / "cmp" / "comparison.csv")["metric"]) == {"val_loss"}

    plan = tmp_path / "plan.csv"
    plan.write_text("task,model.name,optimizer.name,steps,runs\nclassification,digits_cnn,adamp,1800000,2\n")
    capsys.readouterr()
    assert call("compare", str(out), "--plan", str(plan)) == 0
    assert "estimated total: 2.000 device-hours" in capsys.readouterr().out

    assert call("report", str(out), "--figure-formats", "png") == 0
    text = (out / "report.md").read_text()
    for heading in ("# Results report", "## Tables", "## Comparison", "## Figures", "## Diverged and failed runs"):
        assert heading in text
    assert "classification-sgd-2" in text and "non-finite training loss" in text
    for link in [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
        assert (out / link).is_file(), link


def test_report_module_loads_through_the_store(tmp_path):
    out = write_results_folder(tmp_path / "o", seeds=2, diverged=False)
    results, history = report.load(out)
    assert len(results) == 8 and set(history["split"]) == {"train", "val", "diag"}
    assert set(compare.method_labels(results)) == {"sgd", "sgdp", "adamp", "adamw"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.load(tmp_path / "missing")


def test_curves_of_different_optimizers_differ_in_line_style():
    # two optimizers with identical curves were drawn both solid: the one on top hid the other
    styles = plots._linestyles(["adamp", "sgd", "sgdp", "adamp[lr=0.1]"])
    assert styles["adamp"] != styles["sgd"] != styles["sgdp"] and styles["adamp"] != styles["adamp[lr=0.1]"]
