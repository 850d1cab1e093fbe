"""Every figure of a results folder: the training curves and diagnostics of :mod:`benchmarks.analysis.plots`
and, when toy runs are present, the toy problems' figures of :mod:`benchmarks.analysis.toy_plots`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from . import toy_plots
from .plots import diagnostic_curves, save, training_curves


def toy_figures(
    results: pd.DataFrame,
    history: pd.DataFrame,
    out_dir: Path,
    formats: Sequence[str] = ("png", "pdf"),
    animation: bool = False,
) -> tuple[list[Path], str | None]:
    """The toy problems' figures (:func:`benchmarks.analysis.toy_plots.toy_figures`), if toy runs are present.
    ``animation``: also the animated GIF of the 2-D paths (slow: about a minute). Returns (paths, message);
    the message says why nothing was drawn, if so."""
    if "task" not in results.columns or not results["task"].astype(str).str.startswith("toy").any():
        return [], None
    try:
        paths = toy_plots.toy_figures(results, history, Path(out_dir), formats=tuple(formats), animation=animation)
        return [Path(p) for p in paths], None
    except Exception as exc:  # noqa: BLE001 - a bug in the toy figures must not take the other figures down
        return [], f"benchmarks.analysis.toy_plots.toy_figures failed ({type(exc).__name__}: {exc})"


def make_figures(
    results: pd.DataFrame,
    history: pd.DataFrame,
    out_dir: Path,
    formats: Sequence[str] = ("png", "pdf"),
    animation: bool = False,
) -> tuple[list[Path], list[str]]:
    """Draw every standard figure of a results folder into ``out_dir``; returns (paths, messages)."""
    paths: list[Path] = []
    messages: list[str] = []
    for spec in training_curves(results, history) + diagnostic_curves(results, history):
        paths += save(spec, out_dir, formats=formats)
    toy_paths, msg = toy_figures(results, history, out_dir, formats, animation)
    paths += toy_paths
    if msg:
        messages.append(msg)
    return paths, messages


__all__ = ["make_figures", "toy_figures"]
