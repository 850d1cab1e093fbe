"""Analysis subcommands of ``python -m benchmarks``: ``tables``, ``plots``, ``compare``, ``report``.

``register(subparsers)`` adds them to the CLI's subparsers; each sets ``func`` to a function that takes the
parsed ``argparse.Namespace`` and returns the exit code: 0 done, 1 nothing to analyse (no runs), 2 a usage
error (missing folder, unknown column in ``--where``, unknown baseline or metric).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from . import figures, render, report, stats, tables
from .costs import estimate_cost
from .labels import filter_where
from .metric_choice import split_unanalysable
from .paired import CompareSettings

_EPILOG_WHERE = (
    "--where KEY=VALUE keeps the runs whose flattened column KEY equals VALUE (repeatable),\n"
    "e.g. --where task=classification --where optimizer.lr=0.001."
)


def _wrap(text: str) -> str:
    """Wrap a description (the formatter keeps text as it is, so that the epilog's examples stay on their lines)."""
    return textwrap.fill(text, width=100)


def _common(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument(
            "dirs", type=Path, nargs="+", metavar="DIR",
            help="results folders (OUTs of sweeps: DIR/runs/<run_id>/record.json), analysed together",
        )
    else:
        p.add_argument(
            "dir", type=Path, metavar="DIR", help="results folder (the OUT of a sweep: DIR/runs/<run_id>/record.json)"
        )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep only runs with column KEY equal to VALUE (repeatable)",
    )


def _figure_formats(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--figure-formats",
        default="png,pdf",
        metavar="FORMATS",
        help="comma-separated figure formats, any that matplotlib writes (default: %(default)s)",
    )


def _animation(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--animation",
        action="store_true",
        help="also the animated GIF of the 2-D toy paths (slow: about a minute per learning rate)",
    )


def _formats(args: argparse.Namespace) -> list[str]:
    """The figure formats, each checked against what matplotlib writes (before anything is written)."""
    formats = [f.strip().lower() for f in str(getattr(args, "figure_formats", "png,pdf")).split(",") if f.strip()]
    if not formats:
        raise ValueError("--figure-formats needs at least one format, e.g. png,pdf")
    from matplotlib.figure import Figure

    supported = sorted(Figure().canvas.get_supported_filetypes())
    bad = [f for f in formats if f not in supported]
    if bad:
        raise ValueError(f"--figure-formats: {', '.join(repr(b[:40]) for b in bad)} is not a format matplotlib "
                         f"writes; choose among {', '.join(supported)}")
    return formats


def _read_plan(path: Path) -> pd.DataFrame:
    """The ``--plan`` CSV: a regular UTF-8 text file of bounded size; every problem one ValueError line."""
    import io

    from benchmarks.safe_read import MAX_PLAN_BYTES, describe, read_regular, utf8_text

    try:
        raw = read_regular(path, MAX_PLAN_BYTES)
    except OSError as exc:
        raise ValueError(f"--plan {path}: {describe(exc)}; it must be a CSV file") from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise ValueError(f"--plan {path} is not a text file: NUL byte (0x00) at byte offset {nul} (line {line}); "
                         f"it must be a CSV file")
    text = utf8_text(raw, f"--plan {path}")
    try:
        return pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"--plan {path} is not a readable CSV: {str(exc).strip().splitlines()[0]}") from None


def _compare_options(p: argparse.ArgumentParser, default_baseline: str = "adamp") -> None:
    p.add_argument(
        "--baseline",
        default=default_baseline,
        help="optimizer to compare against: a registry name (adamp, sgd, ...), a torch class "
        "(NAdam, torch.optim.NAdam, torch.optim:NAdam) or pkg.module:Class (default: %(default)s)",
    )
    p.add_argument(
        "--metric",
        default=None,
        help="metric to compare (name of a metrics.<name> column); default: each task's primary metric",
    )
    p.add_argument(
        "--mode", choices=("max", "min"), default=None, help="direction of --metric (default: from the task)"
    )
    p.add_argument(
        "--confidence", type=float, default=0.95,
        help="confidence of the t intervals; the verdicts use alpha = 1 - confidence (default: %(default)s)",
    )
    p.add_argument(
        "--margin", action="append", default=[], metavar="[TASK=]VALUE",
        help="equivalence margin in metric units: a difference shown to lie inside +-VALUE is a tie; TASK=VALUE "
        "for one task (repeatable), VALUE alone for every task (default: none, so nothing is called a tie)",
    )
    p.add_argument(
        "--methods", default=None, metavar="NAME,NAME",
        help="compare only these optimizers with the baseline (the multiple-comparison family is then only "
        "their cells; default: every optimizer in the results)",
    )
    p.add_argument(
        "--min-seeds", type=int, default=stats.MIN_PAIRS,
        help="fewest matched seeds for a verdict (default: %(default)s)",
    )


def parse_margins(items: Sequence[str]) -> dict[str, float]:
    """``--margin [TASK=]VALUE`` items -> {task or "*": margin}; ValueError for a bad or repeated one."""
    out: dict[str, float] = {}
    for item in items:
        task, sep, value = str(item).rpartition("=")
        key = task.strip() if sep else "*"
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--margin expects VALUE or TASK=VALUE with a number, got {item!r}") from None
        if not number >= 0 or number == float("inf"):
            raise ValueError(f"--margin must be a finite number >= 0, got {item!r}")
        if key in out:
            raise ValueError(f"--margin for {'every task' if key == '*' else key!r} is given twice")
        out[key] = number
    return out


def register(subparsers: Any) -> None:
    """Add the ``tables``, ``plots``, ``compare`` and ``report`` subcommands to ``subparsers``."""
    fmt = argparse.RawDescriptionHelpFormatter

    p = subparsers.add_parser(
        "tables",
        help="paper tables (ours vs paper, with verdicts), digits demo and toy tables of a results folder",
        description=_wrap(
            "Rebuild the paper's tables from the runs in DIR: our mean ± std over seeds, the number of "
            'seeds, the paper\'s number ("paper (project page)"), Δ to the paper and to the baseline optimizer, and a '
            "verdict per cell (reproduced / not reproduced / not comparable / missing; the rule is in each caption). "
            "Runs are placed by their tags (tags.table, tags.model, tags.optimizer, ...) or by "
            "task/data/model/optimizer names: see benchmarks/analysis/fields.py and table_specs.py. "
            "Writes DIR/tables/<table>.{md,tex,csv}."
        ),
        epilog="example: python -m benchmarks tables out/digits\n" + _EPILOG_WHERE,
        formatter_class=fmt,
    )
    _common(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DIR/tables)")
    p.add_argument(
        "--format", default="md,tex,csv", help="comma-separated formats among md, tex, csv (default: %(default)s)"
    )
    p.add_argument(
        "--baseline", default="adamp", help="baseline of the digits demo's paired comparison (default: %(default)s)"
    )
    p.set_defaults(func=cmd_tables)

    p = subparsers.add_parser(
        "plots",
        help="training curves and scale-invariance diagnostics (PNG + PDF) of a results folder",
        description=_wrap(
            "Draw, per task group, the training loss and validation metrics (mean and ± std band over "
            "seeds, per optimizer) and, where runs logged diagnostics (train.diagnostics: epoch|step), the norm of "
            "scale-invariant weights, the effective step size and the fraction of projected tensors; toy problems via "
            "benchmarks.analysis.toy_plots. Writes DIR/figures/*.png and *.pdf."
        ),
        epilog="example: python -m benchmarks plots out/digits\n" + _EPILOG_WHERE,
        formatter_class=fmt,
    )
    _common(p)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DIR/figures)")
    _figure_formats(p)
    _animation(p)
    p.set_defaults(func=cmd_plots)

    p = subparsers.add_parser(
        "compare",
        help="paired comparison of every optimizer with a baseline: t-tests, wins/ties/losses, profile, cost",
        description=_wrap(
            "For each task group (task + data + model settings), pair runs of each optimizer with runs of "
            "the baseline by train.seed and report the mean difference of the primary metric with a t interval, "
            "win/tie/loss/inconclusive (paired t-test, Holm-corrected over all cells; tie only inside a --margin; "
            "see docs/statistics.md), a Dolan-Moré performance profile, and the cost "
            "per run (wall time, GPU-hours). With --plan, also estimate the cost of a planned grid from the step "
            "times measured in DIR. Writes DIR/compare/vs-<baseline>/ and prints the comparison as Markdown."
        ),
        epilog="examples:\n  python -m benchmarks compare out/digits --baseline adamp\n"
        "  python -m benchmarks compare out/mine out/suite --baseline adamp --out out/mine-vs-suite\n"
        "  python -m benchmarks compare out/digits --margin 0.5 --margin language_model=2\n"
        "  python -m benchmarks compare out/digits --baseline torch.optim:NAdam --metric val_loss\n"
        "  python -m benchmarks compare out/smoke --plan plan.csv   "
        "(CSV columns: task, model.name, optimizer.name, steps or train.epochs, [runs])\n" + _EPILOG_WHERE,
        formatter_class=fmt,
    )
    _common(p, several=True)
    _compare_options(p)
    p.add_argument(
        "--out", type=Path, default=None,
        help="output folder (default: DIR/compare/vs-<baseline>; required with several folders)",
    )
    p.add_argument(
        "--plan",
        type=Path,
        default=None,
        help="CSV of planned runs to estimate their cost from the step times measured in DIR",
    )
    _figure_formats(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser(
        "report",
        help="one Markdown report of a results folder: tables, comparison, figures, failures, cost",
        description=_wrap(
            "Write DIR/report.md with everything of `tables`, `plots` and `compare` (their files too), an "
            "overview of the runs (status, devices, git commits, time) and the list of diverged/failed runs."
        ),
        epilog="example: python -m benchmarks report out/digits --baseline adamp\n" + _EPILOG_WHERE,
        formatter_class=fmt,
    )
    _common(p)
    _compare_options(p)
    _figure_formats(p)
    _animation(p)
    p.set_defaults(func=cmd_report)


def _settings(args: argparse.Namespace) -> CompareSettings:
    confidence = float(getattr(args, "confidence", 0.95))
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"--confidence must be in [0.5, 1), got {confidence}")
    min_seeds = int(getattr(args, "min_seeds", stats.MIN_PAIRS))
    if min_seeds < 2:
        raise ValueError(f"--min-seeds must be >= 2 (a t interval needs two differences), got {min_seeds}")
    return CompareSettings(
        baseline=getattr(args, "baseline", "adamp"),
        metric=getattr(args, "metric", None),
        mode=getattr(args, "mode", None),
        confidence=confidence,
        margins=parse_margins(getattr(args, "margin", [])),
        min_pairs=min_seeds,
        methods=tuple(m.strip() for m in str(getattr(args, "methods", None) or "").split(",") if m.strip()),
    )


def _load(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame] | int:
    """Load and filter; an int is an exit code after printing why."""
    dirs = list(getattr(args, "dirs", None) or [args.dir])
    try:
        results, history = report.load(dirs[0] if len(dirs) == 1 else dirs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        results = filter_where(results, args.where)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    results, left_out = split_unanalysable(results)
    args.left_out = list(left_out.itertuples(index=False, name=None))
    for run_id, reason in args.left_out:
        if not reason.startswith("unreadable"):  # the store already warned about each unreadable one
            print(f"warning: run {run_id} left out of the analysis: {reason}", file=sys.stderr)
    if results.empty:
        where = " after --where" if args.where else ""
        named = f" ({len(args.left_out)} left out, named above)" if args.left_out else ""
        print(f"no runs in {', '.join(str(d) for d in dirs)}{where}{named}; nothing to do", file=sys.stderr)
        return 1
    if len(history):
        history = history[history["run_id"].isin(set(results["run_id"]))]
    return results, history


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the analysis' lookup errors (unknown optimizer, metric, column) into exit code 2 with a message."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (KeyError, ValueError) as exc:
            print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 2

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


@_guard
def cmd_tables(args: argparse.Namespace) -> int:
    """``tables DIR``: write DIR/tables/*.{md,tex,csv} and print where."""
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    results, _ = loaded
    formats = [f.strip() for f in str(args.format).split(",") if f.strip()]
    built = tables.build_tables(results, settings=_settings(args))
    paths = render.write_tables(built, args.out or Path(args.dir) / "tables", formats)
    for t in built:
        counts = t.cells["verdict"].value_counts().to_dict() if "verdict" in t.cells.columns else {}
        summary = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"{t.name}: {len(t.cells)} cells{' (' + summary + ')' if summary else ''}")
    print(f"wrote {len(paths)} files to {args.out or Path(args.dir) / 'tables'}")
    return 0


@_guard
def cmd_plots(args: argparse.Namespace) -> int:
    """``plots DIR``: write DIR/figures/*.{png,pdf}."""
    formats = _formats(args)  # checked before anything is written
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    results, history = loaded
    out = args.out or Path(args.dir) / "figures"
    paths, messages = figures.make_figures(results, history, out, formats, args.animation)
    for m in messages:
        print(f"note: {m}", file=sys.stderr)
    print(f"wrote {len(paths)} files to {out}")
    return 0


@_guard
def cmd_compare(args: argparse.Namespace) -> int:
    """``compare DIR --baseline NAME``: write DIR/compare/vs-<baseline>/ and print the comparison."""
    settings, formats = _settings(args), _formats(args)  # every option checked before anything is written
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    results, _ = loaded
    if args.plan is not None:
        plan = _read_plan(Path(args.plan))
        est = estimate_cost(plan, results)
        print(render.markdown_grid(est.fillna("n/a").astype(str)))
        print(
            f"\nestimated total: {est['est_hours'].sum(min_count=1):.3f} device-hours "
            f"({int(est['est_hours'].isna().sum())} plan rows without a measurement)"
        )
        return 0
    if len(args.dirs) > 1 and args.out is None:
        print("error: with several results folders, say where the comparison goes: --out FOLDER", file=sys.stderr)
        return 2
    out_dir = args.out or Path(args.dirs[0]) / "compare" / report.baseline_dir_name(settings.baseline)
    out = report.write_comparison(results, out_dir, settings, formats, left_out=args.left_out)
    print(out.markdown)
    print(f"wrote {len(out.files)} files to {out_dir}")
    return 0


@_guard
def cmd_report(args: argparse.Namespace) -> int:
    """``report DIR``: write DIR/report.md plus its tables, figures and comparison."""
    settings, formats = _settings(args), _formats(args)  # every option checked before anything is written
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    results, history = loaded
    path = report.build_report(
        args.dir, settings, results=results, history=history, formats=formats, animation=args.animation,
        left_out=args.left_out,
    )
    print(f"wrote {path}")
    return 0


#: subcommand name -> function, for a CLI that dispatches by name instead of ``args.func``
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "tables": cmd_tables,
    "plots": cmd_plots,
    "compare": cmd_compare,
    "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    """Run one analysis subcommand without the full CLI (``python -m benchmarks.analysis.commands ...``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.analysis.commands")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover - exercised through the CLI
    raise SystemExit(main())
