"""Paper tables rebuilt from a results frame, beside the paper's numbers, with a verdict per cell.

Plain functions: a ``load_results`` frame goes in, a :class:`~benchmarks.analysis.render.Table` (a long frame
of numbers plus the paper's row x column layout as text) comes out. Which run fills which paper cell:
``benchmarks.analysis.table_specs`` (the tables) and ``benchmarks.analysis.fields`` (a run's tags and the
fields derived from its config). Rendering to Markdown, LaTeX and CSV: ``benchmarks.analysis.render``.

Comparable or not: a cell is "not comparable" when its runs are shortened (``fields.reduced_reason``:
``tags.reduced``, ``tags.smoke`` or a ``smoke`` column true, ``train.max_steps`` set (t07: below the
Transformer-XL recipe's 200k steps, which its config sets as ``train.max_steps``), a data subset such as
``data.max_clips`` / ``data.max_train_tokens`` / ``data.max_eval_tokens``, classification's
``data.train_fraction`` / ``data.val_fraction`` below 1), use another data set than the paper's cell (a
stand-in such as ``synthetic`` text, or a data set that cannot be recognised: set ``tags.dataset`` then), or
differ from the paper's setting in a way the table knows (t05: a front end other than the harmonic filters;
t06: a backbone other than ResNet50 or no pretrained weights). When a cell has both, the comparable runs are
used and the others are counted in the note.

Numbers: mean and sample standard deviation (ddof 1; the mean alone with one seed) over the finished runs (status
"done") of the cell; diverged/failed runs are counted beside. The metric column of a cell is the first of
``table_specs.METRIC_COLUMNS`` the runs have; the tasks log percentages, as the paper does, so values are used
as they are.

Verdict rule (printed in every caption): with tolerance tol = max(2 x std, ``table_specs.ABS_TOL`` of the
metric),

* **reproduced** when |ours - paper| <= tol and, for a cell that has a baseline in the paper (SGDP vs SGD,
  AdamP vs Adam/AdamW; t02: without vs with weight decay), the sign of our difference to our baseline cell
  equals the sign of the paper's (checked only when the baseline cell has comparable runs: the note says so);
* **not reproduced** otherwise; **not comparable** as above; **missing** when the cell has no finished run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import toy
from .labels import canonical_optimizer, display_optimizer, group_labels, method_labels, _short_name
from .metric_choice import DONE, FAILED_STATUSES, done_runs, metric_left_out, numbers, primary_metric
from .paired import _COMPARE_COLUMNS, CompareSettings, paired_comparison, _seed_text
from .fields import _get, _missing, norm, reduced_reason, run_dataset, run_field, table_tags
from .paper import PAPER_LABEL, load_paper_table
from .render import Table, _fmt, _mean_std
from .table_specs import ABS_TOL, EVALUATED_ON, METRIC_COLUMNS, SPECS, PaperTableSpec

VERDICTS = ("reproduced", "not reproduced", "not comparable", "missing")


def _metric_column(runs: pd.DataFrame, paper_metric: str) -> str | None:
    for name in METRIC_COLUMNS.get(paper_metric, ()):
        col = f"metrics.{name}"
        if col in runs.columns and runs[col].notna().any():  # text too: left out by name, never parsed
            return col
    return None


def _assign(
    results: pd.DataFrame, spec: PaperTableSpec, labels: Mapping[str, Sequence[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (own, shared): runs of this table with their cell key columns ``_k_<field>``, and runs of the
    tables in ``spec.shared_from`` usable for otherwise empty cells. Rows of ``own`` whose key is incomplete
    are the table's unmatched runs."""
    own_idx, shared_idx = [], []
    keys: dict[Any, dict[str, str | None]] = {}
    for idx, row in results.iterrows():
        tagged = table_tags(_get(row, "tags.table"))
        fields = {f: run_field(row, f, labels[f]) for f in spec.match_fields}
        if tagged:
            if spec.table_id in tagged:
                own_idx.append(idx)
            elif tagged & set(spec.shared_from) and all(fields.values()) and spec.shared_filter(row, fields):
                shared_idx.append(idx)
            else:
                continue
        elif spec.name_rule(row, fields) and all(fields.values()):
            own_idx.append(idx)
        else:
            continue
        keys[idx] = fields

    def frame(idx: list[Any]) -> pd.DataFrame:
        out = results.loc[idx].copy()
        for f in spec.match_fields:
            out[f"_k_{f}"] = [keys[i][f] for i in idx]
        return out

    return frame(own_idx), frame(shared_idx)


def _cell_runs(frame: pd.DataFrame, key: Mapping[str, str], fields: Sequence[str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for f in fields:
        mask &= (frame[f"_k_{f}"] == key[f]).to_numpy()
    return frame[mask]


def _stats(
    runs: pd.DataFrame,
    paper_metric: str,
    paper_dataset: str | None,
    setting_differs: Callable[[pd.Series], str | None] = lambda row: None,
    full_max_steps: int | None = None,
) -> dict[str, Any]:
    """Statistics of one cell; prefers comparable runs (see module docstring)."""
    out: dict[str, Any] = {
        "n": 0,
        "mean": np.nan,
        "std": np.nan,
        "seeds": "",
        "n_failed": 0,
        "n_pending": 0,
        "comparable": True,
        "reason": "",
        "metric_column": "",
        "n_other": 0,
    }
    if runs.empty:
        return out
    col = _metric_column(runs, paper_metric)
    statuses = runs["status"] if "status" in runs.columns else pd.Series("done", index=runs.index)
    out["n_failed"] = int(statuses.isin(FAILED_STATUSES).sum())
    out["n_pending"] = int((~statuses.isin((DONE, *FAILED_STATUSES))).sum())
    out["left_out"] = metric_left_out(runs, col) if col is not None else []
    reasons = {}
    for idx, row in runs.iterrows():
        reason = reduced_reason(row, full_max_steps)
        paper_dataset = EVALUATED_ON.get(paper_dataset, paper_dataset) if paper_dataset else paper_dataset
        if reason is None and paper_dataset is not None:
            used = run_dataset(row)
            data_name = _get(row, "data.name")
            if used is None and norm(data_name) == "imagefolder":
                root = _get(row, "data.root")
                reason = f"data set under data.root={root!r} not recognised as {paper_dataset} (set tags.dataset)"
            elif used is None:
                reason = f"different data set (data.name={data_name})"
            elif norm(used) != norm(paper_dataset):
                reason = f"different data set ({used})"
        if reason is None:
            reason = setting_differs(row)
        reasons[idx] = reason
    done = runs[statuses == DONE]
    if col is not None:
        done = done[np.isfinite(numbers(done[col]).to_numpy(dtype=float))]
    else:
        done = done.iloc[0:0]
    full = done[[reasons[i] is None for i in done.index]]
    use = full if len(full) else done
    out["comparable"] = bool(len(full)) or done.empty
    if not out["comparable"]:
        out["reason"] = "; ".join(sorted({reasons[i] for i in done.index if reasons[i]}))
    out["n_other"] = int(len(done) - len(use))
    if use.empty or col is None:
        return out
    values = numbers(use[col]).to_numpy(dtype=float)
    out.update(
        n=int(values.size),
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if values.size >= 2 else np.nan,
        seeds=",".join(str(_seed_text(s)) for s in sorted(use["train.seed"].tolist(), key=str))
        if "train.seed" in use.columns
        else "",
        metric_column=col,
    )
    return out


def paper_table(results: pd.DataFrame, table_id: str, paper_dir: Path | None = None) -> Table | None:
    """Rebuild paper table ``table_id`` from ``results``; None when no run belongs to it.

    Every cell of the paper is present (missing cells are shown as missing). ``cells`` columns: the paper's
    row fields and ``column``, ``metric``, ``n``, ``mean``, ``std``, ``seeds``, ``paper``, ``delta_paper``,
    ``baseline``, ``mean_baseline``, ``delta_baseline``, ``paper_delta_baseline``, ``tolerance``, ``verdict``,
    ``note``, ``n_failed``, ``metric_column``.
    """
    spec = SPECS[table_id]
    paper = load_paper_table(table_id, paper_dir)
    labels = {
        f: list(dict.fromkeys(paper[f])) for f in set(spec.match_fields) | set(spec.row_fields) | {spec.col_field}
    }
    own, shared = _assign(results, spec, labels)
    if own.empty and shared.empty:
        return None
    records: list[dict[str, Any]] = []
    stats_by_cell: dict[tuple, dict[str, Any]] = {}
    for _, prow in paper.iterrows():
        key = {f: prow[f] for f in spec.match_fields}
        runs = _cell_runs(own, key, spec.match_fields)
        used_shared = False
        if runs.empty and not shared.empty:
            runs = _cell_runs(shared, key, spec.match_fields)
            used_shared = not runs.empty
        st = _stats(runs, prow["metric"], prow.get("dataset"), spec.setting_differs, spec.full_max_steps)
        st["shared"] = used_shared
        stats_by_cell[(tuple(key.items()), prow["metric"])] = st
    for _, prow in paper.iterrows():
        key = {f: prow[f] for f in spec.match_fields}
        metric = prow["metric"]
        st = stats_by_cell[(tuple(key.items()), metric)]
        paper_value = float(prow["value_num"])
        base_key = spec.baseline(key)
        base_st = stats_by_cell.get((tuple(base_key.items()), metric)) if base_key else None
        base_paper = np.nan
        if base_key is not None:
            match = paper
            for f, v in base_key.items():
                match = match[match[f] == v]
            match = match[match["metric"] == metric]
            base_paper = float(match["value_num"].iloc[0]) if len(match) else np.nan
        record: dict[str, Any] = {f: prow[f] for f in spec.row_fields}
        record["column"] = prow[spec.col_field]
        record["metric"] = metric
        tol_abs = ABS_TOL.get(metric, 0.0)
        tol = max(2.0 * st["std"] if np.isfinite(st["std"]) else 0.0, tol_abs)
        delta_paper = st["mean"] - paper_value
        if base_st is not None and base_st["n"] and base_st["comparable"] == st["comparable"]:
            delta_base = st["mean"] - base_st["mean"]
        else:
            delta_base = np.nan
        notes = []
        if st["n"] == 0:
            verdict = "missing"
        elif not st["comparable"]:
            verdict = "not comparable"
            notes.append(st["reason"])
        else:
            value_ok = abs(delta_paper) <= tol + 1e-12
            sign_ok: bool | None = None
            if base_key is not None:
                if base_st is not None and base_st["n"] and base_st["comparable"]:
                    sign_ok = bool(np.sign(delta_base) == np.sign(paper_value - base_paper))
                else:
                    notes.append("sign vs baseline not checked (baseline cell has no comparable runs)")
            verdict = "reproduced" if value_ok and sign_ok is not False else "not reproduced"
            if not value_ok:
                notes.append(f"|ours - paper| = {abs(delta_paper):.2f} > tol {tol:.2f}")
            if sign_ok is False:
                notes.append("sign of difference to baseline differs from the paper")
        if st["n_other"]:
            notes.append(f"{st['n_other']} shortened/other-data run(s) not used")
        if st["n_failed"]:
            notes.append(f"{st['n_failed']} diverged/failed run(s)")
        if st["n_pending"]:
            notes.append(f"{st['n_pending']} unfinished run(s)")
        if st.get("left_out"):
            notes.append("left out: " + ", ".join(f"{rid} ({why})" for rid, why in st["left_out"]))
        if st.get("shared"):
            notes.append("runs taken from Table 1")
        record.update(
            n=st["n"],
            mean=st["mean"],
            std=st["std"],
            seeds=st["seeds"],
            paper=paper_value,
            delta_paper=delta_paper if st["n"] else np.nan,
            baseline=_baseline_label(key, base_key),
            mean_baseline=base_st["mean"] if base_st is not None else np.nan,
            delta_baseline=delta_base if st["n"] else np.nan,
            paper_delta_baseline=paper_value - base_paper if base_key is not None else np.nan,
            tolerance=tol if st["n"] else np.nan,
            verdict=verdict,
            note="; ".join(n for n in notes if n),
            n_failed=st["n_failed"],
            metric_column=st["metric_column"],
        )
        records.append(record)
    cells = pd.DataFrame(records)
    layout = _layout(cells, list(spec.row_fields), digits=2)
    notes = []
    cell_keys = {tuple(p[f] for f in spec.match_fields) for _, p in paper.iterrows()}
    for _, r in own.iterrows():
        key = tuple(r[f"_k_{f}"] for f in spec.match_fields)
        if key not in cell_keys:
            fields = ", ".join(
                f"{f}={'unrecognised' if _missing(r[f'_k_{f}']) else r[f'_k_{f}']}" for f in spec.match_fields
            )
            notes.append(f"run {r.get('run_id')} belongs to {table_id} but matches no cell ({fields}): not shown")
    caption = _paper_caption(spec, list(dict.fromkeys(paper["metric"])))
    name = sorted(p.stem for p in _paper_files(paper_dir) if p.stem.startswith(table_id + "_"))[0]
    return Table(name=name, title=spec.title, caption=caption, cells=cells, layout=layout, notes=notes)


def _baseline_label(key: Mapping[str, str], base_key: Mapping[str, str] | None) -> str:
    if not base_key:
        return ""
    diff = [v for f, v in base_key.items() if key.get(f) != v]
    return ", ".join(diff)


def _paper_files(paper_dir: Path | None) -> list[Path]:
    from .paper import paper_tables

    return list(paper_tables(paper_dir).values())


def _paper_caption(spec: PaperTableSpec, metrics: Sequence[str]) -> str:
    tols = ", ".join(f"{m}: {ABS_TOL.get(m, 0.0):g}" for m in metrics)
    extra = f" {spec.note}" if spec.note else ""
    return (
        f"Ours: mean ± sample std over seeds (n = finished seeds; the mean alone with one seed). {PAPER_LABEL}: the "
        f"paper's number. Δ paper = ours − paper; Δ baseline = ours − our baseline cell (paper's in brackets).{extra} "
        "Verdict: reproduced if |ours − paper| ≤ max(2·std, absolute tolerance) and the sign of Δ baseline "
        "matches the paper's (when our baseline cell has comparable runs); not comparable when the runs are "
        "shortened (tags.reduced/smoke, train.max_steps below the recipe's, data subsets or fractions < 1) or use "
        "another data set; missing "
        f"when the cell has no finished run. Absolute tolerances: {tols}."
    )


def _layout(cells: pd.DataFrame, row_fields: list[str], digits: int = 2) -> pd.DataFrame:
    """Paper layout: one row per paper row (in paper order), one column per paper column; text lines."""
    rows = list(dict.fromkeys(tuple(r[f] for f in row_fields) for _, r in cells.iterrows()))
    cols = list(dict.fromkeys(cells["column"]))
    data: dict[str, list[Any]] = {f: [r[i] for r in rows] for i, f in enumerate(row_fields)}
    for col in cols:
        data[col] = []
        for r in rows:
            hit = cells[(cells["column"] == col)]
            for i, f in enumerate(row_fields):
                hit = hit[hit[f] == r[i]]
            data[col].append(_cell_lines(hit.iloc[0], digits) if len(hit) else ["—"])
    return pd.DataFrame(data)


def _cell_lines(cell: pd.Series, digits: int) -> list[str]:
    lines = []
    if cell["n"]:
        lines.append(f"{_mean_std(cell['mean'], cell['std'], cell['n'], digits)} (n={int(cell['n'])})")
    else:
        lines.append("—")
    lines.append(
        f"paper {_fmt(cell['paper'], digits)}"
        + (f" (Δ {_fmt(cell['delta_paper'], digits, True)})" if cell["n"] else "")
    )
    if cell.get("baseline"):
        lines.append(
            f"vs {cell['baseline']}: {_fmt(cell['delta_baseline'], digits, True)} "
            f"(paper {_fmt(cell['paper_delta_baseline'], digits, True)})"
        )
    verdict = str(cell["verdict"])
    if cell.get("n_failed"):
        verdict += f" [{int(cell['n_failed'])} failed]"
    lines.append(verdict)
    return lines


# --------------------------------------------------------------------------------------------------------
# summary tables without paper numbers (digits demo, toy problems, anything else)
# --------------------------------------------------------------------------------------------------------
def summary_table(
    results: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    name: str = "summary",
    title: str = "Summary",
    digits: int = 4,
) -> Table:
    """Mean ± std over finished seeds of each metric, per task group and method (no paper numbers).

    ``metrics``: names without the ``metrics.`` prefix (default: every metric column with a value). Columns
    of ``cells``: ``group``, ``method``, ``metric``, ``n``, ``mean``, ``std``, ``seeds``, ``n_failed``.
    """
    frame = results.copy()
    metric_cols = (
        [f"metrics.{m}" for m in metrics]
        if metrics is not None
        else [
            c
            for c in frame.columns
            if c.startswith("metrics.") and frame[c].notna().any()
        ]
    )
    records = []
    notes: list[str] = []
    if not frame.empty:
        frame["_group"] = group_labels(frame)
        frame["_method"] = method_labels(frame, frame["_group"])
        for (group, method), sub in frame.groupby(["_group", "_method"], sort=True):
            n_failed = int(sub["status"].isin(FAILED_STATUSES).sum()) if "status" in sub.columns else 0
            for col in metric_cols:
                done = done_runs(sub, col)
                values = numbers(done[col]).to_numpy(dtype=float) if len(done) else np.array([])
                # a metric no run of the task group reports is not this group's (toy2d beside toy3d): not left out
                applies = col in frame.columns and frame.loc[frame["_group"] == group, col].notna().any()
                left = metric_left_out(sub, col) if applies else []
                if col not in sub.columns or not numbers(sub[col]).notna().any():
                    if values.size == 0 and n_failed == 0 and not left:
                        continue
                records.append(
                    {
                        "group": group,
                        "method": method,
                        "metric": col.removeprefix("metrics."),
                        "n": int(values.size),
                        "mean": float(values.mean()) if values.size else np.nan,
                        "std": float(values.std(ddof=1)) if values.size >= 2 else np.nan,
                        "seeds": ",".join(
                            str(_seed_text(s)) for s in sorted(done["train.seed"].tolist(), key=str)
                        )
                        if "train.seed" in done.columns
                        else "",
                        "n_failed": n_failed,
                    }
                )
                notes += [f"left out of {group} / {method}: {rid} ({why})" for rid, why in left]
    cells = pd.DataFrame(records, columns=["group", "method", "metric", "n", "mean", "std", "seeds", "n_failed"])
    layout_rows = []
    for (group, method), sub in cells.groupby(["group", "method"], sort=False):
        row: dict[str, Any] = {"task group": group, "optimizer": method}
        for _, c in sub.iterrows():
            text = _mean_std(c["mean"], c["std"], c["n"], digits) if c["n"] else "missing"
            row[c["metric"]] = [text]
        n = int(sub["n"].max()) if len(sub) else 0
        row["seeds"] = [str(n)]
        row["failed"] = [str(int(sub["n_failed"].max()))] if len(sub) else ["0"]
        layout_rows.append(row)
    layout = pd.DataFrame(layout_rows)
    for col in layout.columns:
        if col not in ("task group", "optimizer"):
            layout[col] = layout[col].map(lambda v: v if isinstance(v, list) else ["—"])
    caption = (
        "Mean ± sample std over finished seeds (status done); the mean alone with one seed; seeds = finished runs; "
        "failed = diverged or failed runs (not in the mean). No paper numbers exist for this table."
    )
    return Table(name=name, title=title, caption=caption, cells=cells, layout=layout, notes=list(dict.fromkeys(notes)))


def digits_table(results: pd.DataFrame, settings: CompareSettings | None = None) -> Table | None:
    """The digits demo (``task`` classification, ``data.name`` digits): accuracy per optimizer, and the
    paired comparison vs the baseline (AdamP by default) over matched seeds with a t interval."""
    settings = settings or CompareSettings()
    if not {"task", "data.name"} <= set(results.columns):
        return None
    runs = results[(results["task"] == "classification") & (results["data.name"].astype(str) == "digits")]
    if runs.empty:
        return None
    metric, mode = primary_metric(runs, "classification", settings.metric, settings.mode)
    summary = summary_table(runs, [metric], name="digits_demo", title="Digits demo", digits=2)
    cells = summary.cells.copy()
    notes = []
    try:
        paired = paired_comparison(runs, settings)
    except (KeyError, ValueError) as exc:  # no baseline runs, or several baseline settings: say so, keep the table
        paired = pd.DataFrame(columns=_COMPARE_COLUMNS)
        notes.append(f"no paired comparison: {exc}")
    paired = paired.astype({"n_pairs": "Int64"})
    merged = cells.merge(
        paired[["group", "method", "n_pairs", "delta", "ci_lo", "ci_hi", "outcome"]], how="left", on=["group", "method"]
    )
    layout_rows = []
    base_label = display_optimizer(settings.baseline)
    for _, c in merged.iterrows():
        is_base = _safe_is(str(c["method"]), settings.baseline)
        layout_rows.append(
            {
                "task group": c["group"],
                "optimizer": c["method"],
                f"{metric} (mean ± std)": [_mean_std(c["mean"], c["std"], c["n"]) if c["n"] else "missing"],
                "seeds": [str(int(c["n"]))],
                "failed": [str(int(c["n_failed"]))],
                f"Δ vs {base_label} (paired)": ["baseline"] if is_base else [_fmt(c.get("delta"), 2, True)],
                "95% CI": ["—"] if is_base else [f"[{_fmt(c.get('ci_lo'), 2, True)}, {_fmt(c.get('ci_hi'), 2, True)}]"],
                "outcome": ["—"]
                if is_base
                else [str(c.get("outcome")) if isinstance(c.get("outcome"), str) else "no baseline"],
            }
        )
    caption = (
        f"Digits demo (scikit-learn's 8x8 digits; no paper numbers). {metric} ({mode}) mean ± sample std over "
        f"finished seeds (the mean alone with one seed). Δ vs {base_label}: mean paired difference over matched seeds "
        "(method − baseline). " + settings.describe()
    )
    return Table(
        name="digits_demo",
        title="Digits demo: classification accuracy",
        caption=caption,
        cells=merged,
        layout=pd.DataFrame(layout_rows),
        notes=notes,
    )


def _safe_is(method: str, baseline: str) -> bool:
    try:
        return canonical_optimizer(method.split("[")[0]) == canonical_optimizer(baseline) or (
            _short_name(method.split("[")[0]) == _short_name(baseline)
        )
    except Exception:  # noqa: BLE001 - a label that is not an optimizer name is simply not the baseline
        return False


def frame_table(frame: pd.DataFrame, name: str, title: str, caption: str, digits: int = 3) -> Table:
    """A :class:`Table` showing a ready-made frame as it is (floats rounded to ``digits`` in the layout)."""
    layout = frame.copy()
    for c in layout.columns:
        if pd.api.types.is_float_dtype(layout[c]):
            layout[c] = layout[c].map(lambda v: _fmt(v, digits))
    return Table(name=name, title=title, caption=caption, cells=frame.reset_index(drop=True), layout=layout)


def toy_tables(results: pd.DataFrame, paper_dir: Path | None = None) -> list[Table]:
    """Tables of the toy problems (``task`` starting with ``toy``, paper t00).

    A generic table of every final metric per task and optimizer setting, plus the toy problems' own
    comparisons with the paper's statements from ``benchmarks.analysis.toy`` (2-D norm growth vs momentum
    SGD's stated 1 -> 2.93 / 27.87; 3-D radius vs the values read off the paper's plots). The toy figures
    come from ``benchmarks.analysis.toy_plots.toy_figures``.
    """
    if "task" not in results.columns:
        return []
    runs = results[results["task"].astype(str).str.startswith("toy")]
    if runs.empty:
        return []
    generic = summary_table(runs, name="t00_toy", title="Toy problems (paper t00): final metrics", digits=4)
    generic.caption += " Paper statements about the toy problems: results/paper/t00_toy_and_analysis_figures.csv."
    out = [generic]
    try:
        out += _toy_paper_tables(results, paper_dir)
    except Exception as exc:  # noqa: BLE001 - a bug in the toy module must not take the other tables down
        generic.notes.append(f"benchmarks.analysis.toy failed on these runs ({type(exc).__name__}: {exc})")
    return out


def _toy_paper_tables(results: pd.DataFrame, paper_dir: Path | None) -> list[Table]:
    out = []
    stated = "stated by the paper (project page text) for momentum SGD only; no lr or step count is given"
    growth = toy.norm_growth_table(results, paper_dir)
    if not growth.empty:
        out.append(
            frame_table(
                growth,
                "t00_toy2d_norm_growth",
                "2-D toy: growth of the weight norm",
                f"norm_growth = final ||w|| / initial ||w||, mean over runs (n_runs). {PAPER_LABEL}: final norm from 1 "
                f"{stated}; ours_over_paper = norm_growth / paper; vs_momentum_sgd = norm growth relative to "
                "momentum SGD at the same momentum, lr and settings.",
            )
        )
    radius = toy.toy3d_table(results, paper_dir)
    if not radius.empty:
        out.append(
            frame_table(
                radius,
                "t00_toy3d",
                "3-D toy: Rosenbrock on the hemisphere",
                "r = final radius ||w||, max_r its peak (at max_r_step), distance = distance to the optimum in "
                f"(psi, phi); {PAPER_LABEL}: the radius read off the paper's plots (approximate).",
            )
        )
    return out


def other_table(results: pd.DataFrame, used_run_ids: Iterable[str]) -> Table | None:
    """Runs that no other table shows, summarised by task group and method (primary metric only)."""
    if results.empty or "run_id" not in results.columns:
        return None
    rest = results[~results["run_id"].isin(set(used_run_ids))]
    if rest.empty:
        return None
    metrics = []
    for task in sorted(set(rest["task"].astype(str))) if "task" in rest.columns else []:
        try:
            metrics.append(primary_metric(rest, task)[0])
        except KeyError:
            continue
    metrics = [m for m in dict.fromkeys(metrics) if f"metrics.{m}" in rest.columns]
    table = summary_table(rest, metrics or None, name="other_runs", title="Other runs (not in a paper table)")
    return table


def build_tables(
    results: pd.DataFrame, paper_dir: Path | None = None, settings: CompareSettings | None = None
) -> list[Table]:
    """Every table that has runs: toy (t00), the paper tables t01/t02/t03/t05/t06/t07, the digits demo, and the
    runs that fit none of them."""
    tables: list[Table] = []
    used: set[str] = set()
    toy = toy_tables(results, paper_dir)
    if toy:
        tables.extend(toy)
        used |= set(results[results["task"].astype(str).str.startswith("toy")].get("run_id", []))
    for table_id in SPECS:
        table = paper_table(results, table_id, paper_dir)
        if table is not None:
            tables.append(table)
            spec = SPECS[table_id]
            labels = {f: list(dict.fromkeys(load_paper_table(table_id, paper_dir)[f])) for f in spec.match_fields}
            own, shared = _assign(results, spec, labels)
            used |= set(own.get("run_id", [])) | set(shared.get("run_id", []))
    digits = digits_table(results, settings)
    if digits is not None:
        tables.append(digits)
        used |= set(
            results[(results["task"] == "classification") & (results["data.name"].astype(str) == "digits")]["run_id"]
        )
    other = other_table(results, used)
    if other is not None:
        tables.append(other)
    return tables


__all__ = [
    "VERDICTS",
    "build_tables",
    "digits_table",
    "frame_table",
    "other_table",
    "paper_table",
    "summary_table",
    "toy_tables",
]
