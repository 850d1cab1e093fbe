"""``python -m benchmarks tune CONFIG --trials N --out OUT``: an equal budget of quasi-random trials per
optimizer, selection on validation, and the selected point rerun at fresh seeds (docs/tuning.md).

The protocol, for each *arm* of the config (its runs without the seed axis: in ``configs/demo/digits.yaml``
the five optimizers of its zip; a config without a grid has one arm):

1. the search space: ``--space FILE``, else the config's ``search:`` section, else the registry's default
   space of the arm's optimizer (:data:`benchmarks.registry.DEFAULT_SEARCH_SPACES`; an optimizer without
   one gets lr log-uniform over [1e-5, 1e-1]);
2. N points of a seeded scrambled Sobol sequence (:mod:`benchmarks.config.search`), the same unit-cube
   points for every arm, so ``--trials 8`` extends ``--trials 4``. Each trial is an ordinary run of the
   engine at the one trial seed (differences between trials are differences between points, not seeds),
   in ``OUT/trials`` with ``tags.tune_trial`` / ``tags.tune_point`` in its record; its run id is the hash of
   its config, which holds the point's values, so a killed or extended tune reruns nothing that finished;
3. selection: the trial with the best value of the task's VALIDATION metric (the task's
   ``selection_metric``; for a task that declares none, its primary metric when that is not a test metric,
   i.e. the held-out split it reports). Test metrics are never read before the selection is made. Ties go
   to the lower trial index; diverged and failed trials are never selected;
4. the selected point at fresh seeds (``final_seeds``, never the trial seed) in ``OUT/final``: the numbers a
   report may quote, test metrics included.

The configs that ran are written under ``OUT/configs/`` (``<arm>-trials.yaml``, ``<arm>-final.yaml``), so
``python -m benchmarks run OUT/configs/<arm>-trials.yaml --out OUT/trials`` reproduces a trial set.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from benchmarks.config.errors import ConfigError
from benchmarks.config.search import SearchSpace, check_keys, describe, parse_search

#: the seeds of the final runs unless told otherwise: far from the usual 0, 1, 2 of configs and trials
DEFAULT_FINAL_SEEDS = (1000, 1001, 1002)


@dataclass
class ArmResult:
    """One arm's tuning: its space, the trials, the selection and the final runs."""

    label: str
    optimizer: str
    space: SearchSpace
    space_origin: str
    #: one row per trial: trial, the point's keys, run_id, status, value (the validation metric)
    trials: Any
    selected: int | None = None
    selected_point: dict[str, Any] = field(default_factory=dict)
    #: one row per final run: run_id, seed, status, metrics.* (every reported metric)
    final: Any = None


@dataclass
class TuneResult:
    """What :func:`run_tuning` returns. ``complete`` is False while runs are queued elsewhere (SLURM) or
    some failed; then a rerun of the same call continues."""

    task: str
    metric: str
    mode: str
    metric_note: str
    arms: list[ArmResult]
    trials_dir: Path
    final_dir: Path
    trial_seed: int
    final_seeds: list[int]
    complete: bool = True
    problems: list[str] = field(default_factory=list)


# -- arms, spaces, metric -----------------------------------------------------------------------------------

def _without_seed_axis(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {k: v for k, v in config.items() if k != "search"}
    for key in ("grid", "zip"):
        section = cfg.get(key)
        groups = section if isinstance(section, list) else [section]
        kept = [{k: v for k, v in g.items() if k != "train.seed"} for g in groups if isinstance(g, dict)]
        kept = [g for g in kept if g]
        if kept:
            cfg[key] = kept if isinstance(section, list) else kept[0]
        else:
            cfg.pop(key, None)
    return cfg


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "arm"


def arms_of(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(label, run config)]``: the config's runs without its seed axis (one per optimizer in the demos)."""
    from benchmarks.config.grid import describe_point, iter_expand

    expanded = list(iter_expand(_without_seed_axis(config)))
    names = [str((run.get("optimizer") or {}).get("name", "")) for run, _ in expanded]
    short = [_slug(n.rsplit(":", 1)[-1]) for n in names]  # pkg.module:Class -> Class
    if len(set(short)) == len(short) and all(names):
        return [(label, run) for label, (run, _) in zip(short, expanded)]
    # the same optimizer twice (or timm:adamp beside adamp): the grid point tells the arms apart
    return [(_slug(describe_point({k: v for k, v in point.items() if not k.startswith("tags.")}) or f"arm{i}"), run)
            for i, (run, point) in enumerate(expanded)]


def tuning_metric(task_cls: Any, metric: str | None = None) -> tuple[str, str, str]:
    """``(metric, mode, note)``: the validation metric the selection maximises or minimises.

    The task's ``selection_metric`` (what ``train.select: best`` uses); for a task without one, its primary
    metric, which is then its held-out split (the note says the final runs are measured on the same split).
    A metric named ``test*`` is refused: selecting on test would make the test numbers optimistic.
    """
    modes = dict(getattr(task_cls, "metrics", {}) or {})
    name = getattr(task_cls, "name", task_cls.__name__)
    declared = getattr(task_cls, "selection_metric", None)
    note = ""
    if metric is None:
        if declared is not None:
            metric = declared
        else:
            metric = next(iter(modes), None)
            note = (f"task {name} declares no separate validation split (no selection_metric): the selection and "
                    f"the final runs both use its held-out split; the fresh seeds remove the trials' seed luck, "
                    f"not the selection on that split")
    if metric is None or metric not in modes:
        raise ConfigError(f"task {name}: no metric to tune on (`{metric}`); its metrics: {', '.join(modes) or 'none'}")
    if metric.startswith("test"):
        raise ConfigError(f"task {name}: `{metric}` is a test metric; tuning selects on validation only "
                          f"(metrics: {', '.join(modes)})")
    return metric, modes[metric], note


def load_space(path: str | Path) -> SearchSpace:
    """A ``--space FILE``: YAML holding a ``search:`` section or its contents."""
    from benchmarks.config.loader import load_yaml

    return parse_search(load_yaml(path), source=str(path))


def space_for(search: Any, resolved: Mapping[str, Any], space: SearchSpace | None,
              config_source: str) -> tuple[SearchSpace, str]:
    """The arm's space (given, the config's ``search:``, or the registry default) with its keys checked."""
    from benchmarks.registry import default_search_space, lookup_optimizer

    if space is not None:
        origin = f"--space {space.source}"
    elif search is not None:
        space, origin = parse_search(search, source=config_source), f"`search:` of {config_source}"
    else:
        section, origin = default_search_space(resolved["optimizer"])
        space = parse_search(section, source=f"{origin}")
    entry = lookup_optimizer(resolved["optimizer"]["name"])
    check_keys(space, resolved, [*entry.defaults, *entry.required], entry.accepts_any_kwarg)
    return space, origin


# -- configs of the trials and of the final runs ------------------------------------------------------------

def _tags(run: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    tags = run.get("tags")
    if isinstance(tags, str):
        tags = [tags]
    base = {t: True for t in tags} if isinstance(tags, list) else dict(tags or {})
    return {**base, **extra}


def _with_seed(run: Mapping[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    cfg = {k: v for k, v in run.items() if k not in ("search", "grid", "zip")}
    if len(seeds) == 1:
        cfg["train"] = {**dict(cfg.get("train") or {}), "seed": int(seeds[0])}
    else:
        cfg["train"] = {k: v for k, v in dict(cfg.get("train") or {}).items() if k != "seed"}
        cfg["grid"] = {"train.seed": [int(s) for s in seeds]}
    return cfg


def trials_config(run: Mapping[str, Any], label: str, points: Sequence[Mapping[str, Any]],
                  trial_seed: int) -> dict[str, Any]:
    """The arm's run config with the trials as one zip (values of each key, trial index, point label)."""
    cfg = _with_seed(run, [trial_seed])
    cfg["tags"] = _tags(run, {"tune_arm": label, "tune_role": "trial"})
    keys = list(points[0]) if points else []
    zipped: dict[str, list] = {k: [p[k] for p in points] for k in keys}
    zipped["tags.tune_trial"] = list(range(len(points)))
    zipped["tags.tune_point"] = [describe(p) for p in points]
    cfg["zip"] = zipped
    return cfg


def final_config(run: Mapping[str, Any], label: str, point: Mapping[str, Any], trial: int,
                 seeds: Sequence[int]) -> dict[str, Any]:
    """The arm's run config at the selected point, one run per fresh seed."""
    from benchmarks.config.loader import set_dotted

    cfg = _with_seed(run, seeds)
    for key, value in point.items():
        set_dotted(cfg, key, value)
    cfg["tags"] = _tags(run, {"tune_arm": label, "tune_role": "final", "tune_trial": trial,
                              "tune_point": describe(point)})
    return cfg


def _write_config(path: Path, cfg: Mapping[str, Any], header: str) -> None:
    from benchmarks.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, f"# {header}\n" + yaml.safe_dump(dict(cfg), sort_keys=False))


# -- running ----------------------------------------------------------------------------------------------

def _run_ids(path: Path, cfg: Mapping[str, Any], smoke: bool, check_data: bool, source: str
             ) -> list[tuple[str, dict]]:
    """``[(run id, grid point)]`` of a generated config, validated in memory (nothing is written yet); an
    error names the user's config, the generated file it would be, and the point."""
    from benchmarks.engine.spec import compute_run_id
    from benchmarks.engine.sweep import resolve_file

    try:
        resolved, _ = resolve_file(path, smoke=smoke, check_data=check_data, raw=cfg)
    except ConfigError as exc:
        raise ConfigError(f"a tuning run does not validate ({path.name}): {exc.message}", source=source) from None
    return [(compute_run_id(r), p) for r, p in resolved]


def _launch(paths: Sequence[Path], out: Path, executor: str, options: Mapping[str, Any], smoke: bool,
            check_data: bool) -> None:
    from benchmarks.engine.sweep import launch_sweep, plan_summary, plan_sweep

    plan = plan_sweep([str(p) for p in paths], out_dir=out, smoke=smoke, check_data=check_data)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{out}: {plan_summary(plan)}, {len(plan.to_run)} to run", file=sys.stderr, flush=True)
    if plan.to_run:
        launch_sweep(plan, executor, options, argv=["tune", *map(str, paths)])


def _records(out: Path, run_ids: Sequence[str]) -> dict[str, dict]:
    from benchmarks import store

    found = {}
    for rid in dict.fromkeys(run_ids):
        record = store.read_record(store.run_path(out, rid))
        if record is not None:
            found[rid] = record
    return found


def _value(record: Mapping[str, Any] | None, metric: str) -> float:
    if not record or record.get("status") not in ("done", "diverged"):
        return float("nan")
    value = (record.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def select_trial(trials: Any, mode: str) -> int | None:
    """The trial index with the best finite ``value`` among finished (``done``) trials; ties: lowest index.

    ``trials`` has the columns ``trial``, ``status`` and ``value`` (the validation metric) and nothing else is
    read: the selection cannot see a test metric.
    """
    import numpy as np

    ok = trials[(trials["status"] == "done") & np.isfinite(trials["value"].astype(float))]
    if ok.empty:
        return None
    ok = ok.sort_values("trial", kind="stable")
    values = ok["value"].astype(float).to_numpy()
    best = int(np.argmax(values) if mode == "max" else np.argmin(values))
    return int(ok["trial"].iloc[best])


def run_tuning(config: Mapping[str, Any], *, trials: int, out: str | Path,
               space: SearchSpace | Mapping[str, SearchSpace] | None = None,
               executor: str = "local", trial_seed: int = 0, final_seeds: Sequence[int] = DEFAULT_FINAL_SEEDS,
               qmc_seed: int = 0, metric: str | None = None, smoke: bool = False, check_data: bool = True,
               options: Mapping[str, Any] | None = None, source: str = "config") -> TuneResult:
    """Tune every arm of ``config`` with ``trials`` quasi-random trials, select on validation, rerun at seeds.

    ``config``: a raw config as :func:`benchmarks.config.load_config` returns it (bases merged, grid/zip not
    expanded, an optional ``search:``); its seed axis is replaced, its other axes are the arms. ``space``
    (from :func:`load_space` or :func:`benchmarks.config.search.parse_search`) overrides the config's
    ``search:`` and the registry defaults for every arm; a mapping ``{arm label: SearchSpace}`` does so for
    the arms it names only (compare-mine: the user's ``--space`` for the user's optimizer, the registry's
    default for AdamP). Arm labels are the optimizer names (the class name for ``module:Class``) when those
    are unique, else the grid point. ``executor``/``options`` are those of ``run``
    (``{"max_parallel": 2, "progress": False}``; the SLURM flags as ``slurm_<name>``). Trials go to
    ``OUT/trials``, final runs to ``OUT/final``; both resume (finished runs are never rerun). Config errors
    (bad space, unknown key, a test metric, final seeds that include the trial seed) raise ConfigError
    before anything is written. Returns a :class:`TuneResult`; ``result.arms[i].selected_point`` is the
    chosen point and ``result.arms[i].final`` the final runs with every reported metric.
    """
    import pandas as pd

    from benchmarks.config.validate import resolve_config, task_class

    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    final_seeds = [int(s) for s in final_seeds]
    if not final_seeds or len(set(final_seeds)) != len(final_seeds) or min(final_seeds) < 0:
        raise ConfigError(f"the final seeds must be distinct integers >= 0, got {final_seeds}")
    if trial_seed in final_seeds:
        raise ConfigError(f"the final seeds {final_seeds} include the trial seed {trial_seed}: the selected point "
                          f"must be measured at seeds the selection never saw")
    out = Path(out)
    trials_dir, final_dir, configs_dir = out / "trials", out / "final", out / "configs"
    arms = arms_of(config)
    bare = _without_seed_axis(config)
    axes = [k for key in ("grid", "zip") for g in (bare.get(key) if isinstance(bare.get(key), list) else [bare.get(key)])
            if isinstance(g, dict) for k in g]
    if not arms:
        raise ConfigError("the config expands to no runs", source=source)
    planned = []
    task_name = metric_name = mode = note = None
    for label, run in arms:
        try:
            resolved = resolve_config(_with_seed(run, [trial_seed]))
        except ConfigError as exc:
            raise exc.with_source(source) from None
        given = space.get(label) if isinstance(space, Mapping) else space
        arm_space, origin = space_for(config.get("search"), resolved, given, source)
        both = sorted(set(arm_space.keys) & set(axes))
        if both:
            raise ConfigError(f"`{both[0]}` is both searched ({origin}) and varied by the config's grid/zip: the "
                              f"search would overwrite every arm's value; drop it from one of them", source=source)
        cls = task_class(resolved["task"])
        m, md, nt = tuning_metric(cls, metric)
        if task_name is not None and (resolved["task"], m) != (task_name, metric_name):
            raise ConfigError(f"arms of one tune must share a task and metric; got {task_name}/{metric_name} and "
                              f"{resolved['task']}/{m}", source=source)
        task_name, metric_name, mode, note = resolved["task"], m, md, nt
        points = arm_space.points(trials, seed=qmc_seed)
        planned.append((label, run, resolved, arm_space, origin, points))
    # every trial config is validated before one is written or a run starts
    trial_cfgs = [(configs_dir / f"{label}-trials.yaml", trials_config(run, label, points, trial_seed),
                   f"tune: {trials} trials of arm {label} (space: {origin}); written by `python -m benchmarks tune`")
                  for label, run, _, _, origin, points in planned]
    ids_per_arm = [_run_ids(path, cfg, smoke, check_data, source) for path, cfg, _ in trial_cfgs]
    for path, cfg, header in trial_cfgs:
        _write_config(path, cfg, header)
    trial_files = [path for path, _, _ in trial_cfgs]
    _launch(trial_files, trials_dir, executor, options or {}, smoke, check_data)
    results: list[ArmResult] = []
    problems: list[str] = []
    final_files = []
    for (label, run, resolved, arm_space, origin, points), ids in zip(planned, ids_per_arm):
        records = _records(trials_dir, [rid for rid, _ in ids])
        rows = []
        for i, ((rid, _), point) in enumerate(zip(ids, points)):
            record = records.get(rid)
            rows.append({"trial": i, **point, "run_id": rid, "status": (record or {}).get("status", "missing"),
                         "value": _value(record, metric_name)})
        table = pd.DataFrame(rows)
        arm = ArmResult(label, str(resolved["optimizer"]["name"]), arm_space, origin, table)
        unfinished = table[~table["status"].isin(["done", "diverged"])]
        if len(unfinished):
            problems.append(f"arm {label}: {len(unfinished)} of {len(table)} trials not finished "
                            f"({', '.join(sorted(set(unfinished['status'])))})")
        arm.selected = select_trial(table, mode)
        if arm.selected is not None and not len(unfinished):
            arm.selected_point = dict(points[arm.selected])
            path = configs_dir / f"{label}-final.yaml"
            cfg = final_config(run, label, arm.selected_point, arm.selected, final_seeds)
            final_ids = _run_ids(path, cfg, smoke, check_data, source)
            _write_config(path, cfg, f"tune: arm {label} at its selected trial {arm.selected} "
                                     f"({describe(arm.selected_point)}), fresh seeds {final_seeds}")
            final_files.append((arm, path, final_ids))
        elif arm.selected is None:
            problems.append(f"arm {label}: no trial finished with a finite {metric_name}: nothing to select")
        results.append(arm)
    if final_files:
        _launch([p for _, p, _ in final_files], final_dir, executor, options or {}, smoke, check_data)
        for arm, _, ids in final_files:
            records = _records(final_dir, [rid for rid, _ in ids])
            rows = []
            for rid, point in ids:
                record = records.get(rid) or {}
                row = {"run_id": rid, "seed": point.get("train.seed", final_seeds[0]),
                       "status": record.get("status", "missing")}
                row.update({f"metrics.{k}": v for k, v in (record.get("metrics") or {}).items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
                rows.append(row)
            arm.final = pd.DataFrame(rows)
            bad = arm.final[arm.final["status"] != "done"]
            if len(bad):
                problems.append(f"arm {arm.label}: {len(bad)} of {len(arm.final)} final runs not done")
    result = TuneResult(task=task_name, metric=metric_name, mode=mode, metric_note=note, arms=results,
                        trials_dir=trials_dir, final_dir=final_dir, trial_seed=trial_seed, final_seeds=final_seeds,
                        complete=not problems, problems=problems)
    _write_summary(out / "tune.json", result, qmc_seed)
    return result


def _write_summary(path: Path, result: TuneResult, qmc_seed: int) -> None:
    """``OUT/tune.json``: the protocol's settings, every trial's point and value, the selection."""
    from benchmarks.store import write_json_atomic

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v.item() if hasattr(v, "item") else v

    write_json_atomic(path, {
        "task": result.task, "metric": result.metric, "mode": result.mode, "note": result.metric_note,
        "trial_seed": result.trial_seed, "final_seeds": result.final_seeds, "qmc": "scrambled Sobol",
        "qmc_seed": qmc_seed, "complete": result.complete, "problems": result.problems,
        "arms": [{
            "label": a.label, "optimizer": a.optimizer, "space": a.space.to_section(), "space_origin": a.space_origin,
            "selected_trial": a.selected, "selected_point": a.selected_point,
            "trials": [{k: clean(v) for k, v in row.items()} for row in a.trials.to_dict("records")],
            "final_run_ids": [] if a.final is None else list(a.final["run_id"]),
        } for a in result.arms]})


# -- command line -----------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def summary_lines(result: TuneResult) -> list[str]:
    """The printed report: per arm the selected point with its values, the trials and the final runs."""
    lines = [f"## tune: task {result.task}, selection on {result.metric} ({result.mode}), "
             f"{len(result.arms[0].trials) if result.arms else 0} trials per arm at seed {result.trial_seed}; "
             f"final runs at seeds {', '.join(map(str, result.final_seeds))}"]
    if result.metric_note:
        lines.append(f"note: {result.metric_note}")
    for arm in result.arms:
        lines.append("")
        lines.append(f"### {arm.label} (space: {arm.space_origin}: "
                     f"{'; '.join(f'{d.key} {d.describe()}' for d in arm.space.dims)})")
        lines.append("| trial | " + " | ".join(arm.space.keys) + f" | {result.metric} | status |")
        lines.append("| --- " * (len(arm.space.keys) + 3) + "|")
        for _, r in arm.trials.iterrows():
            mark = " **selected**" if arm.selected is not None and int(r["trial"]) == arm.selected else ""
            lines.append(f"| {int(r['trial'])}{mark} | " + " | ".join(_fmt(r[k]) for k in arm.space.keys)
                         + f" | {_fmt(float(r['value']))} | {r['status']} |")
        if arm.selected is None:
            lines.append("selected: none (no trial finished with a finite value)")
            continue
        lines.append(f"selected: trial {arm.selected}: {describe(arm.selected_point)}")
        if arm.final is not None and len(arm.final):
            done = arm.final[arm.final["status"] == "done"]
            cols = [c for c in arm.final.columns if c.startswith("metrics.")]
            parts = []
            for c in cols:
                vals = done[c].astype(float)
                sd = f" ± {vals.std(ddof=1):.3g}" if len(vals) > 1 else ""
                parts.append(f"{c.removeprefix('metrics.')} {vals.mean():.4g}{sd}")
            lines.append(f"final runs ({len(done)} of {len(arm.final)} done, mean ± sd over seeds): " + ", ".join(parts))
    if result.problems:
        lines.append("")
        lines.extend(f"not finished: {p}" for p in result.problems)
    return lines


def _seeds(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_FINAL_SEEDS)
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers such as 1000,1001,1002, got {text!r}") from None


def register(subparsers: Any) -> None:
    from benchmarks.engine import slurm_settings as slurm_module
    from benchmarks.engine.executors import EXECUTORS

    p = subparsers.add_parser(
        "tune", help="equal-budget tuning: N quasi-random trials per optimizer, select on validation, rerun",
        description=(
            "Tune each arm of CONFIG (its runs without the seed axis, e.g. each optimizer of a zip) with N points "
            "of a seeded scrambled Sobol sequence from its search space (--space FILE, the config's `search:`, "
            "or the registry's default space of the optimizer), select the trial with the best validation metric, "
            "and run the selected point at fresh seeds. Trials go to OUT/trials, final runs to OUT/final; a rerun "
            "resumes and --trials 8 reuses the 4 trials of --trials 4. See docs/tuning.md."),
        epilog="example: python -m benchmarks tune configs/demo/digits.yaml --trials 4 --out runs/tune-digits")
    p.add_argument("config", metavar="CONFIG", help="YAML config file")
    p.add_argument("--trials", type=int, required=True, metavar="N", help="trials per arm")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: runs/tune-<config stem>)")
    p.add_argument("--space", default=None, metavar="FILE", help="YAML search space (a `search:` mapping) for every arm")
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help=f"seeds of the final runs (default: {','.join(map(str, DEFAULT_FINAL_SEEDS))}; never the trial seed)")
    p.add_argument("--trial-seed", type=int, default=0, help="seed of every trial run (default: %(default)s)")
    p.add_argument("--qmc-seed", type=int, default=0, help="seed of the scrambled Sobol sequence (default: %(default)s)")
    p.add_argument("--metric", default=None, help="validation metric to select on (default: the task's)")
    p.add_argument("--baseline", default=None, metavar="ARM",
                   help="arm the others are compared with in the report (default: adamp if tuned, else the first)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a dotted key of CONFIG (as in `run`)")
    p.add_argument("--executor", choices=list(EXECUTORS), default="local", help="as in `run` (default: %(default)s)")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N", help="local executor: runs at once")
    p.add_argument("--smoke", action="store_true", help="every run at its task's smoke settings (seconds)")
    p.add_argument("--skip-data-check", action="store_true", help="as in `run`")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    slurm_module.add_cli_arguments(p)
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    import os

    from benchmarks.atomic import write_text_atomic
    from benchmarks.engine.sweep import load_file

    config = load_file(args.config, args.overrides)
    space = load_space(args.space) if args.space else None
    out = args.out or Path("runs") / f"tune-{Path(args.config).stem}{'-smoke' if args.smoke else ''}"
    options = {k: v for k, v in vars(args).items() if k not in ("func", "config", "overrides")}
    options["progress"] = not args.no_progress
    if args.no_progress:
        os.environ["BENCHMARKS_NO_PROGRESS"] = "1"
    result = run_tuning(config, trials=args.trials, out=out, space=space, executor=args.executor,
                        trial_seed=args.trial_seed, final_seeds=_seeds(args.seeds), qmc_seed=args.qmc_seed,
                        metric=args.metric, smoke=args.smoke, check_data=not args.skip_data_check,
                        options=options, source=str(args.config))
    lines = summary_lines(result)
    if result.complete:
        from benchmarks.workflows.tune_report import report_lines

        lines += report_lines(result, out, baseline=args.baseline)
    write_text_atomic(out / "tune.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nreport: {out / 'tune.md'}")
    if not result.complete and args.executor not in ("local", "debug"):
        print("runs are queued or running elsewhere: rerun the same command when they finished", file=sys.stderr)
        return 0
    return 0 if result.complete else 1


__all__ = ["ArmResult", "DEFAULT_FINAL_SEEDS", "TuneResult", "arms_of", "cmd_tune", "final_config", "load_space",
           "register", "run_tuning", "select_trial", "space_for", "summary_lines", "trials_config", "tuning_metric"]
