"""What runs cost: wall time and GPU-hours per run and per method, and the estimate of a planned grid from
measured step times (definition in :mod:`benchmarks.analysis.compare`)."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .labels import canonical_optimizer, group_labels, hashable, method_labels
from .metric_choice import done_runs, number, numbers


_GPU_PATTERN = re.compile(r"cuda|gpu|nvidia|tesla|\b[ahlv]\d{2,3}\b|rtx|rocm|mps", re.I)


def _is_gpu(device: Any) -> bool:
    return (
        device is not None
        and not (isinstance(device, float) and math.isnan(device))
        and bool(_GPU_PATTERN.search(str(device)))
    )


def _gpu_count(row: pd.Series) -> int:
    for key in ("env.num_gpus", "env.world_size", "env.gpus", "train.world_size"):
        if key in row.index:
            value = number(row[key])
            if value is not None and np.isfinite(value) and value >= 1:
                return int(value)
    return 1


def _num(value: Any) -> float:
    """A timing as a float; NaN when it is missing or not a number (never parsed from text)."""
    value = number(value)
    return float("nan") if value is None else value


def cost_left_out(results: pd.DataFrame) -> list[tuple[str, str]]:
    """``(run id, reason)`` of every finished run whose wall time is left out of the cost totals: missing,
    not a number (text is never parsed), or not finite."""
    out = []
    if results.empty:
        return out
    for _, row in results.iterrows():
        value = row.get("timing.wall_s")
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        if missing and row.get("status") not in ("done", "diverged", "failed"):
            continue  # still running or queued: no wall time yet
        if missing:
            reason = "no wall time (timing.wall_s)"
        elif number(value) is None:
            text = repr(value)
            reason = f"wall time is not a number ({text if len(text) <= 40 else text[:30] + '...'})"
        elif not np.isfinite(number(value)):
            reason = f"wall time is not finite ({number(value)})"
        else:
            continue
        out.append((str(row.get("run_id")), reason))
    return out


def run_costs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: ``run_id``, ``status``, ``device``, ``gpus``, ``wall_s``, ``step_time_s``, ``steps``,
    ``device_hours`` (wall time x devices) and ``gpu_hours`` (0 for CPU runs)."""
    rows = []
    for _, row in results.iterrows():
        device = row.get("env.device")
        wall = _num(row.get("timing.wall_s"))
        gpus = _gpu_count(row) if _is_gpu(device) else 0
        hours = wall / 3600.0 if np.isfinite(wall) else float("nan")
        rows.append(
            {
                "run_id": row.get("run_id"),
                "status": row.get("status"),
                "device": device,
                "gpus": gpus,
                "wall_s": float(wall) if np.isfinite(wall) else float("nan"),
                "step_time_s": _num(row.get("timing.step_time_s")),
                "steps": row.get("timing.steps") if number(row.get("timing.steps")) is not None else float("nan"),
                "device_hours": hours * max(gpus, 1),
                "gpu_hours": hours * gpus,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["run_id", "status", "device", "gpus", "wall_s", "step_time_s", "steps", "device_hours", "gpu_hours"],
    )


def cost_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Cost per task group and method: runs, median step time, mean and total wall time, total GPU-hours."""
    cols = ["group", "method", "runs", "device", "median_step_time_s", "mean_wall_s", "total_wall_h", "gpu_hours"]
    if results.empty:
        return pd.DataFrame(columns=cols)
    costs = run_costs(results)
    costs.index = results.index
    costs["group"] = group_labels(results)
    costs["method"] = method_labels(results, costs["group"])
    rows = []
    for (group, method), sub in costs.groupby(["group", "method"], sort=True):
        devices = sorted({str(d) for d in sub["device"].dropna()})
        rows.append(
            {
                "group": group,
                "method": method,
                "runs": len(sub),
                "device": ",".join(devices) if devices else "n/a",
                "median_step_time_s": float(sub["step_time_s"].median()),
                "mean_wall_s": float(sub["wall_s"].mean()),
                "total_wall_h": float(sub["wall_s"].sum(min_count=1) / 3600.0),
                "gpu_hours": float(sub["gpu_hours"].sum(min_count=1)),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def estimate_cost(
    plan: pd.DataFrame, measured: pd.DataFrame, keys: Sequence[str] = ("task", "model.name", "optimizer.name")
) -> pd.DataFrame:
    """Estimate the cost of a grid before launching it, from step times measured in another results folder.

    ``plan`` has one row per planned run (or a ``runs`` column with a count) with the ``keys`` columns and
    either ``steps`` (optimizer steps per run), ``train.max_steps``, or ``train.epochs`` (then steps per
    epoch come from the measured runs with the same task and data: ``timing.steps / train.epochs``).
    ``measured`` is a ``load_results`` frame of finished runs with ``timing.step_time_s``.

    Step time: the median over measured runs with the same ``keys``; if none, the median over runs that
    match all keys but the last one (``source`` says which). Returns the plan with ``step_time_s``,
    ``steps``, ``est_hours`` (per run x ``runs``), ``source``, and a total row is left to the caller
    (``frame["est_hours"].sum()``). Rows without any matching measurement get NaN and ``source`` "none".
    """
    keys = list(keys)
    plan = plan.copy()
    if "runs" not in plan.columns:
        plan["runs"] = 1
    missing = [k for k in keys if k not in plan.columns]
    if missing:
        raise KeyError(f"the plan lacks the column(s) {missing}; it needs {keys} and steps or train.epochs")
    done = done_runs(measured)
    if len(done) and "timing.step_time_s" in done.columns:
        done = done[numbers(done["timing.step_time_s"]).notna().to_numpy()]
    elif len(done):
        done = done.iloc[0:0]
    out_rows = []
    for _, row in plan.iterrows():
        step_time, source = float("nan"), "none"
        for depth in range(len(keys), 0, -1):
            sub_keys = keys[:depth]
            if not all(k in done.columns for k in sub_keys):
                continue
            mask = np.ones(len(done), dtype=bool)
            for k in sub_keys:
                mask &= done[k].map(lambda v, want=row[k]: _same(v, want)).to_numpy()
            hit = done[mask]
            if len(hit):
                step_time = float(numbers(hit["timing.step_time_s"]).median())
                source = "+".join(sub_keys) + f" (n={len(hit)})"
                break
        steps = _planned_steps(row, done)
        runs = float(row["runs"])
        est = step_time * steps * runs / 3600.0 if np.isfinite(step_time) and np.isfinite(steps) else float("nan")
        out_rows.append({**row.to_dict(), "step_time_s": step_time, "steps": steps, "est_hours": est, "source": source})
    return pd.DataFrame(out_rows)


def _same(a: Any, b: Any) -> bool:
    if hashable(a) is None and hashable(b) is None:
        return True
    if isinstance(a, str) and isinstance(b, str) and ("." in a or ":" in a or "." in b or ":" in b):
        return canonical_optimizer(a) == canonical_optimizer(b)
    return hashable(a) == hashable(b)


def _planned_steps(row: pd.Series, measured: pd.DataFrame) -> float:
    for key in ("steps", "train.max_steps"):
        if key in row.index and pd.notna(row[key]):
            return float(row[key])
    if "train.epochs" in row.index and pd.notna(row["train.epochs"]):
        need = {"timing.steps", "train.epochs"}
        if need <= set(measured.columns) and len(measured):
            same = measured
            for k in ("task", "data.name", "train.batch_size"):
                if k in row.index and k in measured.columns:
                    same = same[same[k].map(lambda v, want=row[k]: _same(v, want))]
            if "train.max_steps" in same.columns:  # runs cut short by max_steps do not show a full epoch
                same = same[same["train.max_steps"].isna()]
            per_epoch = numbers(same["timing.steps"]) / numbers(same["train.epochs"])
            per_epoch = per_epoch[np.isfinite(per_epoch)]
            if len(per_epoch):
                return float(per_epoch.median()) * float(row["train.epochs"])
    return float("nan")
