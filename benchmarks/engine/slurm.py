"""Run a sweep on SLURM through submitit: one job array, frozen code, preemption-safe, exactly resumable.

``SlurmExecutor.launch`` submits every run of a sweep as ONE job array (split only where the cluster's
``MaxArraySize`` forces it) and returns at once. Each array task runs :class:`SlurmRun`, a submitit
``Checkpointable``: on the pre-timeout / preemption signal it asks the training loop to write a checkpoint
and requeues itself, and every (re)start of a run resumes from ``load_latest_checkpoint(run_dir)``, which the
loop does by itself. The code the jobs import is a copy made at submit time (``<sweep_dir>/code/<stamp>``),
so editing the checkout while jobs wait in the queue changes nothing.

Settings come from the config's ``slurm:`` section, overridden by the ``run`` command's flags
(:func:`add_cli_arguments`, :func:`settings_from_args`); :data:`SETTINGS` lists every key.
``slurm_status`` reports pending/running/requeued/done/failed per run for ``status DIR``, asking
sacct (or squeue) at most every 30 s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import submitit

from benchmarks.config.errors import ConfigError, unknown_key_message
from benchmarks.engine.executors import Executor
from benchmarks.engine.spec import RunSpec, execute_run

__all__ = [
    "SETTINGS",
    "SlurmExecutor",
    "SlurmRun",
    "add_cli_arguments",
    "max_array_size",
    "merge_settings",
    "settings_from_args",
    "settings_from_options",
    "slurm_status",
    "slurm_status_report",
    "snapshot_code",
    "validate_settings",
]

# -- settings ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    kind: str  # "str" | "int" | "time" | "mem" | "extra" | "lines"
    help: str
    default: Any = None


#: every key of the ``slurm:`` config section (CLI flag: ``--`` + key with ``-`` for ``_``)
SETTINGS: dict[str, _Setting] = {
    "partition": _Setting("str", "partition to submit to (sbatch --partition)"),
    "account": _Setting("str", "account to charge (sbatch --account)"),
    "qos": _Setting("str", "quality of service (sbatch --qos)"),
    "time": _Setting("time", "time limit per job: minutes, or [D-]HH:MM[:SS] as in sbatch", 60),
    "gpus_per_node": _Setting("int", "GPUs per node; with tasks_per_node > 1 one DDP process per GPU"),
    "cpus_per_task": _Setting("int", "CPUs per task (torch threads default to this)", 1),
    "mem": _Setting("mem", "memory per node: a number of GB, or sbatch syntax such as 16G or 16000M"),
    "constraint": _Setting("str", "node features (sbatch --constraint)"),
    "array_parallelism": _Setting("int", "at most this many array tasks run at once (sbatch --array=...%%N)", 256),
    "nodes": _Setting("int", "nodes per run", 1),
    "tasks_per_node": _Setting("int", "processes per node (torch DDP ranks)", 1),
    "sbatch_extra": _Setting("extra", "other sbatch options, {key: value}; true for a flag without value "
                                      "(--sbatch-extra key=value, --sbatch-extra exclusive)"),
    "setup": _Setting("lines", "shell lines run in the batch script before the job (module load ...)"),
    "signal_delay_s": _Setting("int", "seconds before the time limit at which the job checkpoints and requeues", 120),
    "max_requeues": _Setting("int", "how many time-limit requeues a run may use (preemptions do not count)", 10),
    "job_name": _Setting("str", "job name shown by squeue", "benchmarks"),
}

_CLI_FLAGS = (
    "partition", "account", "qos", "time", "gpus_per_node", "cpus_per_task", "mem", "constraint",
    "array_parallelism", "sbatch_extra", "nodes", "tasks_per_node",
)


def add_cli_arguments(run_parser: argparse.ArgumentParser) -> None:
    """Add the SLURM flags (used with ``--executor slurm``) to the ``run`` sub-command's parser.

    Every flag defaults to None ("not given") so that :func:`merge_settings` lets the config's ``slurm:``
    section decide unless the flag is given.
    """
    group = run_parser.add_argument_group("SLURM (with --executor slurm; a flag overrides the config's slurm:)")
    for key in _CLI_FLAGS:
        setting = SETTINGS[key]
        flag = "--" + key.replace("_", "-")
        dest = "slurm_" + key
        if setting.kind == "extra":
            group.add_argument(flag, dest=dest, action="append", metavar="KEY=VALUE", default=None,
                               help=setting.help + "; repeatable")
        elif setting.kind == "int":
            group.add_argument(flag, dest=dest, type=int, metavar="N", default=None, help=setting.help)
        else:
            group.add_argument(flag, dest=dest, default=None, metavar=key.upper(), help=setting.help)


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The SLURM settings given on the command line (only those given)."""
    return settings_from_options(vars(args))


def settings_from_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The SLURM settings in a mapping of argparse dests (``slurm_partition``, ...); only those set."""
    out: dict[str, Any] = {}
    for key in _CLI_FLAGS:
        value = options.get("slurm_" + key)
        if value is None:
            continue
        if SETTINGS[key].kind == "extra":
            if isinstance(value, Mapping):
                out[key] = dict(value)
                continue
            extra: dict[str, str] = {}
            for item in ([value] if isinstance(value, str) else value):
                name, _, val = str(item).partition("=")
                name = name.strip().lstrip("-")
                if not name:
                    raise ConfigError(f"--sbatch-extra expects KEY=VALUE or KEY (a flag such as exclusive), "
                                      f"got {item!r}")
                extra[name] = val if val != "" else True  # `--sbatch-extra exclusive`: a flag without value
            value = extra
        out[key] = value
    return out


_TIME_RE = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_MEM_RE = re.compile(r"^\d+(?:\.\d+)?\s*(?:[KMGT]B?)?$", re.IGNORECASE)


def _time_minutes(value: Any, where: str) -> int:
    """Minutes of a time limit given as minutes or in sbatch's [D-]HH:MM[:SS] / MM:SS formats."""
    if isinstance(value, bool):
        raise ConfigError(f"`{where}` must be minutes or [D-]HH:MM[:SS], got {value!r}")
    if isinstance(value, (int, float)):
        minutes = float(value)
    else:
        match = _TIME_RE.match(str(value).strip())
        if not match:
            raise ConfigError(f"`{where}` must be minutes (e.g. 90) or [D-]HH:MM[:SS] (e.g. 1-12:00:00), got {value!r}")
        d, a, b, c = (int(match.group(g)) if match.group(g) else None for g in "dabc")
        if d is not None:  # D-HH[:MM[:SS]]
            minutes = d * 1440 + a * 60 + (b or 0) + (c or 0) / 60
        elif c is not None:  # HH:MM:SS
            minutes = a * 60 + b + c / 60
        elif b is not None:  # MM:SS, as sbatch reads it
            minutes = a + b / 60
        else:
            minutes = a
    if minutes <= 0:
        raise ConfigError(f"`{where}` must be positive, got {value!r}")
    return max(1, int(round(minutes)))


def validate_settings(settings: Mapping[str, Any], source: str = "slurm") -> dict[str, Any]:
    """Check and normalise a ``slurm:`` section; raise ConfigError naming the key and what is valid."""
    if not isinstance(settings, Mapping):
        raise ConfigError(f"`{source}` must be a mapping of SLURM settings, got {type(settings).__name__}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        where = f"{source}.{key}"
        if key not in SETTINGS:
            raise ConfigError(unknown_key_message(str(key), source, SETTINGS))
        kind = SETTINGS[key].kind
        if value is None:
            continue
        if kind == "str":
            if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
                raise ConfigError(f"`{where}` must be a non-empty string, got {value!r}")
            value = str(value)
        elif kind == "int":
            low = 0 if key == "gpus_per_node" else 1
            try:
                ok = not isinstance(value, bool) and int(value) == float(value) and int(value) >= low
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"`{where}` must be a whole number >= {low}, got {value!r}")
            value = int(value)
        elif kind == "time":
            value = _time_minutes(value, where)
        elif kind == "mem":
            if isinstance(value, bool) or not (isinstance(value, (int, float)) or _MEM_RE.match(str(value).strip())):
                raise ConfigError(f"`{where}` must be GB as a number (e.g. 16) or sbatch syntax (16G, 16000M), "
                                  f"got {value!r}")
            if isinstance(value, (int, float)) and value <= 0:
                raise ConfigError(f"`{where}` must be positive, got {value!r}")
        elif kind == "extra":
            if not isinstance(value, Mapping):
                raise ConfigError(f"`{where}` must be a mapping of sbatch option -> value, e.g. {{exclusive: true}}")
            value = {str(k).lstrip("-").replace("_", "-"): v for k, v in value.items()}
        elif kind == "lines":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"`{where}` must be a list of shell lines, got {value!r}")
            value = list(value)
        out[key] = value
    return out


def merge_settings(config_section: Mapping[str, Any] | None, cli: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults <- the config's ``slurm:`` section <- the CLI flags (``sbatch_extra`` merges key by key)."""
    merged = {k: s.default for k, s in SETTINGS.items() if s.default is not None}
    section = validate_settings(config_section or {}, "slurm")
    flags = validate_settings(cli or {}, "command line SLURM flags")
    for layer in (section, flags):
        for key, value in layer.items():
            if key == "sbatch_extra":
                merged["sbatch_extra"] = {**merged.get("sbatch_extra", {}), **value}
            else:
                merged[key] = value
    return merged


# -- cluster facts -----------------------------------------------------------------------------------

_CLUSTER_CONFIG: dict[str, str] | None = None


def _scontrol_config() -> dict[str, str]:
    global _CLUSTER_CONFIG
    if _CLUSTER_CONFIG is None:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"`scontrol show config` failed ({proc.returncode}): {proc.stderr.strip()}")
        config: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                config[key.strip()] = value.strip()
        _CLUSTER_CONFIG = config
    return _CLUSTER_CONFIG


#: seconds ``scontrol ping`` may take before SLURM counts as unavailable
PING_TIMEOUT_S = 20.0


def slurm_unavailable() -> str | None:
    """Why SLURM cannot take jobs from here (no ``sbatch``, no controller answering), or None."""
    if shutil.which("sbatch") is None:
        return ("SLURM's sbatch is not on PATH (a local test cluster: sudo bash scripts/slurm_local.sh up; "
                "or run here with --executor local)")
    if shutil.which("scontrol") is None:
        return None  # cannot ask; sbatch itself will tell
    try:
        result = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no SLURM controller answered `scontrol ping` within {PING_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"`scontrol ping` could not run: {exc}"
    text = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "DOWN" in text or " UP" not in text:
        first = text.splitlines()[0] if text else f"exit status {result.returncode}"
        return f"no SLURM controller is answering (`scontrol ping`: {first})"
    return None


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indices run 0..MaxArraySize-1); read once per process."""
    value = _scontrol_config().get("MaxArraySize", "1001")
    try:
        return max(1, int(value))
    except ValueError:
        return 1001


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


# -- what each array task runs ---------------------------------------------------------------------------


def _free_port_for(job_id: str) -> int:
    # every rank of a job must agree on the port without talking; jobs sharing a node must not collide
    return 20000 + zlib.crc32(job_id.encode()) % 20000


def _export_distributed_env() -> tuple[int, int]:
    """Export RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT from submitit's JobEnvironment.

    The loop initialises torch.distributed from these when WORLD_SIZE > 1 (one process per task).
    """
    env = submitit.JobEnvironment()
    if env.cluster == "debug":  # in-process: leave this process's environment alone
        return 0, 1
    rank, world = env.global_rank, env.num_tasks
    os.environ["RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = str(world)
    os.environ["LOCAL_RANK"] = str(env.local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(max(1, world // max(1, env.num_nodes)))
    os.environ["MASTER_ADDR"] = env.hostnames[0]
    os.environ["MASTER_PORT"] = str(_free_port_for(str(env.raw_job_id)))
    return rank, world


class SlurmRun(submitit.helpers.Checkpointable):
    """The callable each array task runs: ``execute_run(spec)``, resumable and requeued on signal.

    A submitit ``Checkpointable``. Submitit's own handler of the pre-timeout / preemption signal (USR2)
    would requeue at once, in the middle of a training step. Instead, the signal first becomes a
    ``request_checkpoint()`` to the loop, which finishes the step, writes a checkpoint and stops (the record
    says ``interrupted``); then submitit's handler runs, calls :meth:`checkpoint` and requeues the job. Should
    the loop not reach a step boundary within ``grace_s`` (a long evaluation), the job is requeued anyway and
    resumes from its last periodic checkpoint. Every start resumes from the run's latest checkpoint. Under
    DDP only rank 0 acts on the signal; requeueing the job ends the other ranks.
    """

    def __init__(self, code_dir: str | None = None, grace_s: float = 60.0) -> None:
        self.code_dir = code_dir
        self.grace_s = grace_s
        self._signal: int | None = None
        self._watchdog: threading.Timer | None = None

    # the signal seen belongs to one process: never pickle it into the requeued submission
    def __getstate__(self) -> dict:
        return {"code_dir": self.code_dir, "grace_s": self.grace_s}

    def __setstate__(self, state: dict) -> None:
        self.code_dir = state.get("code_dir")
        self.grace_s = float(state.get("grace_s", 60.0))
        self._signal = None
        self._watchdog = None

    def __call__(self, spec: RunSpec) -> dict:
        rank, world = _export_distributed_env()
        self._report_code_origin(spec)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and not (spec.config.get("train") or {}).get("num_threads"):
            # task/none (and many clusters) do not bind CPUs: without this every job uses every core
            import torch

            torch.set_num_threads(int(cpus))
        usr_sig = submitit.JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)
        request = _loop_checkpoint_request()
        cooperative = request is not None and callable(submitit_handler)
        if cooperative:
            signal.signal(usr_sig, self._on_signal(request, rank))
        try:
            status = execute_run(spec)
        except BaseException as exc:
            if self._signal is None or not _is_preemption(exc):
                raise
            status = "interrupted"
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()  # the loop stopped (or ended) in time
        if self._signal is not None and cooperative:
            if status in ("done", "diverged", "failed"):
                print(f"[benchmarks] run {spec.run_id} ended ({status}) before it could checkpoint: not requeued",
                      flush=True)
            else:
                print(f"[benchmarks] run {spec.run_id} checkpointed after signal {self._signal}: requeueing",
                      flush=True)
                submitit_handler(self._signal, None)  # checkpoint() + scontrol requeue + exit
        return {"run_id": spec.run_id, "status": status, "rank": rank, "world_size": world}

    def _on_signal(self, request: Any, rank: int) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None or rank != 0:
                # Only rank 0 stops: were another rank to stop first, rank 0 would hang in the next
                # collective, unable even to run this handler. The requeue by rank 0 ends every rank.
                return
            self._signal = signum
            print(f"[benchmarks] caught signal {signum}: the loop checkpoints after this step and stops",
                  flush=True)
            request()
            if self.grace_s > 0:
                self._watchdog = threading.Timer(self.grace_s, _requeue_now, args=(self.grace_s,))
                self._watchdog.daemon = True
                self._watchdog.start()
        return handler

    def checkpoint(self, spec: RunSpec) -> Any:
        """Called by submitit on timeout/preemption: the same run, to be resumed from its checkpoint."""
        request = _loop_checkpoint_request()
        if request is not None and self._signal is None:
            # submitit's handler fired directly (no cooperative stop): the run resumes from the last
            # periodic checkpoint; the request is harmless as the process exits right after
            request()
        return submitit.helpers.DelayedSubmission(SlurmRun(self.code_dir, self.grace_s), spec)

    def _report_code_origin(self, spec: RunSpec) -> None:
        import benchmarks

        origin = Path(benchmarks.__file__).resolve().parent
        print(f"[benchmarks] run {spec.run_id}: code from {origin}", flush=True)
        if self.code_dir and Path(self.code_dir).resolve() not in origin.parents:
            print(f"[benchmarks] WARNING: expected the code snapshot {self.code_dir}; the job imported {origin}",
                  flush=True)


def _requeue_now(grace_s: float) -> None:
    """Watchdog: the loop did not stop in time; requeue (killing this job) so that the run is not lost."""
    job_id = submitit.JobEnvironment().job_id
    print(f"[benchmarks] the loop did not reach a checkpoint within {grace_s:.0f}s of the signal: requeueing "
          f"{job_id} now; the run resumes from its last periodic checkpoint", flush=True)
    subprocess.run(["scontrol", "requeue", job_id], timeout=60, check=False)


def _loop_checkpoint_request() -> Any:
    """The loop's ``request_checkpoint`` (checkpoint after the current step, then stop), if it has one."""
    try:
        from benchmarks.training import loop
    except ImportError:
        return None
    return getattr(loop, "request_checkpoint", None)


def _is_preemption(exc: BaseException) -> bool:
    try:
        from benchmarks.training import loop
    except ImportError:
        return False
    preempted = getattr(loop, "RunPreempted", None)
    return isinstance(preempted, type) and isinstance(exc, preempted)


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
    rows = _query_squeue(str(e["job_id"]).split("_")[0] for e in candidates.values()) or {}
    active = {}
    for run_id, entry in candidates.items():
        row = rows.get(str(entry["job_id"])) or {}
        if not (row.get("state") == "PENDING" or row.get("state") in _RUNNING):
            continue
        # job ids get reused (a reinstalled cluster starts again at 1): the job must be the one submitted
        # from this sweep's folder, whose batch script submitit wrote into <sweep_dir>/slurm/
        command, log = row.get("command"), entry.get("log")
        if command and log and Path(command).parent != Path(log).parents[1]:
            continue
        active[run_id] = {k: entry.get(k) for k in ("job_id", "log", "stderr")}
    return active


# -- status -----------------------------------------------------------------------------------------------

#: SLURM job states -> what ``status DIR`` shows
_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING",
            "STAGE_OUT"}
_REQUEUED = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "RESV_DEL_HOLD"}
_FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "REVOKED", "SPECIAL_EXIT"}
_RECORD_FINAL = {"done", "failed", "diverged"}
STATUS_MAX_AGE_S = 30.0


def _expand_job_ids(job_id: str) -> list[str]:
    """``123_[0-2,5%4]`` -> 123_0 123_1 123_2 123_5; plain ids are returned as they are."""
    match = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not match:
        return [job_id]
    base, ranges = match.group(1), match.group(2).split("%")[0]
    out = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _query_sacct(array_ids: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    """Current state and number of earlier (requeued) attempts per job id, or None without accounting."""
    ids = sorted(set(array_ids))
    cmd = ["sacct", "-n", "-P", "-X", "-D", "--format=JobID,State,ExitCode,NodeList", "-j", ",".join(ids)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 2 or "." in fields[0]:
            continue
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"
        for job_id in _expand_job_ids(fields[0]):
            row = rows.setdefault(job_id, {"state": state, "attempts": 0})
            # -D lists every attempt of a requeued job, oldest first: the last line is the current one
            row["attempts"] += 1
            row["state"] = state
            if len(fields) > 2:
                row["exit_code"] = fields[2]
    return rows


def _query_squeue(array_ids: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    cmd = ["squeue", "-h", "-r", "-o", "%i|%T|%r|%o", "-j", ",".join(sorted(set(array_ids)))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        fields = line.split("|")
        if len(fields) >= 2:
            for job_id in _expand_job_ids(fields[0]):
                requeued = len(fields) > 2 and "requeue" in fields[2].lower()
                rows[job_id] = {"state": fields[1], "attempts": 2 if requeued else 1, "source": "squeue",
                                "command": fields[3] if len(fields) > 3 else None}
    return rows


def _scheduler_rows(job_ids: list[str], cache_file: Path | None, max_age_s: float) -> dict[str, dict[str, Any]]:
    wanted = sorted({j.split("_")[0] for j in job_ids if j})
    if not wanted:
        return {}
    if cache_file is not None:
        try:
            cached = json.loads(Path(cache_file).read_text())
            if cached.get("arrays") == wanted and time.time() - float(cached["queried_at"]) < max_age_s:
                return cached["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    rows = _query_sacct(wanted)
    source = "sacct"
    if rows is None:
        rows, source = _query_squeue(wanted), "squeue"
    elif any(j not in rows for j in job_ids if j):
        # accounting lags the controller by a few seconds after a submission: ask squeue for the rest
        for job_id, row in (_query_squeue(wanted) or {}).items():
            rows.setdefault(job_id, row)
    if rows is None:
        rows, source = {}, "none"
    for row in rows.values():
        row.setdefault("source", source)
    if cache_file is not None:
        cache_file = Path(cache_file)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".slurm-status-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"queried_at": time.time(), "arrays": wanted, "rows": rows, "source": source}, fh)
        os.replace(tmp, cache_file)
    return rows


def _record_status(out_dir: Path, run_id: str) -> str | None:
    try:
        return json.loads((Path(out_dir) / "runs" / run_id / "record.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def slurm_status(entries: Sequence[Mapping[str, Any]], out_dir: Path, cache_file: Path | None = None,
                 max_age_s: float = STATUS_MAX_AGE_S) -> dict[str, dict[str, Any]]:
    """Per run of a SLURM sweep: ``state`` (pending|running|requeued|done|diverged|failed|unknown) and why.

    ``entries`` are the sweep manifest's entries (run_id, job_id, log). A finished record.json decides
    done/diverged/failed; otherwise the scheduler does (sacct, or squeue when accounting is off), queried at
    most every ``max_age_s`` seconds: the answer is kept in ``cache_file`` (default
    ``<out_dir>/sweeps/.slurm-status.cache``). Each value also has ``slurm_state``, ``job_id``, ``log`` and
    ``attempts`` (starts so far; more than 1 means the run was requeued).
    """
    out_dir = Path(out_dir)
    if cache_file is None:
        # not *.json: manifests are every sweeps/*.json
        cache_file = out_dir / "sweeps" / ".slurm-status.cache"
    job_ids = [str(e.get("job_id") or "") for e in entries]
    rows = _scheduler_rows(job_ids, cache_file, max_age_s)
    result: dict[str, dict[str, Any]] = {}
    for entry, job_id in zip(entries, job_ids):
        row = rows.get(job_id) or {}
        slurm_state = row.get("state")
        attempts = int(row.get("attempts", 0))
        record = _record_status(out_dir, entry["run_id"])
        if record in _RECORD_FINAL:
            state = record
        elif slurm_state is None:
            # not known to the scheduler (yet, or any more): the record is all there is
            state = {"running": "running", "queued": "pending", "interrupted": "requeued"}.get(record, "unknown")
            if rows and record in ("running", "queued", "interrupted"):
                state = "failed"  # the scheduler answered, knows the sweep, but not this job: it is gone
        elif slurm_state in _REQUEUED or (slurm_state == "PENDING" and attempts > 1):
            state = "requeued"
        elif slurm_state == "PENDING":
            state = "pending"
        elif slurm_state in _RUNNING:
            state = "running"
        elif slurm_state in _FAILED or slurm_state == "COMPLETED":
            # COMPLETED without a finished record: the job ended but the run did not
            state = "failed"
        else:
            state = "unknown"
        result[entry["run_id"]] = {"state": state, "slurm_state": slurm_state, "record_status": record,
                                   "job_id": job_id or None, "log": entry.get("log"), "attempts": attempts}
    return result


def slurm_status_report(out_dir: Path, manifests: Sequence[Mapping[str, Any]] | None = None,
                        cache_file: Path | None = None, max_age_s: float = STATUS_MAX_AGE_S) -> str:
    """Text for ``status DIR``: counts and one line per run of the folder's SLURM launches (latest wins).

    Lines: run id, state, job id, SLURM state, number of starts, and the log path for runs not done.
    Returns "" when the folder has no SLURM launch.
    """
    from benchmarks import store

    out_dir = Path(out_dir)
    if manifests is None:
        manifests = store.list_manifests(out_dir)
    latest: dict[str, Mapping[str, Any]] = {}
    for manifest in manifests:
        for entry in manifest.get("runs") or []:
            if entry.get("executor") == "slurm" and entry.get("run_id"):
                latest[entry["run_id"]] = entry
    if not latest:
        return ""
    states = slurm_status(list(latest.values()), out_dir, cache_file=cache_file, max_age_s=max_age_s)
    order = ["pending", "running", "requeued", "done", "diverged", "failed", "unknown"]
    counts = {s: sum(1 for v in states.values() if v["state"] == s) for s in order}
    lines = [f"slurm: {len(states)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    width = max(len(r) for r in states)
    for run_id in sorted(states, key=lambda r: (order.index(states[r]["state"]), r)):
        v = states[run_id]
        line = (f"  {run_id:<{width}}  {v['state']:<8}  job {v['job_id'] or '-'}  "
                f"{(v['slurm_state'] or '-'):<10}  starts {v['attempts']}")
        if v["state"] != "done" and v.get("log"):
            line += f"  log {v['log']}"
        lines.append(line)
    return "\n".join(lines)
