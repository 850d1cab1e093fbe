"""Data of the toy problems (tasks ``toy2d`` and ``toy3d``, paper table t00): plain functions on the
results-store frames (``load_results``: one row per run; ``load_history``: long form ``run_id, step, epoch,
split, metric, value``) that return pandas frames: :func:`toy_runs`, :func:`norm_growth_table`,
:func:`lr_dependence`, :func:`toy3d_table`, :func:`trajectories`. The figures drawn from them are in
:mod:`benchmarks.analysis.toy_plots`.

History convention of the toy tasks: a ``train`` row at step ``s`` holds the weight the ``s``-th gradient
was computed at, i.e. after ``s - 1`` updates; the final weight is in the run's evaluation metrics. The
trajectory frames therefore use ``iteration = s - 1`` and append the final point at ``iteration = steps``.
Runs logged every ``k > 1`` steps hold window means; they are placed at the window's centre.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import paper
from .labels import NON_SEMANTIC_TRAIN_KEYS, display_optimizer, hashable

#: per-step quantities the toy tasks log (history split "train")
TRAJECTORY_METRICS: dict[str, tuple[str, ...]] = {
    "toy2d": ("w_x", "w_y", "w_norm", "angle_deg"),
    "toy3d": ("psi", "phi", "r", "distance", "w1", "w2", "w3"),
}
#: the final metrics that give the last point of a trajectory
_FINAL_POINT: dict[str, dict[str, str]] = {
    "toy2d": {"w_x": "w_x", "w_y": "w_y", "w_norm": "w_norm", "angle_deg": "angle_deg"},
    "toy3d": {"psi": "psi", "phi": "phi", "r": "r", "distance": "distance", "w1": "w1", "w2": "w2", "w3": "w3"},
}
#: optimizer keys that distinguish methods (everything else optimizer-related stays in the setting)
_METHOD_KEYS = (
    "optimizer.name",
    "optimizer.momentum",
    "optimizer.weight_decay",
    "optimizer.nesterov",
    "optimizer.project_buffer",
    "optimizer.dampening",
)


# --------------------------------------------------------------------------------------------------------
# labelling
# --------------------------------------------------------------------------------------------------------
def row_value(row: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = row.get(key, default)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    return value


def method_kind(row: Mapping[str, Any]) -> str:
    """The method of a toy run in the paper's words (without the momentum value).

    ``sgd`` with momentum 0 is "vanilla SGD", with momentum "momentum SGD" (toy2d) / "momentum GD" (toy3d,
    "+ WD" with weight decay); ``sgdp`` is "SGDP" (toy2d) / "momentum GD + projection" (toy3d), marked
    "(paper semantics)" when ``project_buffer`` is false. Other optimizers keep their display name.
    """
    name = str(row_value(row, "optimizer.name", "")).lower()
    task = str(row_value(row, "task", ""))
    momentum = float(row_value(row, "optimizer.momentum", 0.0) or 0.0)
    wd = float(row_value(row, "optimizer.weight_decay", 0.0) or 0.0)
    nesterov = bool(row_value(row, "optimizer.nesterov", False))
    paper_semantics = row_value(row, "optimizer.project_buffer", True) is False
    wd_text = " + WD" if wd > 0 else ""
    nesterov_text = " (Nesterov)" if nesterov else ""
    if name in ("sgd", "torch.optim:sgd", "torch.optim.sgd"):
        if momentum == 0:
            return f"vanilla {'GD' if task == 'toy3d' else 'SGD'}{wd_text}"
        return f"momentum {'GD' if task == 'toy3d' else 'SGD'}{wd_text}{nesterov_text}"
    if name == "sgdp":
        base = "momentum GD + projection" if task == "toy3d" else "SGDP"
        if wd > 0:
            base += " + WD"
        return base + nesterov_text + (" (paper semantics)" if paper_semantics else "")
    return display_optimizer(name) + wd_text


# --------------------------------------------------------------------------------------------------------
# data functions
# --------------------------------------------------------------------------------------------------------
def toy_runs(results: pd.DataFrame, task: str, statuses: Sequence[str] = ("done",)) -> pd.DataFrame:
    """The runs of ``task`` with the given statuses, plus the columns ``method`` (:func:`method_kind`),
    ``momentum``, ``lr``, ``weight_decay`` and ``steps`` (optimizer steps the run took)."""
    if results.empty or "task" not in results.columns:
        return pd.DataFrame(columns=["run_id", "method", "momentum", "lr", "weight_decay", "steps"])
    runs = results[(results["task"].astype(str) == task) & results["status"].isin(statuses)].copy()
    if runs.empty:
        return runs.assign(method=[], momentum=[], lr=[], weight_decay=[], steps=[])
    records = runs.to_dict("records")
    runs["method"] = [method_kind(r) for r in records]
    runs["momentum"] = [float(row_value(r, "optimizer.momentum", 0.0) or 0.0) for r in records]
    runs["lr"] = [float(row_value(r, "optimizer.lr", math.nan)) for r in records]
    runs["weight_decay"] = [float(row_value(r, "optimizer.weight_decay", 0.0) or 0.0) for r in records]
    runs["steps"] = [_run_steps(r) for r in records]
    return runs


def _run_steps(row: Mapping[str, Any]) -> float:
    steps = row_value(row, "timing.steps")
    if steps is not None:
        return float(steps)
    per_epoch = row_value(row, "train.steps_per_epoch")
    epochs = row_value(row, "train.epochs", 1)
    total = float(per_epoch) * float(epochs) if per_epoch is not None else math.nan
    max_steps = row_value(row, "train.max_steps")
    return min(total, float(max_steps)) if max_steps is not None else total


def _setting_columns(runs: pd.DataFrame) -> list[str]:
    """Config columns that vary between runs and change what they compute (not the seed, not logging).

    ``optimizer.*`` columns count only where they vary between runs of the same optimizer (SGD and SGDP
    have different constructor arguments, which is not a difference of setting); the method keys and the
    learning rate are reported in their own columns.
    """
    out = []
    names = runs["optimizer.name"].astype(str) if "optimizer.name" in runs.columns else pd.Series("", index=runs.index)
    for col in runs.columns:
        if not col.startswith(("data.", "model.", "optimizer.", "train.")):
            continue
        if col in NON_SEMANTIC_TRAIN_KEYS or col in _METHOD_KEYS or col == "optimizer.lr":
            continue
        values = runs[col].map(hashable)
        if col.startswith("optimizer."):
            varies = any(v.nunique(dropna=True) > 1 for _, v in values.groupby(names))
        else:
            varies = values.nunique(dropna=False) > 1
        if varies:
            out.append(col)
    return out


def unique_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per (method, momentum, lr, weight decay, settings): the one logged most often (smallest
    ``train.log_every``), so that trajectories of repeated runs (e.g. the same setting in two sweeps, or
    several seeds of a deterministic toy) are drawn once."""
    if runs.empty:
        return runs
    keys = ["method", "momentum", "lr", "weight_decay", *_setting_columns(runs)]
    frame = runs.copy()
    frame["_log_every"] = frame["train.log_every"] if "train.log_every" in frame.columns else 1
    frame["_key"] = [tuple(hashable(v) for v in row) for row in frame[keys].itertuples(index=False)]
    frame = frame.sort_values(["_log_every", "run_id"], kind="stable").drop_duplicates("_key")
    return frame.drop(columns=["_log_every", "_key"]).sort_index()


def _aggregate(runs: pd.DataFrame, keys: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean of each ``metrics.<m>`` per group of ``keys`` (toys are deterministic: several seeds agree)."""
    frame = runs.copy()
    for k in keys:
        frame[k] = frame[k].map(hashable)
    cols = {m: f"metrics.{m}" for m in metrics if f"metrics.{m}" in frame.columns}
    grouped = frame.groupby(keys, dropna=False, sort=True)
    out = grouped[list(cols.values())].mean().rename(columns={v: k for k, v in cols.items()})
    out["n_runs"] = grouped.size()
    return out.reset_index()


def paper_norm_growth(paper_dir: Path | None = None) -> dict[float, float]:
    """``{momentum: final norm}`` of momentum SGD on the 2-D toy as stated by the paper (t00), e.g. 0.9 -> 2.93."""
    table = paper.load_paper_table("t00", paper_dir)
    out: dict[float, float] = {}
    rows = table[
        table["experiment"].str.startswith("2D toy")
        & table["quantity"].str.contains("weight norm")
        & (table["optimizer"].str.strip() == "momentum SGD")
    ]
    for _, row in rows.iterrows():
        match = re.search(r"momentum\s+([0-9.]+)", row["setting"])
        if match and math.isfinite(row["value_num"]):
            out[float(match.group(1))] = float(row["value_num"])
    return out


def paper_toy3d(paper_dir: Path | None = None) -> dict[str, str]:
    """``{method kind: the paper's statement}`` for the 3-D toy (approximate values read off the plots)."""
    table = paper.load_paper_table("t00", paper_dir)
    rows = table[table["experiment"].str.startswith("3D toy")]
    out: dict[str, str] = {}
    for _, row in rows.iterrows():
        opt = row["optimizer"]
        if "projection" in opt:
            kind = "momentum GD + projection"
        elif "weight decay" in opt:
            kind = "momentum GD + WD"
        else:
            kind = "momentum GD"
        out[kind] = f"r: {row['value']} ({row['exactness']})"
    return out


def norm_growth_table(results: pd.DataFrame, paper_dir: Path | None = None) -> pd.DataFrame:
    """Norm growth on the 2-D toy per method, momentum and lr, against the paper and against momentum SGD.

    Columns: method, momentum, lr, [varying settings], steps, norm_growth (final ||w|| / initial), paper
    (the paper's stated final norm for momentum SGD, else NaN), ours_over_paper, vs_momentum_sgd (norm growth
    divided by momentum SGD's at the same momentum, lr and settings), angle_deg, steps_to_reach,
    steps_to_converge, n_runs.
    """
    runs = toy_runs(results, "toy2d")
    columns = [
        "method",
        "momentum",
        "lr",
        "steps",
        "norm_growth",
        "paper",
        "ours_over_paper",
        "vs_momentum_sgd",
        "angle_deg",
        "steps_to_reach",
        "steps_to_converge",
        "n_runs",
    ]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    if "metrics.norm_growth" not in runs.columns and "metrics.w_norm" in runs.columns:
        runs["metrics.norm_growth"] = runs["metrics.w_norm"] / runs.get("model.init_norm", 1.0)
    settings = _setting_columns(runs)
    keys = ["method", "momentum", "lr", *settings, "steps"]
    table = _aggregate(runs, keys, ["norm_growth", "angle_deg", "steps_to_reach", "steps_to_converge"])
    stated = paper_norm_growth(paper_dir)
    is_msgd = table["method"] == "momentum SGD"
    table["paper"] = [
        stated.get(round(m, 6), math.nan) if msgd else math.nan for m, msgd in zip(table["momentum"], is_msgd)
    ]
    table["ours_over_paper"] = table["norm_growth"] / table["paper"]
    context = ["momentum", "lr", *settings, "steps"]
    reference: dict[tuple, float] = {}
    for _, row in table[is_msgd].iterrows():
        reference.setdefault(tuple(row[c] for c in context), float(row["norm_growth"]))
    table["vs_momentum_sgd"] = [
        row["norm_growth"] / reference.get(tuple(row[c] for c in context), math.nan) for _, row in table.iterrows()
    ]
    order = {m: i for i, m in enumerate(["vanilla SGD", "momentum SGD", "SGDP", "SGDP (paper semantics)"])}
    table["_order"] = table["method"].map(lambda m: order.get(m, len(order)))
    table = table.sort_values([*[c for c in settings], "lr", "momentum", "_order", "method"]).drop(columns="_order")
    return table[["method", "momentum", "lr", *settings, *columns[3:]]].reset_index(drop=True)


def matched_settings(table: pd.DataFrame, tolerance: float = 0.1) -> list[float]:
    """Learning rates at which every momentum-SGD row of :func:`norm_growth_table` that has a paper value is
    within ``tolerance`` (relative) of it: the settings that reproduce the paper's stated norm growth."""
    if table.empty:
        return []
    stated = table[(table["method"] == "momentum SGD") & table["paper"].notna()]
    out = []
    for lr, rows in stated.groupby("lr", sort=True):
        if (np.abs(rows["ours_over_paper"] - 1.0) <= tolerance).all():
            out.append(float(lr))
    return out


def lr_dependence(results: pd.DataFrame) -> pd.DataFrame:
    """Norm growth on the 2-D toy as a (method, momentum) x lr pivot (empty with fewer than two lrs)."""
    table = norm_growth_table(results)
    if table.empty or table["lr"].nunique() < 2:
        return pd.DataFrame()
    pivot = table.pivot_table(index=["method", "momentum"], columns="lr", values="norm_growth", aggfunc="mean")
    pivot.columns = [f"lr={c:g}" for c in pivot.columns]
    return pivot.reset_index()


def toy3d_table(results: pd.DataFrame, paper_dir: Path | None = None) -> pd.DataFrame:
    """Final radius, peak radius, distance to the optimum per 3-D toy method, beside the paper's statement.

    Columns: method, momentum, lr, weight_decay, [varying settings], steps, r, max_r, max_r_step, distance,
    objective, steps_to_converge (-1: never settled within ``data.optimum_tol``), paper, n_runs.
    """
    runs = toy_runs(results, "toy3d")
    columns = [
        "method",
        "momentum",
        "lr",
        "weight_decay",
        "steps",
        "r",
        "max_r",
        "max_r_step",
        "distance",
        "objective",
        "steps_to_converge",
        "paper",
        "n_runs",
    ]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    settings = _setting_columns(runs)
    keys = ["method", "momentum", "lr", "weight_decay", *settings, "steps"]
    table = _aggregate(runs, keys, ["r", "max_r", "max_r_step", "distance", "objective", "steps_to_converge"])
    stated = paper_toy3d(paper_dir)
    table["paper"] = [stated.get(m.replace(" (paper semantics)", ""), "") for m in table["method"]]
    return table[["method", "momentum", "lr", "weight_decay", *settings, *columns[4:]]].reset_index(drop=True)


def trajectories(results: pd.DataFrame, history: pd.DataFrame, task: str, unique: bool = True) -> pd.DataFrame:
    """Per-step trajectory of the done runs of ``task``: one row per (run_id, iteration) with the task's
    :data:`TRAJECTORY_METRICS` as columns, plus ``method``, ``momentum`` and ``lr``. Includes the final
    point (after the last update) from the run's metrics. ``unique``: one run per setting
    (:func:`unique_settings`)."""
    names = TRAJECTORY_METRICS[task]
    runs = toy_runs(results, task)
    if unique:
        runs = unique_settings(runs)
    base_cols = ["run_id", "iteration", *names, "method", "momentum", "lr"]
    if runs.empty or history.empty:
        return pd.DataFrame(columns=base_cols)
    hist = history[
        (history["split"] == "train") & history["metric"].isin(names) & history["run_id"].isin(set(runs["run_id"]))
    ]
    if hist.empty:
        return pd.DataFrame(columns=base_cols)
    wide = hist.pivot_table(index=["run_id", "step"], columns="metric", values="value", aggfunc="last").reset_index()
    log_every = runs.set_index("run_id").get("train.log_every", pd.Series(1, index=runs["run_id"]))
    k = wide["run_id"].map(log_every).fillna(1).astype(float)
    wide["iteration"] = wide["step"].astype(float) - (k + 1.0) / 2.0
    finals = []
    for _, row in runs.iterrows():
        point = {"run_id": row["run_id"], "iteration": row["steps"]}
        for name, metric in _FINAL_POINT[task].items():
            point[name] = row.get(f"metrics.{metric}", math.nan)
        finals.append(point)
    frame = pd.concat([wide.drop(columns="step"), pd.DataFrame(finals)], ignore_index=True)
    info = runs.set_index("run_id")[["method", "momentum", "lr"]]
    frame = frame.join(info, on="run_id")
    for name in names:
        if name not in frame.columns:
            frame[name] = math.nan
    return frame.sort_values(["run_id", "iteration"])[base_cols].reset_index(drop=True)


__all__ = [
    "TRAJECTORY_METRICS",
    "format_value",
    "lr_dependence",
    "markdown_table",
    "matched_settings",
    "method_kind",
    "norm_growth_table",
    "paper_norm_growth",
    "paper_toy3d",
    "toy3d_table",
    "toy_runs",
    "trajectories",
    "unique_settings",
]


# --------------------------------------------------------------------------------------------------------
# text output
# --------------------------------------------------------------------------------------------------------
def format_value(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` significant digits, integral floats as integers, NaN as blank."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if float(value).is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table of ``frame`` (``|`` in cells escaped)."""
    if frame.empty:
        return "(no runs)"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(format_value(v, digits).replace("|", "\\|") for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])
