"""Which runs belong together: task-group and method labels, optimizer spellings, ``--where`` filters.

The definitions (task group, method) are in :mod:`benchmarks.analysis.compare`; everything here is a plain
function on the frame of ``benchmarks.store.load_results``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

#: ``train.*`` keys that do not change what a run computes; ignored when grouping runs into tasks
NON_SEMANTIC_TRAIN_KEYS = frozenset(
    {
        "train.seed",
        "train.device",
        "train.num_workers",
        "train.num_threads",
        "train.log_every",
        "train.eval_every",
        "train.checkpoint_every_steps",
        "train.checkpoint_every_minutes",
        "train.diagnostics",
        "train.deterministic",
    }
)


_DISPLAY_NAMES = {"sgd": "SGD", "sgdp": "SGDP", "adam": "Adam", "adamw": "AdamW", "adamp": "AdamP"}


def hashable(value: Any) -> Any:
    """Make a cell usable as a group key: lists/dicts become canonical JSON, NaN/None become None."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def filter_where(results: pd.DataFrame, where: Iterable[str] = ()) -> pd.DataFrame:
    """Keep the runs whose columns equal the given ``KEY=VALUE`` strings (values compared as text).

    ``optimizer.lr=0.001`` matches a float 0.001; ``task=toy2d`` matches the string. Unknown keys raise a
    ``KeyError`` that lists the columns.
    """
    out = results
    for item in where:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ValueError(f"--where expects KEY=VALUE (e.g. optimizer.name=adamp), got {item!r}")
        key = key.strip()
        if key not in out.columns:
            raise KeyError(f"--where: no column {key!r} in the results; columns: {', '.join(sorted(out.columns))}")
        wanted = value.strip()
        out = out[out[key].map(lambda v, wanted=wanted: _text_equal(v, wanted))]
    return out


def _text_equal(cell: Any, text: str) -> bool:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return text.lower() in {"none", "null", "nan", ""}
    if isinstance(cell, bool):
        return str(cell).lower() == text.lower()
    if isinstance(cell, (int, float, np.integer, np.floating)):
        try:
            return float(cell) == float(text)
        except ValueError:
            return False
    return str(cell) == text


def canonical_optimizer(name: str) -> str:
    """Canonical spelling of an optimizer name: ``torch.optim.NAdam`` and ``torch.optim:NAdam`` are the same.

    Registry names are case-insensitive; the last component of an import path keeps its case.
    """
    name = str(name).strip()
    if ":" in name:
        module, _, attr = name.partition(":")
        if module == "timm":  # "timm:<name>" names a timm optimizer, not an import path
            return f"timm:{attr.lower()}"
        return f"{module}.{attr}"
    if "." in name:
        return name
    return name.lower()


def _short_name(name: str) -> str:
    canon = canonical_optimizer(name)
    return canon.rsplit(".", 1)[-1].rsplit(":", 1)[-1].lower()


def optimizer_mask(results: pd.DataFrame, name: str) -> pd.Series:
    """Rows whose ``optimizer.name`` is ``name``.

    The exact canonical spelling is tried first (``torch.optim:NAdam`` = ``torch.optim.NAdam``); if nothing
    matches, the last path component is compared case-insensitively (``NAdam`` finds
    ``torch.optim:NAdam``) when that identifies exactly one stored name. Raises ``KeyError`` listing the
    stored names when nothing matches.
    """
    if "optimizer.name" not in results.columns:
        raise KeyError("the results have no `optimizer.name` column (is this a results folder of this suite?)")
    names = results["optimizer.name"].astype(str)
    wanted = canonical_optimizer(name)
    mask = names.map(canonical_optimizer) == wanted
    if mask.any():
        return mask
    short = names.map(_short_name)
    candidates = sorted(set(names[short == _short_name(name)]))
    if len(candidates) == 1:
        return names == candidates[0]
    stored = ", ".join(sorted(set(names)))
    if candidates:
        raise KeyError(f"optimizer {name!r} is ambiguous; it matches {', '.join(candidates)}: spell it out")
    raise KeyError(f"no runs with optimizer {name!r}; optimizers in these results: {stored or '(none)'}")


def display_optimizer(name: str) -> str:
    """Paper spelling of a registry name (``sgdp`` -> ``SGDP``); other names unchanged."""
    return _DISPLAY_NAMES.get(str(name).lower(), str(name))


def method_labels(results: pd.DataFrame, groups: pd.Series | None = None) -> pd.Series:
    """One label per run: the optimizer name plus the ``optimizer.*`` settings that vary between runs with
    that name inside one task group (so a learning rate tuned per task keeps the plain name)."""
    if results.empty:
        return pd.Series([], index=results.index, dtype=object)
    groups = group_labels(results) if groups is None else groups
    opt_cols = sorted(c for c in results.columns if c.startswith("optimizer.") and c != "optimizer.name")
    labels = pd.Series(index=results.index, dtype=object)
    names = results["optimizer.name"].astype(str)
    for _, idx in names.groupby([groups, names]).groups.items():
        sub = results.loc[idx]
        varying = [c for c in opt_cols if sub[c].map(hashable).nunique(dropna=False) > 1]
        for i in idx:
            if varying:
                parts = ",".join(f"{c.split('.', 1)[1]}={_fmt_setting(results.at[i, c])}" for c in varying)
                labels.at[i] = f"{names.at[i]}[{parts}]"
            else:
                labels.at[i] = names.at[i]
    return labels


def _fmt_setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(hashable(value))


def group_columns(results: pd.DataFrame) -> list[str]:
    """Setting columns (data/model/train, see module doc) that vary between runs of ``results``."""
    cols = []
    for c in sorted(results.columns):
        if c.startswith(("data.", "model.", "train.")) and c not in NON_SEMANTIC_TRAIN_KEYS:
            if results[c].map(hashable).nunique(dropna=False) > 1:
                cols.append(c)
    return cols


def group_labels(results: pd.DataFrame) -> pd.Series:
    """Task-group label per run: ``task / data.name / model.name`` plus ``[key=value, ...]`` for the other
    data/model/train settings that vary between runs of the same task."""
    if results.empty:
        return pd.Series([], index=results.index, dtype=object)
    tasks = results["task"].astype(str) if "task" in results.columns else pd.Series("", index=results.index)
    named = [c for c in ("data.name", "model.name") if c in results.columns]
    labels = pd.Series(index=results.index, dtype=object)
    for _, idx in tasks.groupby(tasks).groups.items():
        sub = results.loc[idx]
        extra_cols = [c for c in group_columns(sub) if c not in named]
        for i in idx:
            parts = [tasks.at[i]] + [
                str(hashable(results.at[i, c])) for c in named if hashable(results.at[i, c]) is not None
            ]
            extra = [f"{c}={_fmt_setting(results.at[i, c])}" for c in extra_cols]
            text = " / ".join(p for p in parts if p)
            labels.at[i] = f"{text} [{', '.join(extra)}]" if extra else text
    return labels
