"""Planning and launching a sweep: config files -> resolved runs -> run ids -> skip finished -> executor.

Everything that can be wrong with a config is found in :func:`plan_sweep`, before anything is written or
launched. For each run config the order is: file (with ``base:`` merged and ``--set`` applied, so that
``--set grid.train.seed=[0,1]`` changes the grid) -> grid/zip expansion -> the task's smoke overrides
(``--smoke``) -> the ``--set`` overrides again (an override beats a grid value of the same key) -> resolution
and validation -> the task's own checks (``check_config``, and ``check_data`` for data folders and weight
files) -> run id. Runs with the same id (e.g. a grid axis made moot by an override) are kept once. Then the
whole file: tags that contradict the values they describe (:func:`benchmarks.config.compose.check_tags`).

A grid is counted before it is expanded: above ``max_runs`` (default :data:`DEFAULT_MAX_RUNS`) planning
stops with a ConfigError unless the caller lifts the limit (``--allow-large-grid``).
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks import store
from benchmarks.config.compose import check_tags
from benchmarks.config.errors import ConfigError
from benchmarks.config.grid import copy_tree, count_points, describe_point, iter_expand
from benchmarks.config.loader import AXIS_SECTIONS, load_config, parse_override, set_dotted
from benchmarks.config.validate import apply_smoke, recipe_warnings, resolve_config, task_class

from .spec import RunSpec, compute_run_id

#: a sweep of more runs than this needs ``max_runs=None`` (the CLI's --allow-large-grid)
DEFAULT_MAX_RUNS = 10_000


@dataclass
class PlannedRun:
    """One run of a plan and what will happen to it."""

    spec: RunSpec
    source: str  # config file it came from
    label: str  # the grid point, e.g. "optimizer.name=sgd train.seed=1"
    status: str | None  # status of an existing record (None: never started)
    action: str  # "run" | "skip"


@dataclass
class SweepPlan:
    """Every run of the given config files, validated, with its id and whether it will be (re)run."""

    runs: list[PlannedRun]
    warnings: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    smoke: bool = False
    retry_failed: bool = False

    @property
    def to_run(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.action == "run"]

    @property
    def skipped(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.action == "skip"]

    @property
    def out_dirs(self) -> list[Path]:
        seen: dict[Path, None] = {}
        for r in self.runs:
            seen.setdefault(r.spec.out_dir, None)
        return list(seen)


def default_out_dir(config_path: str | os.PathLike, smoke: bool = False) -> Path:
    """``runs/<config stem>`` (``runs/<stem>-smoke`` for --smoke runs, so they never mix with real ones)."""
    stem = Path(config_path).stem
    return Path("runs") / (f"{stem}-smoke" if smoke else stem)


def check_out_dir(out: str | os.PathLike) -> None:
    """OUT must be a writable folder, or a path where one can be created; a ConfigError says why not.

    Checked while planning (also for --dry-run), so that a bad --out is one line, not a traceback later.
    """
    out = Path(out)
    probe = out
    while not probe.exists():
        if probe.is_symlink():
            raise ConfigError(f"results folder {out}: {probe} is a broken symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = f"{out} is a file" if probe == out else f"{probe} (a parent of {out}) is a file"
        raise ConfigError(f"results folder: {what}, not a folder; pass --out DIR with a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        what = f"{out} is" if probe == out else f"{probe} (where {out} would be created) is"
        raise ConfigError(f"results folder: {what} not writable; pass --out DIR with a folder you can write")
    for sub in (store.RUNS_DIR, store.SWEEPS_DIR):
        path = out / sub
        if os.path.lexists(path) and not path.is_dir():
            raise ConfigError(f"results folder {out}: {path} is {_kind(path)}, where the suite keeps a folder; "
                              f"move it away (or pass another --out)")


def _kind(path: Path) -> str:
    """``a file``, ``a FIFO (named pipe)``, ``a broken symbolic link``, ``a symbolic link loop``, ..."""
    from benchmarks.safe_read import kind_of

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return "a symbolic link loop" if exc.errno == errno.ELOOP else "a broken symbolic link"
    return kind_of(mode)


def check_run_folders(plan: "SweepPlan") -> None:
    """A run to (re)run must be writable where it lives: its folder a folder and its record.json not a
    folder (the atomic rewrite of a truncated or wrong-typed record replaces a file, never a folder)."""
    problems = []
    for r in plan.to_run:
        run_dir = r.spec.run_dir
        if os.path.lexists(run_dir) and not run_dir.is_dir():
            problems.append(f"{run_dir} is {_kind(run_dir)}, not a run folder")
        elif (run_dir / store.RECORD).is_dir():
            problems.append(f"{run_dir / store.RECORD} is a folder, not a record")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ConfigError(f"{len(problems)} run(s) cannot be written where they live: {shown}; move them away "
                          f"and rerun")


def _data_key(resolved: Mapping[str, Any]) -> str:
    return json.dumps([resolved["task"], resolved["data"], resolved["model"]], sort_keys=True, default=str)


def _validate_slurm(resolved: Mapping[str, Any]) -> None:
    section = resolved.get("slurm")
    if section:
        from .slurm_settings import validate_settings

        validate_settings(section, "slurm")


def load_file(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """The raw config of one file (bases merged, ``--set`` applied, grid/zip not expanded)."""
    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        raise exc.with_source(str(path)) from None


def resolve_file(path: str | os.PathLike, overrides: Sequence[str] = (), smoke: bool = False,
                 check_data: bool = True, raw: Mapping[str, Any] | None = None
                 ) -> tuple[list[tuple[dict, dict]], list[str]]:
    """Load, expand, resolve and check one config file: ``([(resolved, grid point), ...], warnings)``.

    Every run goes through the task's ``check_config`` and (``check_data``) ``check_data``. ConfigErrors
    name the file (and the grid point when the error is specific to one).
    """
    source = str(path)
    try:
        if raw is None:
            raw = load_config(path, overrides)
        parsed = [parse_override(o) for o in overrides]
        per_run = [(k, v) for k, v in parsed if k.split(".", 1)[0] not in AXIS_SECTIONS]
        expanded = iter_expand(raw)
        first = next(expanded, None)
    except ConfigError as exc:
        raise exc.with_source(source) from None
    out: list[tuple[dict, dict]] = []
    warnings: dict[str, None] = {}
    warned_for: set[str] = set()
    data_checked: set[str] = set()
    checked_classes: set[type] = set()
    for run, point in itertools.chain([first] if first is not None else [], expanded):
        try:
            configured = None
            if smoke:
                # the data and weights to check are the configured ones, whatever the smoke settings shrink
                configured = copy_tree(run)
                for key, value in per_run:
                    set_dotted(configured, key, json.loads(json.dumps(value)), source=f"--set {key}")
                run = apply_smoke(run)
            for key, value in per_run:
                set_dotted(run, key, json.loads(json.dumps(value)), source=f"--set {key}")
            resolved = resolve_config(run)
            _validate_slurm(resolved)
            cls = task_class(resolved["task"])
            checked_classes.add(cls)
            cls.check_config(resolved)
            if check_data:
                target = resolved if configured is None else resolve_config(configured)
                key = _data_key(target)
                if key not in data_checked:
                    cls.check_data(resolved)
                    if target is not resolved:
                        cls.check_data(target)
                    data_checked.add(key)
            raw_opt = run.get("optimizer") or {}
            key = repr(sorted(raw_opt.items(), key=lambda item: repr(item[0]))) if isinstance(raw_opt, dict) \
                else repr(raw_opt)
            if key not in warned_for:
                warned_for.add(key)
                for w in recipe_warnings(resolved, raw_opt):
                    warnings.setdefault(f"{source}: {w}", None)
        except ConfigError as exc:
            label = describe_point(point)
            message = exc.message + (f" (grid point: {label})" if label else "")
            raise ConfigError(message, source=exc.source or source) from None
        out.append((resolved, point))
    try:
        check_tags([r for r, _ in out], overridden=[k for k, _ in per_run])
    except ConfigError as exc:
        raise exc.with_source(source) from None
    return out, list(warnings)


def plan_sweep(configs: Sequence[str | os.PathLike], overrides: Sequence[str] = (), out_dir: str | os.PathLike | None = None,
               smoke: bool = False, retry_failed: bool = False, *, max_runs: int | None = DEFAULT_MAX_RUNS,
               check_data: bool = True) -> SweepPlan:
    """Validate every config and decide, per run, whether it runs or is skipped (finished before).

    ``done`` and ``diverged`` runs are skipped, ``failed`` ones too unless ``retry_failed``; runs that were
    ``running``/``interrupted``/``queued`` (e.g. the sweep was stopped) run again (resuming from a checkpoint
    when there is one). Nothing is written. More than ``max_runs`` grid points over all files is a
    ConfigError (None: no limit); ``check_data=False`` skips the tasks' on-disk checks.
    """
    if not configs:
        raise ConfigError("no config file given")
    raws = [load_file(config, overrides) for config in configs]
    sizes = []
    for config, raw in zip(configs, raws):
        try:
            sizes.append(count_points(raw))
        except ConfigError as exc:
            raise exc.with_source(str(config)) from None
    total = sum(sizes)
    if max_runs is not None and total > max_runs:
        per_file = ", ".join(f"{c}: {n:,}" for c, n in zip(configs, sizes))
        raise ConfigError(
            f"the grid expands to {total:,} runs ({per_file}), more than the limit of {max_runs:,}; check the "
            f"grid/zip lists, or pass --allow-large-grid to plan and launch it anyway (--max-runs N sets the limit)")
    for config in configs:
        check_out_dir(Path(out_dir) if out_dir is not None else default_out_dir(config, smoke))
    runs: list[PlannedRun] = []
    warnings: list[str] = []
    seen: set[tuple[Path, str]] = set()
    for config, raw in zip(configs, raws):
        resolved_runs, file_warnings = resolve_file(config, overrides, smoke, check_data=check_data, raw=raw)
        warnings.extend(w for w in file_warnings if w not in warnings)
        out = Path(out_dir) if out_dir is not None else default_out_dir(config, smoke)
        ids = [compute_run_id(resolved) for resolved, _ in resolved_runs]
        statuses = store.run_statuses(out, ids)
        for (resolved, point), run_id in zip(resolved_runs, ids):
            if (out, run_id) in seen:
                continue
            seen.add((out, run_id))
            status = statuses.get(run_id)
            if status is None and os.path.lexists(out / store.RUNS_DIR / run_id / store.RECORD):
                status = store.UNREADABLE  # damaged: run again, and the rerun rewrites it
            skip = status in store.FINISHED or (status == "failed" and not retry_failed)
            runs.append(PlannedRun(
                spec=RunSpec(run_id=run_id, config=resolved, out_dir=out, point=point),
                source=str(config), label=describe_point(point), status=status,
                action="skip" if skip else "run",
            ))
    plan = SweepPlan(runs=runs, warnings=warnings, configs=[str(c) for c in configs], overrides=list(overrides),
                     smoke=smoke, retry_failed=retry_failed)
    check_run_folders(plan)
    return plan


#: a dry run lists at most this many runs unless asked for all (the head and the tail of the plan)
LIST_LIMIT = 200


def _plan_line(r: PlannedRun) -> str:
    status = f"[{r.status}]" if r.status else "[new]"
    return f"{r.action:4s} {r.spec.run_id}  {status:13s} {r.label}".rstrip()


def format_plan(plan: SweepPlan, limit: int | None = LIST_LIMIT) -> Iterable[str]:
    """One line per run (``run``/``skip``, run id, previous status, grid point), then ``N runs (M already done)``.

    Above ``limit`` runs only the first and last ``limit // 2`` are listed, with a line saying how many were
    left out (``limit=None`` lists all).
    """
    runs = plan.runs
    if limit is not None and len(runs) > limit:
        head, tail = limit // 2, limit - limit // 2
        yield from (_plan_line(r) for r in runs[:head])
        yield f"... {len(runs) - head - tail:,} more runs not listed (--list-all lists every run) ..."
        yield from (_plan_line(r) for r in runs[-tail:])
    else:
        yield from (_plan_line(r) for r in runs)
    yield plan_summary(plan)


def plan_summary(plan: SweepPlan) -> str:
    """``N runs (M already done)``, naming the failed runs that are skipped unless ``--retry-failed``."""
    failed = sum(1 for r in plan.skipped if r.status == "failed")
    extra = f"; {failed} failed, rerun them with --retry-failed" if failed else ""
    return f"{len(plan.runs)} runs ({len(plan.skipped) - failed} already done{extra})"


def new_sweep_id() -> str:
    """``YYYYmmdd-HHMMSS-<6 hex>``: sortable, and unique across concurrent launches."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def launch_sweep(plan: SweepPlan, executor: str = "local", options: Mapping[str, Any] | None = None,
                 argv: Sequence[str] | None = None) -> dict[Path, Path]:
    """Write the manifest(s), hand the runs to the executor, update the manifest(s); return {OUT: manifest}.

    The manifest is written before launching (status ``launching``) so that a sweep killed halfway is still
    described on disk, and rewritten with the executor's entries (job ids, log paths) afterwards.
    """
    from .executors import get_executor

    options = dict(options or {})
    runner = get_executor(executor, options)
    specs = [r.spec for r in plan.to_run]
    runner.preflight(specs)  # e.g. SLURM answers: checked before anything is written or frozen
    sweep_id = new_sweep_id()
    outs = plan.out_dirs
    sweep_dir = (outs[0] if outs else Path(".")) / store.SWEEPS_DIR / sweep_id
    sweep_dir.mkdir(parents=True, exist_ok=True)
    base = {
        "sweep_id": sweep_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": list(argv) if argv is not None else sys.argv[1:],
        "configs": plan.configs,
        "overrides": plan.overrides,
        "smoke": plan.smoke,
        "retry_failed": plan.retry_failed,
        "executor": executor,
        "options": {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "sweep_dir": str(sweep_dir),
    }

    def write(status: str, entries_by_id: Mapping[str, dict]) -> dict[Path, Path]:
        paths = {}
        for out in outs:
            mine = [r for r in plan.runs if r.spec.out_dir == out]
            manifest = {
                **base,
                "status": status,
                "out_dir": str(out),
                "runs": [entries_by_id.get(r.spec.run_id, {"run_id": r.spec.run_id, "executor": executor,
                                                         "job_id": None, "log": None})
                         for r in mine if r.action == "run"],
                "skipped": [{"run_id": r.spec.run_id, "status": r.status} for r in mine if r.action == "skip"],
            }
            paths[out] = store.write_manifest(out, sweep_id, manifest)
        return paths

    write("launching", {})
    try:
        entries = runner.launch(specs, sweep_dir)
    except KeyboardInterrupt:
        write("interrupted", {})
        raise
    return write("launched", {e["run_id"]: e for e in entries})


__all__ = ["DEFAULT_MAX_RUNS", "PlannedRun", "SweepPlan", "check_out_dir", "default_out_dir", "format_plan",
           "launch_sweep", "load_file", "new_sweep_id", "plan_sweep", "resolve_file"]
