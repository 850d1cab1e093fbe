"""Performance profiles (Dolan and More, 2002) of the methods over the task groups (definition in
:mod:`benchmarks.analysis.compare`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .labels import group_labels, method_labels
from .metric_choice import done_runs, numbers, primary_metric
from .paired import CompareSettings


def score_matrix(results: pd.DataFrame, settings: CompareSettings | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Mean primary metric per (task group x method) over finished runs, and each group's direction.

    Returns ``(scores, modes)``: ``scores`` has task groups as index and methods as columns (NaN when a
    method has no finished run in a group); ``modes`` maps each group to "max" or "min".
    ``scores.attrs["ran"]`` is a boolean frame of the same shape: whether the method has any run in the
    group (a method that never ran a task is *missing* there, not failed).
    """
    settings = settings or CompareSettings()
    frame = results.copy()
    if frame.empty:
        return pd.DataFrame(), pd.Series(dtype=object)
    frame["_group"] = group_labels(frame)
    frame["_method"] = method_labels(frame, frame["_group"])
    scores: dict[tuple[str, str], float] = {}
    ran: dict[tuple[str, str], bool] = {}
    modes: dict[str, str] = {}
    for group, sub in frame.groupby("_group", sort=True):
        task = str(sub["task"].iloc[0]) if "task" in sub.columns else None
        metric, mode = primary_metric(frame, task, settings.metric, settings.mode)
        modes[group] = mode
        col = f"metrics.{metric}"
        for method in sorted(set(frame["_method"])):
            runs = sub[sub["_method"] == method]
            done = done_runs(runs, col)
            scores[(group, method)] = float(numbers(done[col]).mean()) if len(done) else float("nan")
            ran[(group, method)] = bool(len(runs))
    table = pd.Series(scores).unstack()
    table.attrs["ran"] = pd.Series(ran).unstack().reindex_like(table).astype(bool)
    return table, pd.Series(modes)


def performance_ratios(
    scores: pd.DataFrame, modes: Mapping[str, str] | pd.Series, on_nonpositive: str = "drop"
) -> pd.DataFrame:
    """Dolan-More performance ratios r_ps (>= 1, 1 = best; inf where a method ran but finished nothing).

    ``scores``: problems x methods. For "min" problems r = a / min(a); for "max" problems r = max(a) / a.
    A method that never ran a problem (``scores.attrs["ran"]`` false there) gets NaN: missing, not a failure.
    Ratios of non-positive scores are meaningless (a loss of 0, a negative cosine): such problems are left
    out (``on_nonpositive="drop"``, listed in ``ratios.attrs["dropped"]``) or raise ``ValueError``
    (``"raise"``).
    """
    if on_nonpositive not in ("drop", "raise"):
        raise ValueError(f"on_nonpositive must be 'drop' or 'raise', got {on_nonpositive!r}")
    ratios = pd.DataFrame(np.inf, index=scores.index, columns=scores.columns)
    ran = scores.attrs.get("ran")
    if isinstance(ran, pd.DataFrame):
        ratios = ratios.mask(~ran.reindex_like(ratios).fillna(False).astype(bool))
    dropped: list[str] = []
    for problem in scores.index:
        row = scores.loc[problem].astype(float)
        finite = row[np.isfinite(row)]
        if finite.empty:
            continue
        if (finite <= 0).any():
            if on_nonpositive == "raise":
                bad = finite[finite <= 0].to_dict()
                raise ValueError(f"performance profile needs positive scores; problem {problem!r} has {bad}")
            dropped.append(str(problem))
            continue
        mode = modes[problem]
        if mode == "min":
            r = finite / finite.min()
        elif mode == "max":
            r = finite.max() / finite
        else:
            raise ValueError(f"mode of problem {problem!r} must be 'max' or 'min', got {mode!r}")
        ratios.loc[problem, r.index] = r
    ratios = ratios.drop(index=dropped)
    ratios.attrs["dropped"] = dropped
    return ratios


def performance_profile(ratios: pd.DataFrame, taus: Sequence[float] | np.ndarray | None = None) -> pd.DataFrame:
    """rho_s(tau): fraction of the problems method s ran on which it is within a factor tau of the best.

    Returns a frame indexed by tau with one column per method. A problem a method never ran (NaN ratio) is
    not in its denominator; ``profile.attrs["problems"]`` maps each method to the number it ran and
    ``profile.attrs["total"]`` is the number of problems. Default taus: 200 points from 1 to 1.05 x the
    largest finite ratio (at least 1.01), plus every finite ratio so that the steps are exact.
    """
    if ratios.empty:
        return pd.DataFrame()
    values = ratios.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if taus is None:
        top = max(1.01, float(finite.max()) * 1.05) if finite.size else 1.01
        taus = np.unique(np.concatenate([np.linspace(1.0, top, 200), finite]))
    taus = np.asarray(taus, dtype=float)
    rho = {}
    counted = {}
    for m in ratios.columns:
        col = ratios[m].to_numpy(dtype=float)
        ran = col[~np.isnan(col)]
        counted[m] = int(ran.size)
        rho[m] = [(ran <= t).sum() / ran.size if ran.size else float("nan") for t in taus]
    profile = pd.DataFrame(rho, index=pd.Index(taus, name="tau"))
    profile.attrs["problems"] = counted
    profile.attrs["total"] = len(ratios.index)
    return profile
