"""One Markdown report per results folder: what ran, the tables, the comparison, the figures, the cost.

``build_report(DIR)`` writes ``DIR/tables/*``, ``DIR/figures/*``, ``DIR/compare/vs-<baseline>/*`` and
``DIR/report.md`` (links are relative, so the folder can be moved or published as it is). Every file is
written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from . import figures, plots, tables
from .costs import cost_left_out, cost_summary, run_costs
from .labels import canonical_optimizer, filter_where
from .metric_choice import FAILED_STATUSES, split_unanalysable
from .paired import CompareSettings, paired_comparison, win_tie_loss
from .profiles import performance_profile, performance_ratios, score_matrix
from .paper import PAPER_LABEL, paper_tables
from .render import _fmt, atomic_write_text, markdown_grid, to_markdown, write_tables


def load(results_dir: Path | Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(load_results(DIR), load_history(DIR))`` from ``benchmarks.store``, for one folder or several.

    Raises ``FileNotFoundError`` when a folder does not exist and ``ValueError`` when one run id is in two of
    several folders (the same run twice would count its seed twice; which copy to use is the user's call).
    """
    dirs = [Path(results_dir)] if isinstance(results_dir, (str, Path)) else [Path(d) for d in results_dir]
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"results folder {d} does not exist (expected OUT/ with runs/<run_id>/record.json)")
    from benchmarks.store import list_run_ids, load_history, load_results  # the only way analysis reads runs

    if len(dirs) > 1:
        seen: dict[str, Path] = {}
        for d in dirs:
            for run_id in list_run_ids(d):
                if run_id in seen:
                    raise ValueError(f"run {run_id} is in both {seen[run_id]} and {d}: the same run would count "
                                     "twice; pass only one of the folders that hold it (or --where to split them)")
                seen[run_id] = d
    target = dirs[0] if len(dirs) == 1 else dirs
    return load_results(target), load_history(target)


# --------------------------------------------------------------------------------------------------------
# comparison outputs
# --------------------------------------------------------------------------------------------------------
@dataclass
class ComparisonOutput:
    """Frames and files of one comparison against a baseline."""

    settings: CompareSettings
    comparison: pd.DataFrame
    wins: pd.DataFrame
    ratios: pd.DataFrame
    profile: pd.DataFrame
    costs: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    markdown: str = ""
    #: ``(run id, reason)`` of every run the comparison leaves out (besides diverged/failed ones)
    left_out: list[tuple[str, str]] = field(default_factory=list)
    #: ``(run id, reason)`` of the finished runs whose wall time is not in the cost totals
    cost_left_out: list[tuple[str, str]] = field(default_factory=list)


def _f(x: Any, digits: int = 3, signed: bool = False) -> str:
    return _fmt(x, digits, signed, large_as_g=True)


def comparison_markdown(out: ComparisonOutput, figure_prefix: str = "") -> str:
    """Markdown of a comparison: the rule, the paired differences, wins/ties/losses, profile, cost."""
    s = out.settings
    base = s.baseline
    lines = [
        f"### Comparison with `{base}`",
        "",
        s.describe() + " failed = diverged or failed runs (method / baseline), not in the pairs; left out = done "
        "runs whose metric is missing, not a number or not finite (named below the table).",
        "",
    ]
    if out.comparison.empty:
        lines.append(f"_No task group has runs of both `{base}` and another optimizer._")
    else:
        view = pd.DataFrame(
            {
                "task group": out.comparison["group"],
                "method": out.comparison["method"],
                "metric": [
                    f"{m} ({md})" for m, md in zip(out.comparison["metric"], out.comparison["mode"], strict=True)
                ],
                "pairs": out.comparison["n_pairs"],
                "method mean": out.comparison["mean_method"].map(_f),
                f"{base} mean": out.comparison["mean_baseline"].map(_f),
                "Δ": out.comparison["delta"].map(lambda v: _f(v, 3, True)),
                f"{int(s.confidence * 100)}% CI": [
                    f"[{_f(lo, 3, True)}, {_f(hi, 3, True)}]"
                    for lo, hi in zip(out.comparison["ci_lo"], out.comparison["ci_hi"], strict=True)
                ],
                "p (Holm)": out.comparison["p_adj"].map(lambda v: _f(v, 2)),
                "outcome": out.comparison["outcome"],
                "why": out.comparison["reason"],
                "failed": [
                    f"{a} / {b}"
                    for a, b in zip(out.comparison["failed_method"], out.comparison["failed_baseline"], strict=True)
                ],
                "left out": [
                    f"{a} / {b}"
                    for a, b in zip(out.comparison["left_out_method"], out.comparison["left_out_baseline"], strict=True)
                ],
            }
        )
        lines += [markdown_grid(view), "", "Wins / ties / losses across task groups:", "", markdown_grid(out.wins), ""]
    lines += left_out_lines(out.left_out, "the comparison")
    for f in out.files:
        if f.suffix == ".png":
            lines.append(f"![{f.stem}]({figure_prefix}{f.name})")
    if not out.ratios.empty or out.ratios.attrs.get("dropped"):
        lines += [
            "",
            "Performance profile (Dolan & Moré): ratio r = best / own for max metrics, own / best for min metrics, "
            "per task group (inf: the method ran but finished no run); the curve is the fraction of the task "
            "groups a method ran with r ≤ tau (a task group it did not run is missing, not a failure).",
        ]
        missing = {m: k for m, k in out.profile.attrs.get("problems", {}).items()
                   if k < out.profile.attrs.get("total", k)}
        if missing:
            lines.append("Ran only part of the task groups: " + ", ".join(
                f"`{m}` ({k} of {out.profile.attrs['total']})" for m, k in sorted(missing.items())) + ".")
        if out.ratios.attrs.get("dropped"):
            lines.append(
                "Left out of the profile (a score ≤ 0 has no ratio): "
                + ", ".join(f"`{d}`" for d in out.ratios.attrs["dropped"])
                + "."
            )
    if not out.costs.empty:
        cost_view = out.costs.copy()
        lines += ["", *left_out_lines(out.cost_left_out, "the cost totals")]
        for c in ("median_step_time_s", "mean_wall_s", "total_wall_h", "gpu_hours"):
            cost_view[c] = cost_view[c].map(lambda v: _f(v, 4))
        lines += [
            "",
            "Cost per task group and method (wall time from timing.wall_s; GPU-hours = wall time x GPUs "
            "for runs on a GPU):",
            "",
            markdown_grid(cost_view),
        ]
    return "\n".join(lines) + "\n"


def left_out_lines(left_out: Sequence[tuple[str, str]], what: str) -> list[str]:
    """Markdown naming every run left out of ``what`` with its reason (nothing when none is)."""
    if not left_out:
        return []
    return [f"{len(left_out)} run(s) left out of {what}:", "",
            *(f"- `{run_id}`: {reason}" for run_id, reason in left_out), ""]


def write_comparison(
    results: pd.DataFrame,
    out_dir: Path,
    settings: CompareSettings | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    left_out: Sequence[tuple[str, str]] = (),
) -> ComparisonOutput:
    """Compute and write a comparison: ``comparison.csv``, ``wins.csv``, ``costs.csv``,
    ``performance_ratios.csv``, ``comparison.md``, and the profile and difference figures (PNG + PDF).
    ``left_out``: runs already left out while loading (unreadable, unknown status), named in the Markdown.
    Raises ``KeyError`` when the baseline has no runs (the message lists the optimizers)."""
    out_dir = Path(out_dir)
    settings = settings or CompareSettings()
    results, unanalysable = split_unanalysable(results)
    comparison = paired_comparison(results, settings)
    wins = win_tie_loss(comparison)
    scores, modes = score_matrix(results, settings)
    ratios = performance_ratios(scores, modes) if not scores.empty else pd.DataFrame()
    profile = performance_profile(ratios) if not ratios.empty else pd.DataFrame()
    costs = cost_summary(results)
    out = ComparisonOutput(settings, comparison, wins, ratios, profile, costs, out_dir)
    out.left_out = sorted({*left_out, *unanalysable.itertuples(index=False, name=None),
                           *comparison.attrs.get("left_out", [])})
    out.cost_left_out = cost_left_out(results)
    files = [
        atomic_write_text(out_dir / "comparison.csv", comparison.to_csv(index=False)),
        atomic_write_text(out_dir / "wins.csv", wins.to_csv(index=False)),
        atomic_write_text(out_dir / "costs.csv", costs.to_csv(index=False)),
        atomic_write_text(out_dir / "run_costs.csv", run_costs(results).to_csv(index=False)),
    ]
    if not ratios.empty:
        files.append(atomic_write_text(out_dir / "performance_ratios.csv", ratios.to_csv()))
        files += plots.save(
            plots.profile_figure(profile, f"Performance profile ({len(ratios)} task groups)"), out_dir, formats=formats
        )
    if not comparison.empty:
        files += plots.save(plots.difference_figure(comparison), out_dir, formats=formats)
    out.files = files
    out.markdown = comparison_markdown(out)
    files.append(atomic_write_text(out_dir / "comparison.md", out.markdown))
    return out


def baseline_dir_name(baseline: str) -> str:
    """Folder name for a comparison against ``baseline`` (import paths made file-name safe)."""
    return "vs-" + plots.safe_name(canonical_optimizer(baseline))


# --------------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------------
def _overview(results: pd.DataFrame, results_dir: Path) -> list[str]:
    lines = [f"# Results report: `{results_dir.name}`", ""]
    n = len(results)
    status = results["status"].value_counts().to_dict() if "status" in results.columns else {}
    lines.append(f"{n} runs: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items())) + ".")
    for col, what in (
        ("task", "tasks"),
        ("optimizer.name", "optimizers"),
        ("env.device", "devices"),
        ("env.git_commit", "git commits"),
        ("env.torch", "torch versions"),
    ):
        if col in results.columns:
            values = sorted({str(v) for v in results[col].dropna()})
            if values:
                lines.append(
                    f"- {what}: {', '.join(f'`{v}`' for v in values[:12])}{' ...' if len(values) > 12 else ''}"
                )
    if "timing.wall_s" in results.columns:
        costs = run_costs(results)
        lines.append(
            f"- total wall time {_f(costs['wall_s'].sum() / 3600.0, 3)} h, "
            f"GPU-hours {_f(costs['gpu_hours'].sum(), 3)}"
        )
    return lines + [""]


def _failures(results: pd.DataFrame) -> list[str]:
    if "status" not in results.columns:
        return []
    bad = results[results["status"].isin(FAILED_STATUSES)]
    if bad.empty:
        return []
    view = pd.DataFrame(
        {
            "run": bad.get("run_id"),
            "status": bad["status"],
            "error": [
                str(e).strip().splitlines()[-1][:160] if isinstance(e, str) and e.strip() else ""
                for e in bad.get("error", [""] * len(bad))
            ],
        }
    )
    return [
        "## Diverged and failed runs",
        "",
        "They count as failures of their optimizer in the tables (`failed`) " "and are left out of means and pairs.",
        "",
        markdown_grid(view),
        "",
    ]


def build_report(
    results_dir: Path,
    settings: CompareSettings | None = None,
    where: Sequence[str] = (),
    results: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    animation: bool = False,
    left_out: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write the tables, figures and comparison of ``results_dir`` and ``results_dir/report.md``; return it.

    ``results``/``history`` may be passed in (e.g. already filtered); by default they are loaded from the
    store. The comparison is made against ``settings.baseline`` (AdamP by default) when it has runs.
    ``left_out``: runs already left out while loading (named in the report with their reasons).
    """
    results_dir = Path(results_dir)
    settings = settings or CompareSettings()
    if results is None or history is None:
        loaded_results, loaded_history = load(results_dir)
        results = loaded_results if results is None else results
        history = loaded_history if history is None else history
    results, unanalysable = split_unanalysable(results)
    left_out = sorted({*left_out, *unanalysable.itertuples(index=False, name=None)})
    results = filter_where(results, where)
    history = history[history["run_id"].isin(set(results["run_id"]))] if len(history) else history

    lines = _overview(results, results_dir)
    lines += left_out_lines(left_out, "this report (not in any table, comparison or figure)")
    if where:
        lines += [f"Filtered with: {', '.join(f'`{w}`' for w in where)}", ""]

    built = tables.build_tables(results, settings=settings)
    write_tables(built, results_dir / "tables")
    lines += [
        "## Tables",
        "",
        f'Paper numbers are labelled "{PAPER_LABEL}" (results/paper/README.md). '
        "Each table is also in `tables/` as .md, .tex and .csv.",
        "",
    ]
    for t in built:
        lines.append(to_markdown(t))
    shown = {t.name.split("_", 1)[0] for t in built}
    without = [p.stem for tid, p in paper_tables().items() if tid not in shown]
    if without:
        lines += ["Paper tables without runs in this folder: " + ", ".join(f"`{w}`" for w in without) + ".", ""]

    lines += ["## Comparison", ""]
    try:
        cmp_dir = results_dir / "compare" / baseline_dir_name(settings.baseline)
        out = write_comparison(results, cmp_dir, settings, formats, left_out=left_out)
        rel = cmp_dir.relative_to(results_dir).as_posix() + "/"
        lines.append(comparison_markdown(out, figure_prefix=rel))
    except (KeyError, ValueError) as exc:
        lines += [f"_No comparison with `{settings.baseline}`: {exc}_", ""]

    fig_paths, messages = figures.make_figures(results, history, results_dir / "figures", formats, animation)
    lines += ["## Figures", ""]
    if not fig_paths:
        lines.append("_No history to plot._")
    for p in fig_paths:
        if p.suffix == ".png":
            lines += [f"![{p.stem}](figures/{p.name})", ""]
    for m in messages:
        lines.append(f"_Note: {m}_")
    lines.append("")
    lines += _failures(results)
    path = atomic_write_text(results_dir / "report.md", "\n".join(lines).rstrip() + "\n")
    return path


__all__ = ["ComparisonOutput", "baseline_dir_name", "build_report", "comparison_markdown", "load", "write_comparison"]
