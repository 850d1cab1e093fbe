"""Data and figures of the toy problems (tasks ``toy2d`` and ``toy3d``, paper table t00).

Two layers, as in :mod:`benchmarks.analysis.plots`:

* plain functions on the results-store frames (``load_results``: one row per run; ``load_history``: long
  form ``run_id, step, epoch, split, metric, value``) that return pandas frames: :func:`toy_runs`,
  :func:`norm_growth_table`, :func:`lr_dependence`, :func:`toy3d_table`, :func:`trajectories`;
* a thin matplotlib layer (``matplotlib.figure.Figure`` only, no pyplot) that draws those frames:
  :func:`toy_figures` writes every toy figure of a results folder (and an animated GIF of the 2-D paths).

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

from . import compare, paper

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

# Colours per method kind; momentum is shown by panel (2-D) so one colour per kind is enough.
_KIND_COLORS = {
    "vanilla SGD": "#7f7f7f",
    "momentum SGD": "#1f77b4",
    "momentum GD": "#1f77b4",
    "momentum GD + WD": "#2ca02c",
    "SGDP": "#d62728",
    "SGDP (paper semantics)": "#ff7f0e",
    "momentum GD + projection": "#d62728",
    "momentum GD + projection (paper semantics)": "#ff7f0e",
}


# --------------------------------------------------------------------------------------------------------
# labelling
# --------------------------------------------------------------------------------------------------------
def _get(row: Mapping[str, Any], key: str, default: Any = None) -> Any:
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
    name = str(_get(row, "optimizer.name", "")).lower()
    task = str(_get(row, "task", ""))
    momentum = float(_get(row, "optimizer.momentum", 0.0) or 0.0)
    wd = float(_get(row, "optimizer.weight_decay", 0.0) or 0.0)
    nesterov = bool(_get(row, "optimizer.nesterov", False))
    paper_semantics = _get(row, "optimizer.project_buffer", True) is False
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
    return compare.display_optimizer(name) + wd_text


def _kind_color(kind: str) -> str:
    if kind in _KIND_COLORS:
        return _KIND_COLORS[kind]
    from .plots import optimizer_color

    return optimizer_color(kind)


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
    runs["momentum"] = [float(_get(r, "optimizer.momentum", 0.0) or 0.0) for r in records]
    runs["lr"] = [float(_get(r, "optimizer.lr", math.nan)) for r in records]
    runs["weight_decay"] = [float(_get(r, "optimizer.weight_decay", 0.0) or 0.0) for r in records]
    runs["steps"] = [_run_steps(r) for r in records]
    return runs


def _run_steps(row: Mapping[str, Any]) -> float:
    steps = _get(row, "timing.steps")
    if steps is not None:
        return float(steps)
    per_epoch = _get(row, "train.steps_per_epoch")
    epochs = _get(row, "train.epochs", 1)
    total = float(per_epoch) * float(epochs) if per_epoch is not None else math.nan
    max_steps = _get(row, "train.max_steps")
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
        if col in compare.NON_SEMANTIC_TRAIN_KEYS or col in _METHOD_KEYS or col == "optimizer.lr":
            continue
        values = runs[col].map(compare.hashable)
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
    frame["_key"] = [tuple(compare.hashable(v) for v in row) for row in frame[keys].itertuples(index=False)]
    frame = frame.sort_values(["_log_every", "run_id"], kind="stable").drop_duplicates("_key")
    return frame.drop(columns=["_log_every", "_key"]).sort_index()


def _aggregate(runs: pd.DataFrame, keys: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean of each ``metrics.<m>`` per group of ``keys`` (toys are deterministic: several seeds agree)."""
    frame = runs.copy()
    for k in keys:
        frame[k] = frame[k].map(compare.hashable)
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


# --------------------------------------------------------------------------------------------------------
# drawing layer
# --------------------------------------------------------------------------------------------------------
def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _lr_text(lr: float) -> str:
    return f"lr {lr:g}"


def draw_toy2d_curves(traj: pd.DataFrame, lr: float, paper_values: Mapping[float, float] | None = None):
    """Weight norm, angle to w* and effective step size lr/||w||^2 against the iteration, one column per
    momentum; vanilla SGD (momentum 0) is drawn in every column as the reference."""
    import matplotlib

    from .plots import STYLE

    sub = traj[np.isclose(traj["lr"].astype(float), lr)]
    momenta = sorted(m for m in sub["momentum"].unique() if m > 0) or [0.0]
    vanilla = sub[sub["momentum"] == 0]
    with matplotlib.rc_context(STYLE):
        fig = _figure(3.4 * len(momenta), 7.2)
        axes = fig.subplots(3, len(momenta), squeeze=False, sharex="col")
        for j, mom in enumerate(momenta):
            cur = pd.concat([vanilla, sub[sub["momentum"] == mom]]) if mom > 0 else vanilla
            for run_id, path in cur.groupby("run_id", sort=False):
                kind = path["method"].iloc[0]
                style = _kind_style(kind)
                it = path["iteration"].to_numpy()
                norm = path["w_norm"].to_numpy(dtype=float)
                axes[0, j].plot(it, norm, label=kind, **style)
                # float32 angles reach exactly 0: clip for the log axis
                axes[1, j].plot(it, np.maximum(path["angle_deg"].to_numpy(dtype=float), 1e-3), label=kind, **style)
                axes[2, j].plot(it, lr / norm**2, label=kind, **style)
            if paper_values and mom in paper_values:
                axes[0, j].axhline(
                    paper_values[mom],
                    color="black",
                    linestyle=":",
                    linewidth=1.0,
                    label=f"{paper.PAPER_LABEL}: {paper_values[mom]:g}",
                )
            axes[0, j].set_title(f"momentum {mom:g}, {_lr_text(lr)}")
            axes[0, j].set_ylabel("||w||")
            axes[1, j].set_yscale("log")
            axes[1, j].set_ylabel("angle to w* (deg, floor 1e-3)")
            axes[2, j].set_yscale("log")
            axes[2, j].set_ylabel("lr / ||w||^2")
            axes[2, j].set_xlabel("iteration")
            axes[0, j].legend(frameon=False, fontsize=6)
        fig.suptitle("2-D toy: -cos(w, w*); weight norm, angle and effective step size")
    return fig


def _plane_limits(xs: np.ndarray, ys: np.ndarray, pad: float = 0.08) -> tuple[tuple[float, float], tuple[float, float]]:
    """Limits that contain the paths, the origin and the unit circle's right half, with a margin."""
    x_lo, x_hi = min(-0.2, float(np.nanmin(xs))), max(1.2, float(np.nanmax(xs)))
    y_lo, y_hi = min(-1.1, float(np.nanmin(ys))), max(1.1, float(np.nanmax(ys)))
    dx, dy = (x_hi - x_lo) * pad, (y_hi - y_lo) * pad
    return (x_lo - dx, x_hi + dx), (y_lo - dy, y_hi + dy)


def _kind_style(kind: str) -> dict[str, Any]:
    """Line style per method kind: the GD family on top, so that paths that coincide at first stay visible."""
    style: dict[str, Any] = {"color": _kind_color(kind), "linestyle": "-", "zorder": 2}
    if "paper semantics" in kind:
        style["linestyle"] = ":"
    if "WD" in kind:
        style["linestyle"] = "--"
    if kind.startswith(("momentum SGD", "momentum GD", "vanilla")) and "projection" not in kind:
        style["zorder"] = 3
    return style


def draw_toy2d_plane(traj: pd.DataFrame, lr: float):
    """The paths of w in the plane, one column per momentum: the whole path (top) and the region around the
    unit circle (bottom), with the target ray."""
    import matplotlib

    from .plots import STYLE

    sub = traj[np.isclose(traj["lr"].astype(float), lr)]
    momenta = sorted(m for m in sub["momentum"].unique() if m > 0) or [0.0]
    vanilla = sub[sub["momentum"] == 0]
    with matplotlib.rc_context(STYLE):
        fig = _figure(3.6 * len(momenta), 6.6)
        axes = fig.subplots(2, len(momenta), squeeze=False)
        theta = np.linspace(0, 2 * np.pi, 200)
        for j, mom in enumerate(momenta):
            cur = pd.concat([vanilla, sub[sub["momentum"] == mom]]) if mom > 0 else vanilla
            full = _plane_limits(cur["w_x"].to_numpy(dtype=float), cur["w_y"].to_numpy(dtype=float))
            # the bottom row frames the methods whose norm stays small (all but momentum SGD)
            small = cur[~cur["method"].str.startswith("momentum SGD")]
            small = small if not small.empty else cur
            zoom = _plane_limits(small["w_x"].to_numpy(dtype=float), small["w_y"].to_numpy(dtype=float))
            for i, (xlim, ylim) in enumerate((full, zoom)):
                ax = axes[i, j]
                ax.plot(np.cos(theta), np.sin(theta), color="0.75", linewidth=0.8)
                ax.plot([0, xlim[1]], [0, 0], color="black", linestyle=":", linewidth=1.0, label="w* direction")
                for _, path in cur.groupby("run_id", sort=False):
                    kind = path["method"].iloc[0]
                    ax.plot(path["w_x"], path["w_y"], label=kind, marker=".", markersize=2, **_kind_style(kind))
                if i == 1:  # the full path of momentum SGD is far too wide for an equal aspect
                    ax.set_aspect("equal", adjustable="box")
                ax.set_xlim(*xlim)
                ax.set_ylim(*ylim)
                ax.set_xlabel("w_1")
                ax.set_ylabel("w_2")
            axes[0, j].set_title(f"momentum {mom:g}, {_lr_text(lr)}")
            axes[1, j].set_title("near the unit circle")
            axes[0, j].legend(frameon=False, fontsize=6, loc="best")
        fig.suptitle("2-D toy: trajectories of w (the grey circle is ||w|| = 1)")
    return fig


def draw_lr_dependence(table: pd.DataFrame):
    """Norm growth against lr (log-log), one line per method and momentum."""
    import matplotlib
    import matplotlib.ticker

    from .plots import STYLE

    with matplotlib.rc_context(STYLE):
        fig = _figure(5.0, 3.6)
        ax = fig.subplots()
        styles = {0.0: "-", 0.9: "-", 0.95: "--", 0.99: ":"}
        for (method, mom), rows in table.groupby(["method", "momentum"], sort=True):
            rows = rows.sort_values("lr")
            ax.plot(
                rows["lr"],
                rows["norm_growth"],
                color=_kind_color(method),
                linestyle=styles.get(mom, "-."),
                marker="o",
                markersize=3,
                label=f"{method}, momentum {mom:g}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        lrs = sorted(table["lr"].unique())
        ax.set_xticks(lrs, [f"{v:g}" for v in lrs])  # label the grid's learning rates, not the decades
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("learning rate")
        ax.set_ylabel("final ||w|| / initial ||w||")
        ax.set_title("2-D toy: norm growth against the learning rate")
        # outside the axes: the curves fill the plot from corner to corner
        ax.legend(frameon=False, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def draw_toy3d(traj: pd.DataFrame, a: float = 1.0, b: float = 1.0, start: tuple[float, float] = (-2.0, 2.0)):
    """(psi, phi) paths over the Rosenbrock contours, the radius r and the distance to the optimum."""
    import matplotlib
    from matplotlib.colors import LogNorm

    from .plots import STYLE

    with matplotlib.rc_context(STYLE):
        fig = _figure(11.0, 3.6)
        ax_path, ax_r, ax_d = fig.subplots(1, 3)
        psi = np.linspace(-2.6, 2.0, 200)
        phi = np.linspace(-0.6, 2.8, 200)
        pp, ff = np.meshgrid(psi, phi)
        z = (a - pp) ** 2 + b * (ff - pp**2) ** 2
        ax_path.contourf(
            pp,
            ff,
            z + 1e-3,
            levels=np.logspace(-3, math.log10(z.max() + 1e-3), 18),
            norm=LogNorm(),
            cmap="Greys",
            alpha=0.6,
        )
        ax_path.plot([start[0]], [start[1]], "ko", markersize=4)
        ax_path.plot([a], [a * a], "k*", markersize=9, label="optimum")
        for _, path in traj.groupby("run_id", sort=False):
            kind = path["method"].iloc[0]
            style = _kind_style(kind)
            it = path["iteration"].to_numpy()
            ax_path.plot(path["psi"], path["phi"], label=kind, linewidth=1.2, **style)
            ax_r.plot(it, path["r"], label=kind, **style)
            ax_d.plot(it, np.maximum(path["distance"].to_numpy(dtype=float), 1e-6), label=kind, **style)
        ax_path.set_xlabel("psi")
        ax_path.set_ylabel("phi")
        ax_path.set_title("trajectories on the hemisphere")
        ax_path.legend(frameon=False, fontsize=6, loc="lower right")
        ax_r.set_xlabel("iteration")
        ax_r.set_ylabel("r = ||w||")
        ax_r.set_title("radius (redundant axis)")
        ax_r.legend(frameon=False, fontsize=6)
        ax_d.set_yscale("log")
        ax_d.set_xlabel("iteration")
        ax_d.set_ylabel("distance to (1, 1) in (psi, phi)")
        ax_d.set_title("distance to the optimum")
        fig.suptitle("3-D toy: Rosenbrock on the hemisphere with a radial axis")
    return fig


def draw_toy3d_space(traj: pd.DataFrame):
    """The 3-D toy's trajectories in weight space (w1, w2, w3), with the unit hemisphere as a wireframe."""
    import matplotlib

    from .plots import STYLE

    if not {"w1", "w2", "w3"} <= set(traj.columns) or traj[["w1", "w2", "w3"]].isna().all().all():
        raise ValueError("the 3-D toy's history has no weight coordinates w1..w3 (runs from before they were "
                         "logged): rerun `make reproduce-toy`")
    with matplotlib.rc_context(STYLE):
        fig = _figure(5.0, 4.6)
        ax = fig.add_subplot(projection="3d")
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 30), np.linspace(0, np.pi / 2, 12))
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.8", linewidth=0.4)
        for _, path in traj.groupby("run_id", sort=False):
            kind = path["method"].iloc[0]
            style = _kind_style(kind)
            style.pop("zorder")
            ax.plot(path["w1"].to_numpy(dtype=float), path["w2"].to_numpy(dtype=float),
                    path["w3"].to_numpy(dtype=float), label=kind, **style)
        ax.set_aspect("equal")  # the hemisphere must look round for the radial growth to read right
        ax.set_xlabel("w1")
        ax.set_ylabel("w2")
        ax.set_zlabel("w3")
        ax.legend(frameon=False, fontsize=6, loc="upper left")
        ax.set_title("3-D toy: paths of w (unit hemisphere in grey)")
    return fig


def animate_toy2d(traj: pd.DataFrame, lr: float, path: Path, max_frames: int = 48, fps: int = 10) -> Path:
    """Write an animated GIF of the 2-D paths (one panel per momentum) with matplotlib's PillowWriter."""
    import matplotlib
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .plots import STYLE

    sub = traj[np.isclose(traj["lr"].astype(float), lr)]
    momenta = sorted(m for m in sub["momentum"].unique() if m > 0) or [0.0]
    vanilla = sub[sub["momentum"] == 0]
    n_iter = int(np.nanmax(sub["iteration"].to_numpy(dtype=float))) + 1
    frames = np.unique(np.linspace(0, n_iter - 1, min(max_frames, n_iter)).astype(int))
    with matplotlib.rc_context(STYLE):
        # No layout engine: constrained layout would be recomputed for every frame (seconds per frame).
        fig = _figure(3.0 * len(momenta), 3.2, layout=None)
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.84, wspace=0.25)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(momenta), squeeze=False)[0]
        artists = []
        theta = np.linspace(0, 2 * np.pi, 120)
        for ax, mom in zip(axes, momenta):
            cur = pd.concat([vanilla, sub[sub["momentum"] == mom]]) if mom > 0 else vanilla
            reach = max(1.2, float(np.nanmax(np.abs(cur[["w_x", "w_y"]].to_numpy(dtype=float)))) * 1.05)
            ax.plot(np.cos(theta), np.sin(theta), color="0.75", linewidth=0.8)
            ax.plot([0, reach], [0, 0], color="black", linestyle=":", linewidth=1.0)
            for _, run in cur.groupby("run_id", sort=False):
                kind = run["method"].iloc[0]
                (line,) = ax.plot([], [], color=_kind_color(kind), label=kind, linewidth=1.0)
                (dot,) = ax.plot([], [], "o", color=_kind_color(kind), markersize=4)
                artists.append(
                    (
                        run["iteration"].to_numpy(dtype=float),
                        run["w_x"].to_numpy(dtype=float),
                        run["w_y"].to_numpy(dtype=float),
                        line,
                        dot,
                    )
                )
            ax.set_aspect("equal")
            ax.set_xlim(-reach, reach)
            ax.set_ylim(-reach, reach)
            ax.set_title(f"momentum {mom:g}, {_lr_text(lr)}")
            ax.legend(frameon=False, fontsize=6, loc="lower left")
        label = fig.suptitle("")

        def update(frame: int):
            for it, xs, ys, line, dot in artists:
                keep = it <= frame
                line.set_data(xs[keep], ys[keep])
                if keep.any():
                    dot.set_data(xs[keep][-1:], ys[keep][-1:])
            label.set_text(f"2-D toy, iteration {frame}")
            return [a for *_, line, dot in artists for a in (line, dot)] + [label]

        # blit: the writer renders each frame once (savefig); without it every frame is also drawn for display
        anim = FuncAnimation(fig, update, frames=frames, init_func=lambda: update(int(frames[0])), blit=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        try:
            # bbox "tight" (the suite's style) would draw every frame twice
            with matplotlib.rc_context({"savefig.bbox": None}):
                anim.save(str(tmp), writer=PillowWriter(fps=fps), dpi=70)
            tmp.replace(path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


def _toy3d_settings(runs: pd.DataFrame) -> dict[str, Any]:
    first = runs.iloc[0]
    return {
        "a": float(_get(first, "data.rosenbrock_a", 1.0)),
        "b": float(_get(first, "data.rosenbrock_b", 1.0)),
        "start": (float(_get(first, "data.start_psi", -2.0)), float(_get(first, "data.start_phi", 2.0))),
    }


def toy_figures(
    results: pd.DataFrame,
    history: pd.DataFrame,
    out_dir: Path,
    formats: Sequence[str] = ("png",),
    animation: bool = True,
    paper_dir: Path | None = None,
) -> list[Path]:
    """Draw every toy figure of the results into ``out_dir``; returns the written paths.

    2-D toy, per learning rate with runs logged every step (every learning rate if there are none):
    ``toy2d_curves_lr<lr>`` (norm, angle, effective step size), ``toy2d_plane_lr<lr>`` (paths of w) and,
    with ``animation``, ``toy2d_lr<lr>.gif``; ``toy2d_norm_vs_lr`` with several learning rates. 3-D toy, per (a, b, start) setting:
    ``toy3d_paths`` (angles, radius, distance) and ``toy3d_space`` (paths in weight space).
    """
    from .plots import safe_name, save

    out_dir = Path(out_dir)
    paths: list[Path] = []
    traj2 = trajectories(results, history, "toy2d")
    if not traj2.empty:
        stated = paper_norm_growth(paper_dir)
        runs2 = toy_runs(results, "toy2d")
        step_logged = set(runs2.loc[runs2.get("train.log_every", pd.Series(1, index=runs2.index)) == 1, "run_id"])
        fine = traj2[traj2["run_id"].isin(step_logged)]
        # Trajectory figures need the per-step history: learning rates only logged coarsely (an lr sweep)
        # are covered by the norm-vs-lr figure, unless no run was logged every step.
        lrs = sorted(fine["lr"].dropna().unique()) or sorted(traj2["lr"].dropna().unique())
        for lr in lrs:
            tag = safe_name(f"lr{lr:g}")
            paths += save(draw_toy2d_curves(traj2, lr, stated), out_dir, f"toy2d_curves_{tag}", formats)
            paths += save(draw_toy2d_plane(traj2, lr), out_dir, f"toy2d_plane_{tag}", formats)
            if animation and not fine[np.isclose(fine["lr"].astype(float), lr)].empty:
                paths.append(animate_toy2d(fine, lr, out_dir / f"toy2d_{tag}.gif"))
        dependence = norm_growth_table(results, paper_dir)
        if dependence["lr"].nunique() >= 2:
            paths += save(draw_lr_dependence(dependence), out_dir, "toy2d_norm_vs_lr", formats)
    traj3 = trajectories(results, history, "toy3d")
    if not traj3.empty:
        runs3 = toy_runs(results, "toy3d")
        keys = [
            c
            for c in ("data.rosenbrock_a", "data.rosenbrock_b", "data.start_psi", "data.start_phi")
            if c in runs3.columns and runs3[c].nunique() > 1
        ]
        groups = runs3.groupby(keys, sort=True) if keys else [((), runs3)]
        for key, group in groups:
            suffix = (
                ""
                if not keys
                else "_"
                + safe_name(
                    "_".join(
                        f"{k.split('.')[-1]}{v:g}" for k, v in zip(keys, key if isinstance(key, tuple) else (key,))
                    )
                )
            )
            sub = traj3[traj3["run_id"].isin(set(group["run_id"]))]
            paths += save(draw_toy3d(sub, **_toy3d_settings(group)), out_dir, f"toy3d_paths{suffix}", formats)
            paths += save(draw_toy3d_space(sub), out_dir, f"toy3d_space{suffix}", formats)
    return paths


__all__ = [
    "TRAJECTORY_METRICS",
    "animate_toy2d",
    "draw_lr_dependence",
    "draw_toy2d_curves",
    "draw_toy2d_plane",
    "draw_toy3d",
    "draw_toy3d_space",
    "format_value",
    "lr_dependence",
    "markdown_table",
    "matched_settings",
    "method_kind",
    "norm_growth_table",
    "paper_norm_growth",
    "paper_toy3d",
    "toy3d_table",
    "toy_figures",
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
