"""The paper's numbers (``results/paper/*.csv``), loaded as pandas frames.

The CSV files are facts copied from the authors' project page; see ``results/paper/README.md``. Every output
that shows them labels them :data:`PAPER_LABEL`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

#: label used wherever a paper number is shown
PAPER_LABEL = "paper (project page)"

#: ``results/paper`` of this checkout (the package lives in ``<repo>/benchmarks/analysis``)
PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def paper_tables(paper_dir: Path | None = None) -> dict[str, Path]:
    """Return ``{table id: csv path}`` for every paper table file, e.g. ``{"t01": .../t01_imagenet....csv}``.

    The table id is the file name up to its first underscore; files that do not start with ``t<digits>``
    (such as ``aux_not_in_paper_*``, which are not paper numbers) are left out.
    """
    paper_dir = Path(paper_dir) if paper_dir is not None else PAPER_DIR
    if not paper_dir.is_dir():
        raise FileNotFoundError(
            f"paper tables folder {paper_dir} does not exist; it should hold the CSV files copied from "
            "shared/paper/tables (see results/paper/README.md)"
        )
    out: dict[str, Path] = {}
    for path in sorted(paper_dir.glob("t*.csv")):
        table_id = path.stem.split("_", 1)[0]
        if re.fullmatch(r"t\d+[a-z]?", table_id):
            out[table_id] = path
    return out


def load_paper_table(table_id: str, paper_dir: Path | None = None) -> pd.DataFrame:
    """Load one paper table (``"t01"``, ``"t05"``, ...) as a frame with its original columns.

    Adds ``value_num`` (the number as a float; NaN when the cell is text such as a qualitative ranking) and
    ``label`` (always :data:`PAPER_LABEL`). The ``source`` column is kept as it is.
    """
    tables = paper_tables(paper_dir)
    if table_id not in tables:
        raise KeyError(f"no paper table {table_id!r}; known tables: {', '.join(sorted(tables))}")
    frame = pd.read_csv(tables[table_id], dtype=str, keep_default_na=False)
    frame["value_num"] = frame["value"].map(parse_number)
    frame["label"] = PAPER_LABEL
    return frame


def parse_number(text: object) -> float:
    """Parse a paper cell into a float.

    Plain numbers ("70.28") parse as such; approximate values ("~62", "~3.2 (from 1)") give their first
    number; ranges written "start -> end" ("1 -> 2.93") give the end value; anything else gives NaN.
    """
    if text is None:
        return float("nan")
    if isinstance(text, (int, float, np.floating, np.integer)):
        return float(text)
    s = str(text).strip()
    if not s:
        return float("nan")
    if "->" in s:
        s = s.split("->", 1)[1]
    if "/" in s:  # "~3.9 / ~1.9 / ~1.7": several optimizers in one cell, not one number
        return float("nan")
    match = _NUMBER.search(s)
    return float(match.group(0)) if match else float("nan")


def is_exact(text: object) -> bool:
    """True when a paper cell is an exact printed number (not read off a plot, not approximate)."""
    s = str(text).strip()
    return bool(s) and "~" not in s and "/" not in s and _NUMBER.fullmatch(s.lstrip("+")) is not None
