"""Validation and default resolution of one run's config.

``resolve_config(raw)`` returns the *resolved* config: every section filled with its defaults (task defaults,
the loop's ``LOOP_DEFAULTS``, the optimizer's constructor signature), values type-checked and normalised
(``lr: 1`` becomes ``1.0``), so that the same run written two ways has the same run id. Anything wrong raises
:class:`ConfigError` naming the dotted key and what would be valid. ``recipe_warnings(resolved)`` lists the
known recipe pitfalls (printed before launch; they never stop a run).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .errors import ConfigError, did_you_mean, unknown_key_message
from .grid import copy_tree
from .loader import set_dotted
from .types import check_finite, coerce_like

#: the sections a run config may have (after ``base``, ``grid`` and ``zip`` were consumed)
TOP_LEVEL_KEYS = ("task", "data", "model", "optimizer", "train", "slurm", "name", "tags")
#: keys stored with a run but not part of its identity: where/how it runs, and labels
NOT_HASHED_KEYS = ("slurm", "name", "tags")
#: keys only a config *file* may have (consumed before validation)
FILE_ONLY_KEYS = ("base", "grid", "zip")
#: read only by `tune` (benchmarks/config/search.py); a run skips it, so it never enters a run id
TUNE_ONLY_KEYS = ("search",)

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


_TASK_CACHE: dict[tuple[str, str | None], Any] = {}


def _resolve_tags(tags: Any) -> list[str] | dict[str, Any]:
    """Tags label a run for analysis (e.g. which paper table cell it fills); never part of the run id.

    A string or a list of strings, or a mapping of names to strings/numbers/booleans
    (``tags: {table: t01, model: ResNet18, optimizer: SGDP}``).
    """
    if isinstance(tags, str):
        return [tags]
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        return list(tags)
    if isinstance(tags, dict) and all(isinstance(k, str) for k in tags) and all(
            v is None or isinstance(v, (str, int, float, bool)) for v in tags.values()):
        return dict(tags)
    raise ConfigError(f"`tags` must be a list of strings or a mapping of names to strings/numbers, got {tags!r}")


def task_class(name: str):
    """The Task class for ``task:`` (registered name or ``package.module:Class``); ConfigError if unknown."""
    from benchmarks import tasks

    key = (name, tasks.TASKS.get(name)) if isinstance(name, str) else None
    if key in _TASK_CACHE:
        return _TASK_CACHE[key]
    cls = _task_class(name)
    _TASK_CACHE[key] = cls
    return cls


def _task_class(name: str):
    from benchmarks import tasks

    if not isinstance(name, str) or not name:
        raise ConfigError(f"`task` must be a task name, got {name!r}; registered tasks: {', '.join(sorted(tasks.TASKS))}")
    if ":" not in name and name not in tasks.TASKS:
        raise ConfigError(
            f"unknown task `{name}` at `task`{did_you_mean(name, tasks.TASKS)} Registered tasks: "
            f"{', '.join(sorted(tasks.TASKS))}."
        )
    from benchmarks.training.setup import resolve_task_class

    try:
        cls = resolve_task_class(name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"task `{name}` cannot be imported: {type(exc).__name__}: {exc}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a module named in `task:` runs at import
        from .imports import import_failure

        raise import_failure(f"task `{name}`", "task", exc) from None
    from benchmarks.tasks.base import Task

    if not (isinstance(cls, type) and issubclass(cls, Task)):
        # otherwise the config validates (no defaults to check against) and every run fails at start
        raise ConfigError(f"task `{name}` is {cls!r}, not a subclass of benchmarks.tasks.base.Task")
    return cls


def resolve_section(values: Any, defaults: Mapping[str, Any], path: str, where: str = "",
                    types: Mapping[str, type] | None = None) -> dict[str, Any]:
    """Fill ``defaults`` into ``values`` and check every key and type against them (recursing into dicts).

    An empty dict default is an open mapping (any keys); a None default accepts any value unless ``types``
    gives its type.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"`{path}` must be a mapping of keys, got {type(values).__name__} {values!r}")
    for key in values:
        if key not in defaults:
            raise ConfigError(unknown_key_message(str(key), f"{path}.{key}", defaults, where))
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        dotted = f"{path}.{key}"
        if key not in values:
            out[key] = copy_tree(default) if isinstance(default, (dict, list)) else default
            continue
        value = values[key]
        if isinstance(default, dict) and default:
            out[key] = resolve_section(value, default, dotted, where)
            continue
        if default is None and types and key in types and value is not None:
            value = coerce_like(value, types[key](), dotted)
        else:
            value = coerce_like(value, default, dotted)
        check_finite(value, dotted)
        out[key] = value
    return out


def _check_train(train: dict[str, Any]) -> None:
    from benchmarks.training.keys import LOOP_CHOICES, LOOP_MINIMUM

    for key, choices in LOOP_CHOICES.items():
        value = train.get(key)
        if value not in choices:
            raise ConfigError(
                f"`train.{key}` must be one of {', '.join(choices)}; got {value!r}{did_you_mean(str(value), choices)}"
            )
    for key, (low, inclusive) in LOOP_MINIMUM.items():
        value = train.get(key)
        if value is None or not isinstance(value, (int, float)):
            continue
        if value < low or (not inclusive and value == low):
            raise ConfigError(f"`train.{key}` must be {'>=' if inclusive else '>'} {low}, got {value!r}")
    seed = train.get("seed")
    if isinstance(seed, int) and not 0 <= seed < 2**63:
        raise ConfigError(f"`train.seed` must be an integer in [0, 2**63 - 1] (what torch.manual_seed and numpy "
                          f"accept for every task), got {seed}")
    device = train.get("device")
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ConfigError(f"`train.device` must be auto, cpu, cuda or cuda:N; got {device!r}")


def resolve_schedule(value: Any) -> dict[str, Any]:
    """Resolve ``train.schedule`` (a mapping, or just the schedule's name) with that schedule's defaults."""
    from benchmarks.training.keys import SCHEDULE_COMMON, SCHEDULES

    if isinstance(value, str):
        value = {"name": value}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"`train.schedule` must be a mapping like {{name: cosine}}, got {value!r}")
    name = value.get("name", SCHEDULE_COMMON["name"])
    if name not in SCHEDULES:
        raise ConfigError(
            f"unknown schedule `{name}` at `train.schedule.name`{did_you_mean(str(name), SCHEDULES)} "
            f"Known schedules: {', '.join(SCHEDULES)}."
        )
    defaults = {**SCHEDULE_COMMON, **SCHEDULES[name]}
    out = resolve_section(value, defaults, "train.schedule", f"(schedule `{name}`)")
    if out["warmup_epochs"] < 0:
        raise ConfigError(f"`train.schedule.warmup_epochs` must be >= 0, got {out['warmup_epochs']!r}")
    if "gamma" in out and out["gamma"] <= 0:
        raise ConfigError(f"`train.schedule.gamma` must be > 0, got {out['gamma']!r}")
    if "step_size" in out and out["step_size"] <= 0:
        raise ConfigError(f"`train.schedule.step_size` must be > 0 (epochs), got {out['step_size']!r}")
    if "milestones" in out:
        ms = out["milestones"]
        if not all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in ms) or list(ms) != sorted(ms):
            raise ConfigError(f"`train.schedule.milestones` must be increasing epoch numbers, got {ms!r}")
        out["milestones"] = [float(m) for m in ms]
    if "min_factor" in out and not 0.0 <= out["min_factor"] <= 1.0:
        raise ConfigError(f"`train.schedule.min_factor` must be between 0 and 1, got {out['min_factor']!r}")
    return out


_CONSTRUCTIBLE: set[str] = set()


def _item_key(item: tuple[Any, Any]) -> str:
    """Sort key of a section's items for cache keys: a YAML key may be an int or bool (``1:``, ``on:``),
    which plain sorting cannot compare with strings; such keys must reach the ConfigError that names them."""
    return repr(item[0])


def _check_constructible(opt: dict[str, Any]) -> None:
    """Build the optimizer once on a dummy parameter, so that its own argument checks (lr < 0, betas out of
    range, nesterov without momentum, ...) fail before launch and not inside a job hours later."""
    import torch

    from benchmarks.registry import build_optimizer

    key = repr(sorted(opt.items(), key=_item_key))
    if key in _CONSTRUCTIBLE:
        return
    try:
        build_optimizer(opt, [torch.nn.Parameter(torch.zeros(2, 2))])
    except (ValueError, TypeError, RuntimeError) as exc:
        text = str(exc)
        if any(word in text.lower() for word in ("fused", "capturable", "cuda", "device")):
            return  # device-specific options: only checkable on the machine that runs the job
        raise ConfigError(f"`optimizer` ({opt['name']}) rejects these settings: {text}") from None
    _CONSTRUCTIBLE.add(key)


_OPTIMIZER_CACHE: dict[str, dict[str, Any]] = {}


def resolve_optimizer(value: Any) -> dict[str, Any]:
    """Resolve the optimizer section (registry + constructor defaults) and check the optimizer accepts it.

    Cached by the section as written (a large grid has few distinct optimizer sections).
    """
    from benchmarks.registry import resolve_optimizer_config

    key = repr(sorted(value.items(), key=_item_key)) if isinstance(value, dict) else None
    if key is not None and key in _OPTIMIZER_CACHE:
        return copy_tree(_OPTIMIZER_CACHE[key])
    resolved = resolve_optimizer_config(value)
    _check_constructible(resolved)
    if key is not None:
        if len(_OPTIMIZER_CACHE) > 10_000:
            _OPTIMIZER_CACHE.clear()
        _OPTIMIZER_CACHE[key] = copy_tree(resolved)
    return resolved


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one run's config (no grid/zip/base left) and return it with every default filled in."""
    for key in config:
        if key not in TOP_LEVEL_KEYS and key not in TUNE_ONLY_KEYS:
            if key in FILE_ONLY_KEYS:
                raise ConfigError(f"`{key}` is only allowed at the top of a config file")
            raise ConfigError(unknown_key_message(str(key), str(key), TOP_LEVEL_KEYS + FILE_ONLY_KEYS))
    if "task" not in config:
        from benchmarks import tasks

        raise ConfigError(f"`task` is missing; registered tasks: {', '.join(sorted(tasks.TASKS))}")
    if "optimizer" not in config:
        raise ConfigError("`optimizer` is missing: add e.g. `optimizer: {name: adamp, lr: 1.0e-3}`")
    name = config["task"]
    cls = task_class(name)
    task_defaults = getattr(cls, "defaults", {}) or {}
    where = f"(task `{name}`)"
    from benchmarks.training.keys import LOOP_DEFAULTS, LOOP_TYPES

    resolved: dict[str, Any] = {"task": name}
    resolved["data"] = resolve_section(config.get("data"), task_defaults.get("data", {}), "data", where)
    resolved["model"] = resolve_section(config.get("model"), task_defaults.get("model", {}), "model", where)
    resolved["optimizer"] = resolve_optimizer(config["optimizer"])
    train_defaults = {**LOOP_DEFAULTS, **dict(task_defaults.get("train", {}))}
    raw_train = config.get("train") or {}
    if not isinstance(raw_train, dict):
        raise ConfigError(f"`train` must be a mapping of keys, got {type(raw_train).__name__} {raw_train!r}")
    schedule = raw_train.get("schedule", train_defaults.get("schedule"))
    train_no_schedule = {k: v for k, v in raw_train.items() if k != "schedule"}
    train = resolve_section(train_no_schedule, {k: v for k, v in train_defaults.items() if k != "schedule"},
                            "train", where, types=LOOP_TYPES)
    train["schedule"] = resolve_schedule(schedule)
    _check_train(train)
    from benchmarks.training.selection import check_selection

    check_selection(cls, train["select"])
    resolved["train"] = train
    cls.fill_derived(resolved)
    if "name" in config and config["name"] is not None:
        if not isinstance(config["name"], str):
            raise ConfigError(f"`name` must be a string, got {config['name']!r}")
        resolved["name"] = config["name"]
    if "tags" in config and config["tags"] is not None:
        resolved["tags"] = _resolve_tags(config["tags"])
    if "slurm" in config and config["slurm"] is not None:
        if not isinstance(config["slurm"], dict):
            raise ConfigError(f"`slurm` must be a mapping of executor settings, got {config['slurm']!r}")
        resolved["slurm"] = copy_tree(dict(config["slurm"]))
    return resolved


#: what a task's ``smoke`` settings may never set: --smoke runs on the configured data set
SMOKE_FORBIDDEN = ("data", "data.name", "data.root")


def apply_smoke(config: dict[str, Any]) -> dict[str, Any]:
    """Apply the task's ``smoke`` overrides (dotted keys) to a run config, for ``--smoke`` runs.

    Smoke settings only shrink a run (steps, evaluation size, batch, model size); one that swaps the data set
    would make a smoke run pass on data the real run never sees, so it is refused.
    """
    cls = task_class(config.get("task"))
    out = copy_tree(config)
    smoke = getattr(cls, "smoke", {}) or {}
    for key in smoke:
        if key in SMOKE_FORBIDDEN:
            raise ConfigError(f"{cls.__name__}.smoke sets `{key}`: --smoke must run on the configured data set "
                              f"(shrink steps, evaluation size or batch instead)")
    for key, value in smoke.items():
        set_dotted(out, key, copy_tree(value), source=f"{cls.__name__}.smoke")
    return out


def _fmt(x: float) -> str:
    return f"{x:g}"


def recipe_warnings(resolved: Mapping[str, Any], raw_optimizer: Mapping[str, Any] | None = None) -> list[str]:
    """Known recipe pitfalls in a resolved config (strings, one per pitfall; empty when none applies)."""
    from benchmarks.registry import lookup_optimizer

    out: list[str] = []
    opt = resolved["optimizer"]
    entry = lookup_optimizer(opt["name"])
    cls_name = entry.cls.__name__
    raw = raw_optimizer or {}
    lr = opt.get("lr")
    wd = opt.get("weight_decay")
    if cls_name in ("AdamW", "AdamP") and isinstance(wd, (int, float)) and isinstance(lr, (int, float)) \
            and 0 < wd < 1e-3 and lr <= 1e-2:
        out.append(
            f"optimizer `{opt['name']}`: weight_decay={_fmt(wd)} with lr={_fmt(lr)} looks like the paper's "
            f"notation (decay not multiplied by lr, as in the AdamW paper). PyTorch multiplies it by lr, so this "
            f"decays weights by only {_fmt(lr * wd)} per step. In PyTorch notation the paper's values are e.g. "
            f"weight_decay=0.1 for AdamW at lr=1e-3 (= 1e-4 in paper notation, clovaai/AdamP#10) and 1e-2 for "
            f"AdamP; if {_fmt(wd)} is meant in paper notation, use weight_decay={_fmt(wd / lr)} (= {_fmt(wd)} / lr)."
        )
    if entry.kind == "timm":
        plain = {}
        try:
            from benchmarks.registry import _entry_for_class

            plain = _entry_for_class(opt["name"], entry.cls, "path").defaults
        except ConfigError:
            pass
        changed = [(k, v) for k, v in entry.overrides.items()
                   if k not in raw and k in plain and plain[k] != v]
        if "no_decay_1d" not in raw:
            changed.append(("no_decay_1d", True))
        if changed:
            listed = ", ".join(f"{k}={json.dumps(v)}" for k, v in changed)
            classdef = ", ".join(f"{k}={json.dumps(plain.get(k, False))}" for k, _ in changed)
            extra = ""
            if cls_name == "AdamP":
                extra = (" The official AdamP defaults (and the paper's recommendation, \"use the default values\") "
                         "are wd_ratio=0.1, nesterov=false: use `adamp` or set them explicitly.")
            out.append(
                f"optimizer `{opt['name']}` applies timm's factory defaults {listed}, which differ from the "
                f"{cls_name} constructor defaults ({classdef}).{extra} Set these keys explicitly to silence this "
                f"warning."
            )
    if cls_name == "SGDP" and isinstance(opt.get("momentum"), (int, float)) and opt["momentum"] >= 1 \
            and isinstance(wd, (int, float)) and wd > 0:
        out.append(
            f"optimizer `{opt['name']}`: momentum={_fmt(opt['momentum'])} with weight_decay={_fmt(wd)}: SGDP divides "
            f"its decoupled weight decay by (1 - momentum), which is {'zero' if opt['momentum'] == 1 else 'negative'} "
            f"here (infinite or negative decay); use momentum < 1."
        )
    out.extend(task_class(resolved["task"]).config_warnings(resolved))
    return out


def hashed_view(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that identifies the run (without slurm/name/tags, and without the
    ``train`` keys that only change how a run reports, e.g. ``train.logger``).

    ``data.root`` says where a data set is, not which one (that is ``data.name`` and the other data keys), so
    it is hashed as null: moving a data set to another mount keeps every result's run id. Hashing it as null
    rather than dropping it keeps the ids of configs whose root was null (toys, digits, synthetic corpora).
    ``train.select: last`` is hashed as absent: every run reported its last evaluation before train.select
    existed, so "last" keeps those ids while "best" (other reported metrics) gets ids of its own.
    """
    from benchmarks.training.keys import NOT_HASHED_TRAIN_KEYS

    view = {k: v for k, v in resolved.items() if k not in NOT_HASHED_KEYS}
    data = view.get("data")
    if isinstance(data, dict) and data.get("root") is not None:
        view["data"] = {**data, "root": None}
    if isinstance(view.get("train"), Mapping):
        view["train"] = {k: v for k, v in view["train"].items()
                         if k not in NOT_HASHED_TRAIN_KEYS and not (k == "select" and v == "last")}
    return view


__all__ = [
    "FILE_ONLY_KEYS",
    "NOT_HASHED_KEYS",
    "TOP_LEVEL_KEYS",
    "apply_smoke",
    "hashed_view",
    "recipe_warnings",
    "resolve_config",
    "resolve_optimizer",
    "resolve_schedule",
    "resolve_section",
    "task_class",
]
