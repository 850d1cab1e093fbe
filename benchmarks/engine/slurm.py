"""Run a sweep on SLURM through submitit: one job array, frozen code, preemption-safe, exactly resumable.

``SlurmExecutor.launch`` submits every run of a sweep as ONE job array (split only where the cluster's
``MaxArraySize`` forces it) and returns at once. Each array task runs :class:`SlurmRun`, a submitit
``Checkpointable``: on the pre-timeout / preemption signal it asks the training loop to write a checkpoint
and requeues itself, and every (re)start of a run resumes from ``load_latest_checkpoint(run_dir)``, which the
loop does by itself. The code the jobs import is a copy made at submit time (``<sweep_dir>/code/<stamp>``),
so editing the checkout while jobs wait in the queue changes nothing.

This module is the submission; the rest of the SLURM executor lives beside it:
:mod:`benchmarks.engine.slurm_settings` (the ``slurm:`` section and the ``run`` command's flags, which
override it), :mod:`benchmarks.engine.slurm_cluster` (is a controller answering, ``MaxArraySize``),
:mod:`benchmarks.engine.slurm_job` (:class:`SlurmRun`, what each array task runs: checkpoint on signal,
requeue) and :mod:`benchmarks.engine.slurm_status` (pending/running/requeued/done/failed per run for
``status DIR``, asking sacct or squeue at most every 30 s).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import submitit

from benchmarks.config.errors import ConfigError
from benchmarks.engine.executors import Executor
from benchmarks.engine.slurm_cluster import max_array_size, slurm_unavailable
from benchmarks.engine.slurm_job import SlurmRun
from benchmarks.engine.slurm_settings import merge_settings, settings_from_options
from benchmarks.engine.slurm_status import RUNNING_STATES, query_squeue
from benchmarks.engine.spec import RunSpec

__all__ = ["SlurmExecutor", "snapshot_code"]

# -- code snapshot ---------------------------------------------------------------------------------------

_SNAPSHOT_PACKAGES = ("benchmarks", "adamp")


def _referenced_packages(specs: Iterable[RunSpec]) -> list[str]:
    """Top-level packages named by ``task: pkg.module:Class`` / ``optimizer.name: pkg.module:Class``."""
    names: list[str] = []
    for spec in specs:
        targets = [spec.config.get("task"), (spec.config.get("optimizer") or {}).get("name")]
        for target in targets:
            if isinstance(target, str) and ":" in target and not target.startswith("timm:"):
                top = target.partition(":")[0].split(".")[0]
                if top and top not in names:
                    names.append(top)
    return names


def _is_installed(path: Path) -> bool:
    """Whether ``path`` lies in an installed location (site-packages, the stdlib), not in a checkout."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    resolved = path.resolve()
    return any(resolved.is_relative_to(Path(r).resolve()) for r in roots if r)


def snapshot_code(sweep_dir: Path, packages: Sequence[str] = _SNAPSHOT_PACKAGES) -> Path:
    """Copy the project's packages to ``<sweep_dir>/code/<timestamp>`` and return that folder.

    Jobs put this folder first on their import path, so runs waiting in the queue execute the code as it
    was when the sweep was submitted, not whatever the checkout holds when they start. Packages that are
    installed (site-packages) are not copied: they do not change when the checkout is edited.
    """
    import importlib

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    dest = Path(sweep_dir) / "code" / stamp
    dest.parent.mkdir(parents=True, exist_ok=True)
    # copied under a temporary name and renamed, so a half-copied snapshot is never used
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".partial-"))
    try:
        for name in dict.fromkeys(packages):
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                if name in _SNAPSHOT_PACKAGES:
                    continue
                raise ConfigError(f"the config names a class in package `{name}`, which cannot be imported "
                                  f"here: {exc}") from exc
            source = Path(module.__file__ or "")
            if not module.__file__ or _is_installed(source):
                continue
            if source.name == "__init__.py":
                shutil.copytree(source.parent, tmp / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*"))
            else:
                shutil.copy2(source, tmp / source.name)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# -- the executor ----------------------------------------------------------------------------------------


class SlurmExecutor(Executor):
    """Submit a sweep as one SLURM job array through submitit and return without waiting.

    ``options`` are the ``run`` command's options (argparse dests): the ``slurm_*`` flags of
    :func:`add_cli_arguments` override each spec's ``config["slurm"]`` section. Specs whose sections differ
    go into separate arrays. Also read: ``slurm_cluster`` ("slurm", or "debug" to run the same submission
    path in this process through submitit's DebugExecutor, for tests), ``slurm_snapshot`` (default True),
    ``slurm_max_array_size`` (default: the cluster's MaxArraySize).
    """

    name = "slurm"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.cli_settings = settings_from_options(self.options)
        merge_settings(None, self.cli_settings)  # bad flags fail here, before anything is submitted
        self.cluster = str(self.options.get("slurm_cluster") or "slurm")
        if self.cluster not in ("slurm", "debug"):
            raise ValueError(f"slurm_cluster must be 'slurm' or 'debug', got {self.cluster!r}")
        self.snapshot = bool(self.options.get("slurm_snapshot", True))
        self._max_array = self.options.get("slurm_max_array_size")
        self.jobs: list = []  # submitit Job objects of the last launch (tests, callers that want to wait)

    def settings_for(self, spec: RunSpec) -> dict[str, Any]:
        """The merged SLURM settings of one run: defaults <- its config's slurm: section <- CLI flags."""
        try:
            return merge_settings(spec.config.get("slurm"), self.cli_settings)
        except ConfigError as exc:
            raise ConfigError(f"{exc.message} (run {spec.run_id})", source=exc.source) from None

    # submitit parameters -------------------------------------------------------------------------------
    @staticmethod
    def submitit_parameters(settings: Mapping[str, Any], code_dir: Path | None) -> dict[str, Any]:
        """submitit.SlurmExecutor parameters for merged ``settings`` (code snapshot on the import path)."""
        s = settings
        params: dict[str, Any] = {
            "job_name": s["job_name"],
            "time": s["time"],
            "nodes": s["nodes"],
            "ntasks_per_node": s["tasks_per_node"],
            "cpus_per_task": s["cpus_per_task"],
            "array_parallelism": s["array_parallelism"],
            "signal_delay_s": s["signal_delay_s"],
            "stderr_to_stdout": False,
        }
        for key in ("partition", "account", "qos", "constraint", "gpus_per_node"):
            if s.get(key) is not None:
                params[key] = s[key]
        extra = dict(s.get("sbatch_extra") or {})
        if s.get("mem") is not None and "mem" not in extra:
            mem = s["mem"]
            if isinstance(mem, (int, float)):
                extra["mem"] = f"{int(mem)}G" if float(mem).is_integer() else f"{int(float(mem) * 1024)}M"
            else:
                extra["mem"] = str(mem).replace(" ", "").upper().removesuffix("B")
        if extra:
            params["additional_parameters"] = extra
        setup = list(s.get("setup") or [])
        if code_dir is not None:
            setup.append(f"export PYTHONPATH={shlex.quote(str(code_dir))}${{PYTHONPATH:+:$PYTHONPATH}}")
        if setup:
            params["setup"] = setup
        return params

    def _make_executor(self, folder: Path, settings: Mapping[str, Any], code_dir: Path | None) -> Any:
        if self.cluster == "debug":
            return submitit.DebugExecutor(folder)
        python = shlex.quote(sys.executable)
        if code_dir is not None and sys.version_info >= (3, 11):
            # -P: `python -m` must not put the submit directory (the live checkout) ahead of the snapshot
            python += " -P"
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=settings["max_requeues"], python=python)
        executor.update_parameters(**self.submitit_parameters(settings, code_dir))
        return executor

    def _array_limit(self) -> int:
        if self._max_array:
            return max(1, int(self._max_array))
        return max_array_size() if self.cluster == "slurm" else 1_000_000

    def preflight(self, specs: list[RunSpec]) -> None:
        """SLURM must answer before anything is written or the code frozen: ``sbatch`` on PATH and a
        controller that replies to ``scontrol ping`` (one-line ConfigError otherwise, exit 2)."""
        if self.cluster != "slurm" or not specs:
            return
        problem = slurm_unavailable()
        if problem:
            raise ConfigError(f"--executor slurm: {problem}; nothing was submitted or written")

    def launch(self, specs: list[RunSpec], sweep_dir: Path) -> list[dict]:
        """Submit ``specs`` as one job array per distinct ``slurm:`` section (split at MaxArraySize).

        Runs whose job from an earlier launch is still pending or running are not submitted again: their
        entry points to that job. Returns one manifest entry per spec, in order.
        """
        self.jobs = []
        if not specs:
            return []
        sweep_dir = Path(sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        groups: dict[str, tuple[dict[str, Any], list[RunSpec]]] = {}
        for spec in specs:
            settings = self.settings_for(spec)
            key = json.dumps(settings, sort_keys=True, default=str)
            groups.setdefault(key, (settings, []))[1].append(spec)
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise RuntimeError("--executor slurm needs SLURM's sbatch on PATH and none was found (a local test "
                               "cluster: sudo bash scripts/slurm_local.sh up)")
        active = _active_jobs(specs) if self.cluster == "slurm" else {}
        code_dir = None
        if self.snapshot and self.cluster == "slurm":
            code_dir = snapshot_code(sweep_dir, _SNAPSHOT_PACKAGES + tuple(_referenced_packages(specs)))
        folder = sweep_dir / "slurm" / "%j"
        limit = self._array_limit()
        by_id: dict[str, dict] = {}
        arrays: list[str] = []
        for settings, group in groups.values():
            todo = [spec for spec in group if spec.run_id not in active]
            for spec in group:
                if spec.run_id in active:
                    by_id[spec.run_id] = {**active[spec.run_id], "run_id": spec.run_id, "executor": self.name}
            if not todo:
                continue
            executor = self._make_executor(folder, settings, code_dir)
            # the watchdog must fire before SLURM's hard kill at the time limit
            job_fn = SlurmRun(str(code_dir) if code_dir else None, grace_s=settings["signal_delay_s"] / 2)
            for start in range(0, len(todo), limit):
                part = todo[start:start + limit]
                jobs = executor.map_array(job_fn, part)
                self.jobs.extend(jobs)
                arrays.append(str(jobs[0].job_id).split("_")[0])
                for spec, job in zip(part, jobs):
                    by_id[spec.run_id] = {**self.entry(spec, job_id=str(job.job_id), log=job.paths.stdout),
                                          "stderr": str(job.paths.stderr)}
        entries = [by_id[spec.run_id] for spec in specs]
        if self.cluster == "slurm":
            self._announce(entries, arrays, active, code_dir)
        return entries

    @staticmethod
    def _announce(entries: list[dict], arrays: list[str], active: Mapping[str, Any], code_dir: Path | None) -> None:
        if arrays:
            new = [e for e in entries if e["run_id"] not in active]
            print(f"slurm: submitted {len(new)} runs as job array{'s' if len(arrays) > 1 else ''} "
                  f"{', '.join(arrays)} (code frozen in {code_dir})", file=sys.stderr, flush=True)
            print(f"slurm: logs {Path(new[0]['log']).parent}/<job id>_0_log.out|.err, e.g. {new[0]['log']}",
                  file=sys.stderr, flush=True)
            print(f"slurm: watch with `squeue -j {','.join(arrays)}` or `python -m benchmarks status OUT`",
                  file=sys.stderr, flush=True)
        if active:
            print(f"slurm: {len(active)} runs still pending/running from an earlier launch were not submitted "
                  "again", file=sys.stderr, flush=True)


def _active_jobs(specs: Sequence[RunSpec]) -> dict[str, dict]:
    """Runs of ``specs`` whose SLURM job from an earlier launch is still pending or running."""
    from benchmarks import store

    wanted = {(Path(s.out_dir), s.run_id) for s in specs}
    candidates: dict[str, dict] = {}
    for out in {Path(s.out_dir) for s in specs}:
        for manifest in store.list_manifests(out):
            for entry in manifest.get("runs") or []:
                if (out, entry.get("run_id")) in wanted and entry.get("executor") == "slurm" and entry.get("job_id"):
                    candidates[entry["run_id"]] = entry  # later manifests win
    if not candidates:
        return {}
    rows = query_squeue(str(e["job_id"]).split("_")[0] for e in candidates.values()) or {}
    active = {}
    for run_id, entry in candidates.items():
        row = rows.get(str(entry["job_id"])) or {}
        if not (row.get("state") == "PENDING" or row.get("state") in RUNNING_STATES):
            continue
        # job ids get reused (a reinstalled cluster starts again at 1): the job must be the one submitted
        # from this sweep's folder, whose batch script submitit wrote into <sweep_dir>/slurm/
        command, log = row.get("command"), entry.get("log")
        if command and log and Path(command).parent != Path(log).parents[1]:
            continue
        active[run_id] = {k: entry.get(k) for k in ("job_id", "log", "stderr")}
    return active
