"""Figures of the toy problems, drawn from the frames of :mod:`benchmarks.analysis.toy` with the suite's
style (:mod:`benchmarks.analysis.plots`); ``matplotlib.figure.Figure`` only, no pyplot.
:func:`toy_figures` writes every toy figure of a results folder (and an animated GIF of the 2-D paths)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import paper
from .plots import STYLE, optimizer_color, safe_name, save
from .toy import row_value, norm_growth_table, paper_norm_growth, toy_runs, trajectories

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



def _kind_color(kind: str) -> str:
    if kind in _KIND_COLORS:
        return _KIND_COLORS[kind]
    return optimizer_color(kind)


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _lr_text(lr: float) -> str:
    return f"lr {lr:g}"


def draw_toy2d_curves(traj: pd.DataFrame, lr: float, paper_values: Mapping[float, float] | None = None):
    """Weight norm, angle to w* and effective step size lr/||w||^2 against the iteration, one column per
    momentum; vanilla SGD (momentum 0) is drawn in every column as the reference."""
    import matplotlib


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
        "a": float(row_value(first, "data.rosenbrock_a", 1.0)),
        "b": float(row_value(first, "data.rosenbrock_b", 1.0)),
        "start": (float(row_value(first, "data.start_psi", -2.0)), float(row_value(first, "data.start_phi", 2.0))),
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
    "animate_toy2d",
    "draw_lr_dependence",
    "draw_toy2d_curves",
    "draw_toy2d_plane",
    "draw_toy3d",
    "draw_toy3d_space",
    "toy_figures",
]
