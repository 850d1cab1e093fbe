"""Figures from a results folder: training curves, scale-invariance diagnostics, comparison figures.

Two layers, kept apart so that the data behind every figure can be tested and reused:

* data functions (``training_curves``, ``diagnostic_curves``, ``profile_figure``, ``difference_figure``)
  take frames from ``benchmarks.store`` (``load_results``: one row per run; ``load_history``: long form
  ``run_id, step, epoch, split, metric, value``) and return :class:`FigureSpec` objects: panels of series
  with x, y and an optional band, nothing drawn yet;
* a thin drawing layer (:func:`draw`, :func:`save`) turns a spec into a matplotlib figure with one style
  (:data:`STYLE`) and one colour per optimizer across all figures, and writes PNG and PDF atomically.

matplotlib is used through ``matplotlib.figure.Figure`` only (no pyplot), so nothing here touches a global
backend or leaks figures; a notebook displays the returned figure as usual.

Curves: for each task group and method (see ``benchmarks.analysis.compare``), the mean over seeds at each x
and a band of ± one sample standard deviation where at least two seeds have a value; non-finite values
(diverged runs) are left out. Training loss is plotted against the optimizer step, validation metrics and
diagnostics against the epoch (the step when epochs are not logged).

Diagnostics are the history rows with split "diag" written by ``benchmarks.training.diagnostics.collect``;
the known ones (:data:`DIAGNOSTIC_METRICS`) come first with readable labels, any other diag metric follows.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .labels import canonical_optimizer, group_labels, method_labels
from .metric_choice import primary_metric

#: one look for every figure of the suite
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,  # embed TrueType so that PDF text stays editable and searchable
}

#: fixed colours of the registry optimizers; other names get a stable colour from :data:`_PALETTE`
OPTIMIZER_COLORS: dict[str, str] = {
    "sgd": "#1f77b4",
    "sgdp": "#d62728",
    "adam": "#2ca02c",
    "adamw": "#9467bd",
    "adamp": "#ff7f0e",
}
_PALETTE = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39", "#7b4173")
_LINESTYLES = ("-", "--", ":", "-.")
#: panels with more series than this share one figure legend outside the axes
MAX_LEGEND_ENTRIES = 6

#: diag metric -> axis label, in the order the panels are drawn
DIAGNOSTIC_METRICS: dict[str, str] = {
    "si_weight_norm": "mean norm ||w|| of the scale-invariant weights",
    "effective_step_size": "effective step size lr / ||w||² (scale-invariant weights)",
    "projected_fraction": "fraction of ≥2-D tensors the optimizer projects",
    "si_fraction": "fraction of ≥2-D tensors that pass AdamP's scale-invariance test",
}


# --------------------------------------------------------------------------------------------------------
# figure specs
# --------------------------------------------------------------------------------------------------------
@dataclass
class Series:
    """One line (or set of intervals) in a panel."""

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    kind: str = "line"  # line | step | interval
    color: str | None = None
    linestyle: str = "-"


@dataclass
class Panel:
    """One axes: title, labels, scales and its series."""

    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xscale: str = "linear"
    yscale: str = "linear"
    vline: float | None = None
    yticklabels: list[str] | None = None


@dataclass
class FigureSpec:
    """What a figure shows; ``name`` is the file stem (``<name>.png`` / ``<name>.pdf``)."""

    name: str
    title: str
    panels: list[Panel]
    ncols: int = 3


def optimizer_color(method: str) -> str:
    """Stable colour of a method label: by optimizer name (the part before ``[``)."""
    name = canonical_optimizer(str(method).split("[", 1)[0])
    short = name.rsplit(".", 1)[-1].lower()
    if short in OPTIMIZER_COLORS and ("." not in name or name.startswith("torch.optim.")):
        return OPTIMIZER_COLORS[short]
    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def _linestyles(methods: Sequence[str]) -> dict[str, str]:
    """A line style per method, cycling in order, so that curves that lie on top of each other (identical
    runs, or two optimizers that behave alike) stay distinguishable; variants of one optimizer
    (``adamp[lr=0.1]``, ``adamp[lr=0.01]``) share its colour and differ in style."""
    return {m: _LINESTYLES[i % len(_LINESTYLES)] for i, m in enumerate(methods)}


def safe_name(text: str) -> str:
    """A file-name-safe stem: letters, digits, ``-``, ``_``, ``.``; anything else becomes ``_``."""
    out = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_.") or "figure"


# --------------------------------------------------------------------------------------------------------
# data functions
# --------------------------------------------------------------------------------------------------------
def curve_stats(
    history: pd.DataFrame, run_ids: Iterable[str], split: str, metric: str, x: str = "auto"
) -> pd.DataFrame:
    """Mean, sample std and count over runs of one history metric at each x.

    ``x``: "step", "epoch" or "auto" (epoch when every selected row has one, else step). Returns columns
    ``x``, ``mean``, ``std`` (NaN where fewer than 2 runs), ``n``, and the attribute ``attrs["x"]``.
    """
    rows = history[
        history["run_id"].isin(set(run_ids)) & (history["split"] == split) & (history["metric"] == metric)
    ].copy()
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=float))]
    if x == "auto":
        x = "epoch" if len(rows) and "epoch" in rows.columns and rows["epoch"].notna().all() else "step"
    out = pd.DataFrame(columns=["x", "mean", "std", "n"])
    if not rows.empty:
        # a run logs a point once; if a resumed run logged it twice, the last value counts
        rows = rows.drop_duplicates(subset=["run_id", x], keep="last")
        grouped = rows.groupby(x)["value"]
        out = pd.DataFrame(
            {
                "x": grouped.mean().index.to_numpy(dtype=float),
                "mean": grouped.mean().to_numpy(),
                "std": grouped.std(ddof=1).to_numpy(),
                "n": grouped.count().to_numpy(),
            }
        )
        out.loc[out["n"] < 2, "std"] = np.nan
    out.attrs["x"] = x
    return out


def _groups(results: pd.DataFrame) -> pd.DataFrame:
    frame = results.copy()
    frame["_group"] = group_labels(frame)
    frame["_method"] = method_labels(frame, frame["_group"])
    return frame


def _series_for(
    history: pd.DataFrame, runs: pd.DataFrame, split: str, metric: str, x: str = "auto"
) -> tuple[list[Series], str]:
    methods = sorted(set(runs["_method"]))
    styles = _linestyles(methods)
    series, xname = [], "step"
    for method in methods:
        ids = runs.loc[runs["_method"] == method, "run_id"]
        st = curve_stats(history, ids, split, metric, x)
        if st.empty:
            continue
        xname = st.attrs["x"]
        band = st["std"].notna().any()
        series.append(
            Series(
                label=f"{method} (n={int(st['n'].max())})",
                x=st["x"].to_numpy(dtype=float),
                y=st["mean"].to_numpy(dtype=float),
                lo=(st["mean"] - st["std"]).to_numpy(dtype=float) if band else None,
                hi=(st["mean"] + st["std"]).to_numpy(dtype=float) if band else None,
                color=optimizer_color(method),
                linestyle=styles[method],
            )
        )
    return series, xname


def training_curves(results: pd.DataFrame, history: pd.DataFrame) -> list[FigureSpec]:
    """One figure per task group: training loss vs step, and each validation metric vs epoch."""
    if results.empty or history.empty:
        return []
    frame = _groups(results)
    specs = []
    for group, runs in frame.groupby("_group", sort=True):
        hist = history[history["run_id"].isin(set(runs["run_id"]))]
        panels = []
        train_series, xname = _series_for(hist, runs, "train", "loss", "step")
        if train_series:
            panels.append(Panel("training loss", xname, "loss", train_series))
        task = str(runs["task"].iloc[0]) if "task" in runs.columns else None
        try:
            primary, mode = primary_metric(runs, task)
        except KeyError:
            primary, mode = None, None
        val_metrics = sorted(set(hist.loc[hist["split"] == "val", "metric"]))
        # the primary metric first, then the loss, then the rest: the panels a reader needs first
        order = [m for m in (primary, "val_loss", "loss") if m in val_metrics]
        order += [m for m in val_metrics if m not in order]
        for metric in order[:5]:
            series, xname = _series_for(hist, runs, "val", metric)
            if series:
                suffix = f" ({'higher' if mode == 'max' else 'lower'} is better)" if metric == primary and mode else ""
                panels.append(Panel(f"validation {metric}{suffix}", xname, metric, series))
        if panels:
            specs.append(
                FigureSpec(name=f"curves_{safe_name(group)}", title=f"Training curves: {group}", panels=panels)
            )
    return specs


def diagnostic_curves(results: pd.DataFrame, history: pd.DataFrame) -> list[FigureSpec]:
    """One figure per task group with "diag" history: scale-invariant weight norm, effective step size,
    fraction of projected tensors (and any other diag metric), mean ± std over seeds per method."""
    if results.empty or history.empty:
        return []
    diag = history[history["split"] == "diag"]
    if diag.empty:
        return []
    frame = _groups(results)
    specs = []
    for group, runs in frame.groupby("_group", sort=True):
        hist = diag[diag["run_id"].isin(set(runs["run_id"]))]
        if hist.empty:
            continue
        present = set(hist["metric"])
        order = [m for m in DIAGNOSTIC_METRICS if m in present] + sorted(present - set(DIAGNOSTIC_METRICS))
        panels = []
        for metric in order:
            series, xname = _series_for(hist, runs, "diag", metric)
            if series:
                panels.append(
                    Panel(
                        DIAGNOSTIC_METRICS.get(metric, metric),
                        xname,
                        metric,
                        series,
                        yscale="log" if metric == "effective_step_size" and _positive(series) else "linear",
                    )
                )
        if panels:
            specs.append(
                FigureSpec(
                    name=f"diagnostics_{safe_name(group)}",
                    title=f"Scale-invariance diagnostics: {group}",
                    panels=panels,
                )
            )
    return specs


def _positive(series: Sequence[Series]) -> bool:
    return all(np.all(s.y > 0) for s in series if len(s.y))


def profile_figure(
    profile: pd.DataFrame, title: str = "Performance profile", name: str = "performance_profile"
) -> FigureSpec:
    """Figure of a Dolan-More profile (``compare.performance_profile``: index tau, one column per method)."""
    methods = list(profile.columns)
    styles = _linestyles(methods)
    ran = profile.attrs.get("problems", {})
    total = profile.attrs.get("total")

    def label(m: Any) -> str:
        # a method that did not run every task is plotted over the tasks it ran, and says so
        k = ran.get(m)
        return f"{m} (ran {k} of {total} tasks)" if k is not None and total is not None and k < total else str(m)

    series = [
        Series(
            label=label(m),
            x=profile.index.to_numpy(dtype=float),
            y=profile[m].to_numpy(dtype=float),
            kind="step",
            color=optimizer_color(m),
            linestyle=styles[m],
        )
        for m in methods
    ]
    panel = Panel(title, "tau (ratio to the best method on a task)", "fraction of its tasks within tau", series)
    return FigureSpec(name=name, title="", panels=[panel], ncols=1)


def difference_figure(comparison: pd.DataFrame, name: str = "paired_differences") -> FigureSpec:
    """Forest plot of ``compare.paired_comparison``: one panel per task group (each has its own metric), one
    row per method with the mean paired difference and its t interval; the vertical line marks 0."""
    panels = []
    base = str(comparison["baseline"].iloc[0]) if len(comparison) else "baseline"
    for group, sub in comparison.groupby("group", sort=True):
        sub = sub.reset_index(drop=True)
        series = [
            Series(
                label=str(r["method"]),
                x=np.array([r["delta"]], dtype=float),
                y=np.array([float(i)]),
                lo=np.array([r["ci_lo"]], dtype=float),
                hi=np.array([r["ci_hi"]], dtype=float),
                kind="interval",
                color=optimizer_color(r["method"]),
            )
            for i, r in sub.iterrows()
        ]
        metric, mode = sub["metric"].iloc[0], sub["mode"].iloc[0]
        better = "higher" if mode == "max" else "lower"
        panels.append(
            Panel(
                str(group),
                f"{metric}: method - {base} ({better} is better)",
                "",
                series,
                vline=0.0,
                yticklabels=[f"{r['method']} (n={r['n_pairs']}, {r['outcome']})" for _, r in sub.iterrows()],
            )
        )
    return FigureSpec(name=name, title=f"Paired differences to {base} (95% t interval)", panels=panels, ncols=1)


# --------------------------------------------------------------------------------------------------------
# drawing layer
# --------------------------------------------------------------------------------------------------------
def draw(spec: FigureSpec):
    """Draw a :class:`FigureSpec` into a new ``matplotlib.figure.Figure`` (returned, not shown)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        n = max(1, len(spec.panels))
        ncols = min(spec.ncols, n)
        nrows = int(np.ceil(n / ncols))
        tall = any(p.yticklabels for p in spec.panels)
        height = max(1.6, 0.35 * max((len(p.yticklabels or []) for p in spec.panels), default=0) + 1.0) if tall else 2.8
        width = 6.0 if tall else 3.6
        # many series: one legend for the figure, outside the axes, instead of one per panel covering the data
        shared = not tall and max((len(p.series) for p in spec.panels), default=0) > MAX_LEGEND_ENTRIES
        extra = 2.2 * (1 + max((len(p.series) for p in spec.panels), default=0) // 16) if shared else 0.0
        fig = Figure(figsize=(width * ncols + extra, height * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, spec.panels, strict=False):  # the grid may have spare axes
            _draw_panel(ax, panel, legend=not shared)
        for ax in axes[len(spec.panels) :]:
            ax.set_visible(False)
        if shared:
            handles: dict[str, Any] = {}
            for ax in axes[: len(spec.panels)]:
                for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                    handles.setdefault(label, handle)
            fig.legend(
                list(handles.values()),
                list(handles.keys()),
                loc="outside right upper",
                frameon=False,
                ncols=1 + len(handles) // 16,
            )
        if spec.title:
            fig.suptitle(spec.title)
    return fig


def _draw_panel(ax, panel: Panel, legend: bool = True) -> None:
    for s in panel.series:
        if s.kind == "interval":
            err = None
            if s.lo is not None and s.hi is not None:
                lo = np.where(np.isfinite(s.lo), s.x - s.lo, 0.0)
                hi = np.where(np.isfinite(s.hi), s.hi - s.x, 0.0)
                err = np.vstack([lo, hi])
            ax.errorbar(s.x, s.y, xerr=err, fmt="o", color=s.color, label=s.label, capsize=3, markersize=4)
        elif s.kind == "step":
            ax.step(s.x, s.y, where="post", color=s.color, linestyle=s.linestyle, label=s.label)
        else:
            ax.plot(
                s.x,
                s.y,
                color=s.color,
                linestyle=s.linestyle,
                label=s.label,
                marker="o" if len(s.x) == 1 else None,
                markersize=3,
            )
            if s.lo is not None and s.hi is not None:
                ax.fill_between(s.x, s.lo, s.hi, color=s.color, alpha=0.2, linewidth=0)
    ax.set_xscale(panel.xscale)
    ax.set_yscale(panel.yscale)  # before the tick labels: setting a scale resets the tick formatter
    if panel.vline is not None:
        ax.axvline(panel.vline, color="black", linewidth=0.8)
    if panel.yticklabels is not None:
        ax.set_yticks(range(len(panel.yticklabels)))
        ax.set_yticklabels(panel.yticklabels)
        ax.set_ylim(len(panel.yticklabels) - 0.5, -0.5)
    ax.set_title(panel.title)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if legend and panel.series and panel.yticklabels is None:  # tick labels already name each interval
        ax.legend(frameon=False)


def save(
    fig_or_spec: Any, out_dir: Path, name: str | None = None, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Write a figure (or a spec, drawn first) as ``out_dir/<name>.<fmt>`` for each format, atomically."""
    import matplotlib

    if isinstance(fig_or_spec, FigureSpec):
        name = name or fig_or_spec.name
        fig = draw(fig_or_spec)
    else:
        fig = fig_or_spec
    if not name:
        raise ValueError("save() needs a name for a matplotlib figure")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(STYLE):
        for fmt in formats:
            path = out_dir / f"{safe_name(name)}.{fmt}"
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{fmt}", dir=out_dir)
            os.close(fd)
            try:
                fig.savefig(tmp, format=fmt)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            paths.append(path)
    return paths


__all__ = [
    "DIAGNOSTIC_METRICS",
    "FigureSpec",
    "OPTIMIZER_COLORS",
    "Panel",
    "STYLE",
    "Series",
    "curve_stats",
    "diagnostic_curves",
    "difference_figure",
    "draw",
    "optimizer_color",
    "profile_figure",
    "save",
    "training_curves",
]
