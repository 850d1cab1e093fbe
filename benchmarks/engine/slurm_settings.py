"""The ``slurm:`` settings of a sweep: every key (:data:`SETTINGS`), the ``run`` command's flags, checks and
merging (defaults <- the config's section <- the flags)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any, Mapping

from benchmarks.config.errors import ConfigError, unknown_key_message


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
