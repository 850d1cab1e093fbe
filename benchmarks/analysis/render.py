"""The :class:`Table` every builder returns, the number formats of its cells, and its rendering: Markdown,
LaTeX (booktabs) and CSV, written atomically by :func:`write_tables`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from benchmarks.atomic import write_text_atomic

from .fields import _missing


@dataclass
class Table:
    """One output table: ``cells`` (long form, numbers), ``layout`` (rows x columns, each cell a list of text
    lines), ``caption`` (states the rules) and ``notes`` (unmatched runs, ...)."""

    name: str
    title: str
    caption: str
    cells: pd.DataFrame
    layout: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _fmt(x: Any, digits: int = 2, signed: bool = False, large_as_g: bool = False) -> str:
    """A number for a table cell ("n/a" when missing or not finite); ``large_as_g``: values of 1e4 or more
    unsigned in ``g`` notation (cost tables)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if not np.isfinite(v):
        return "n/a"
    if signed:
        return f"{v:+.{digits}f}"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))  # counts (steps, files, seeds) and exact scores print as integers
    return f"{v:.{digits}g}" if large_as_g and abs(v) >= 1e4 else f"{v:.{digits}f}"


def _mean_std(mean: Any, std: Any, n: Any, digits: int = 2) -> str:
    """``mean ± std`` over seeds; the mean alone with one seed (a std of one value does not exist)."""
    if not n or int(n) < 2 or not np.isfinite(float(std)):
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def _cell_text(value: Any, sep: str) -> str:
    if isinstance(value, list):
        return sep.join(str(v) for v in value)
    if _missing(value):
        return ""
    return str(value)


def markdown_grid(frame: pd.DataFrame, sep: str = "<br>") -> str:
    """A pipe table of ``frame`` (list cells joined with ``sep``; ``|`` escaped)."""
    if frame.empty:
        return "_(no rows)_"
    header = [str(c) for c in frame.columns]
    lines = [
        "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    for _, row in frame.iterrows():
        cells = [_cell_text(row[c], sep).replace("|", "\\|").replace("\n", " ") for c in frame.columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number_frame(cells: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    out = cells.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: _fmt(v, digits))
    return out


def to_markdown(table: Table) -> str:
    """Markdown: title, caption, the paper layout, notes, and the cell numbers in a collapsible block."""
    parts = [f"### {table.title}", "", table.caption, "", markdown_grid(table.layout)]
    if table.notes:
        parts += ["", "Notes:", *[f"- {n}" for n in table.notes]]
    parts += [
        "",
        "<details><summary>cell numbers</summary>",
        "",
        markdown_grid(_number_frame(table.cells), sep="; "),
        "",
        "</details>",
        "",
    ]
    return "\n".join(parts)


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; ±, Δ, −, ≤ and · become math symbols."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for src, dst in (
        ("±", r"$\pm$"),
        ("Δ", r"$\Delta$"),
        ("−", "$-$"),
        ("≤", r"$\le$"),
        ("·", r"$\cdot$"),
        ("—", "--"),
        ("|", r"$|$"),
        ("<", r"$<$"),
        (">", r"$>$"),
    ):
        out = out.replace(src, dst)
    return out


def to_latex(table: Table) -> str:
    """A ``table`` environment (booktabs) with the paper layout; multi-line cells as nested tabulars."""
    frame = table.layout
    cols = list(frame.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\scriptsize",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        # a label is a reference key, not text: escapes such as \_ break \ref ("Missing \endcsname")
        rf"\label{{tab:{re.sub(r'[^A-Za-z0-9_.:-]', '-', table.name)}}}",
        r"\begin{tabular}{" + "l" * len(cols) + "}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in cols) + r" \\",
        r"\midrule",
    ]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            value = row[c]
            if isinstance(value, list) and len(value) > 1:
                inner = r" \\ ".join(latex_escape(v) for v in value)
                cells.append(r"\begin{tabular}[t]{@{}l@{}}" + inner + r"\end{tabular}")
            else:
                cells.append(latex_escape(_cell_text(value, " ")))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_csv(table: Table) -> str:
    """CSV of the cell numbers (one row per cell, full precision)."""
    return table.cells.to_csv(index=False)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    return write_text_atomic(path, text)


RENDERERS: dict[str, Callable[[Table], str]] = {"md": to_markdown, "tex": to_latex, "csv": to_csv}


def write_tables(tables: Sequence[Table], out_dir: Path, formats: Sequence[str] = ("md", "tex", "csv")) -> list[Path]:
    """Write each table as ``out_dir/<name>.<fmt>`` (atomically); returns the paths written."""
    unknown = [f for f in formats if f not in RENDERERS]
    if unknown:
        raise ValueError(f"unknown table format(s) {unknown}; valid: {', '.join(RENDERERS)}")
    paths = []
    for table in tables:
        for fmt in formats:
            paths.append(atomic_write_text(Path(out_dir) / f"{table.name}.{fmt}", RENDERERS[fmt](table)))
    return paths
