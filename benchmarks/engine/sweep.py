"""Planning and launching a sweep: config files -> resolved runs -> run ids -> skip finished -> executor.

Everything that can be wrong with a config is found in :func:`plan_sweep`, before anything is written or
launched. For each run config the order is: file (with ``base:`` merged and ``--set`` applied, so that
``--set grid.train.seed=[0,1]`` changes the grid) -> grid/zip expansion -> the task's smoke overrides
(``--smoke``) -> the ``--set`` overrides again (an override beats a grid value of the same key) -> resolution
and validation -> run id. Runs with the same id (e.g. a grid axis made moot by an override) are kept once.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks import store
from benchmarks.config.errors import ConfigError
from benchmarks.config.grid import describe_point, expand
from benchmarks.config.loader import AXIS_SECTIONS, load_config, parse_override, set_dotted
from benchmarks.config.validate import apply_smoke, recipe_warnings, resolve_config

from .spec import RunSpec, compute_run_id


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


def resolve_file(path: str | os.PathLike, overrides: Sequence[str] = (), smoke: bool = False
                 ) -> tuple[list[tuple[dict, dict]], list[str]]:
    """Load, expand and resolve one config file: ``([(resolved, grid point), ...], warnings)``.

    ConfigErrors name the file (and the grid point when the error is specific to one).
    """
    source = str(path)
    try:
        raw = load_config(path, overrides)
        parsed = [parse_override(o) for o in overrides]
        per_run = [(k, v) for k, v in parsed if k.split(".", 1)[0] not in AXIS_SECTIONS]
        expanded = expand(raw)
    except ConfigError as exc:
        raise exc.with_source(source) from None
    out: list[tuple[dict, dict]] = []
    warnings: dict[str, None] = {}
    warned_for: set[str] = set()
    for run, point in expanded:
        try:
            if smoke:
                run = apply_smoke(run)
            for key, value in per_run:
                set_dotted(run, key, json.loads(json.dumps(value)), source=f"--set {key}")
            resolved = resolve_config(run)
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
    return out, list(warnings)


def plan_sweep(configs: Sequence[str | os.PathLike], overrides: Sequence[str] = (), out_dir: str | os.PathLike | None = None,
               smoke: bool = False, retry_failed: bool = False) -> SweepPlan:
    """Validate every config and decide, per run, whether it runs or is skipped (finished before).

    ``done`` and ``diverged`` runs are skipped, ``failed`` ones too unless ``retry_failed``; runs that were
    ``running``/``interrupted``/``queued`` (e.g. the sweep was stopped) run again (resuming from a checkpoint
    when there is one). Nothing is written.
    """
    if not configs:
        raise ConfigError("no config file given")
    runs: list[PlannedRun] = []
    warnings: list[str] = []
    seen: set[tuple[Path, str]] = set()
    for config in configs:
        resolved_runs, file_warnings = resolve_file(config, overrides, smoke)
        warnings.extend(w for w in file_warnings if w not in warnings)
        out = Path(out_dir) if out_dir is not None else default_out_dir(config, smoke)
        ids = [compute_run_id(resolved) for resolved, _ in resolved_runs]
        statuses = store.run_statuses(out, ids)
        for (resolved, point), run_id in zip(resolved_runs, ids):
            if (out, run_id) in seen:
                continue
            seen.add((out, run_id))
            status = statuses.get(run_id)
            skip = status in store.FINISHED or (status == "failed" and not retry_failed)
            runs.append(PlannedRun(
                spec=RunSpec(run_id=run_id, config=resolved, out_dir=out, point=point),
                source=str(config), label=describe_point(point), status=status,
                action="skip" if skip else "run",
            ))
    return SweepPlan(runs=runs, warnings=warnings, configs=[str(c) for c in configs], overrides=list(overrides),
                     smoke=smoke, retry_failed=retry_failed)


def format_plan(plan: SweepPlan) -> Iterable[str]:
    """One line per run (``run``/``skip``, run id, previous status, grid point), then ``N runs (M already done)``."""
    for r in plan.runs:
        status = f"[{r.status}]" if r.status else "[new]"
        yield f"{r.action:4s} {r.spec.run_id}  {status:13s} {r.label}".rstrip()
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


__all__ = ["PlannedRun", "SweepPlan", "default_out_dir", "format_plan", "launch_sweep", "new_sweep_id",
           "plan_sweep", "resolve_file"]
