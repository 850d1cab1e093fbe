"""The optimizer registry: one name -> one class, and the class's constructor signature is the ONLY source of
default hyper-parameters.

Names accepted in ``optimizer.name``:

* the registered names in :data:`OPTIMIZERS` (``sgd``, ``sgdp``, ``adam``, ``adamw``, ``adamp``);
* any ``torch.optim`` optimizer by its class name (``RMSprop``, ``NAdam``, ...; case-insensitive);
* ``timm:<name>`` for timm's optimizers. These resolve to the class ``timm.optim`` maps the name to, with
  the defaults timm's factory ``create_optimizer_v2(model, opt=<name>)`` would apply layered on top of the
  class signature: ``weight_decay=0``, ``momentum=0.9`` for momentum optimizers, the registry's per-optimizer
  defaults (``timm:adamp`` -> ``wd_ratio=0.01, nesterov=True``; ``timm:sgd``/``timm:sgdp`` ->
  ``nesterov=True``) and ``no_decay_1d=True`` (timm's ``weight_decay_exclude_1d``). All of them are written
  into the resolved config, so ``timm:adamp`` and ``adamp`` with the same explicit kwargs are different
  runs only where the values really differ;
* any importable class by path, ``package.module:Class``.

``resolve_optimizer_config`` fills every constructor default into the config (so the run id covers them),
``build_optimizer`` builds the optimizer for a model's parameters.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
from torch.optim.optimizer import required as _TORCH_REQUIRED

from .config.errors import ConfigError, did_you_mean, unknown_key_message
from .config.imports import import_module
from .config.types import check_finite, coerce_like

#: registry name -> "module:Class"; modules are imported on first use (``adamp`` may be absent while the
#: rest of the suite is used)
OPTIMIZERS: dict[str, str] = {
    "sgd": "torch.optim:SGD",
    "sgdp": "adamp:SGDP",
    "adam": "torch.optim:Adam",
    "adamw": "torch.optim:AdamW",
    "adamp": "adamp:AdamP",
}

#: keys of the optimizer section that are not constructor arguments
SECTION_KEYS = ("name", "no_decay_1d")

#: constructor arguments that must be given although the signature has a default. SGD's ``lr=1e-3`` default
#: (added in torch 2.2) is no sensible SGD rate, so a missing ``lr`` is almost certainly a mistake.
REQUIRED_BY_CLASS: dict[str, frozenset[str]] = {"SGD": frozenset({"lr"}), "SGDP": frozenset({"lr"})}


@dataclass(frozen=True)
class OptimizerEntry:
    """A resolved optimizer name: its class, constructor arguments and defaults."""

    name: str
    cls: type
    kind: str  # "registry" | "torch.optim" | "timm" | "path"
    #: constructor argument -> default (JSON form: tuples become lists); required ones are absent
    defaults: dict[str, Any]
    #: arguments whose default is an int but whose annotation says float (``momentum: float = 0``)
    float_args: frozenset[str]
    #: defaults that were tuples (passed back to the constructor as tuples)
    tuple_args: frozenset[str]
    required: frozenset[str]
    accepts_any_kwarg: bool
    #: defaults imposed on top of the signature (timm's factory defaults), for messages and warnings
    overrides: dict[str, Any] = field(default_factory=dict)
    no_decay_1d_default: bool = False

    @property
    def target(self) -> str:
        return f"{self.cls.__module__}:{self.cls.__qualname__}"


def _import_target(target: str) -> type:
    module_name, _, attr = target.partition(":")
    module = import_module(module_name, f"optimizer `{target}`", "optimizer.name")
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _torch_optimizers() -> dict[str, type]:
    out = {}
    for attr in dir(torch.optim):
        obj = getattr(torch.optim, attr)
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            out[attr] = obj
    return out


def _json_default(value: Any) -> tuple[bool, Any]:
    """Return (representable, JSON form) of a signature default."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, tuple) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return True, list(value)
    return False, None


def _entry_for_class(name: str, cls: type, kind: str, overrides: Mapping[str, Any] | None = None,
                     no_decay_1d_default: bool = False) -> OptimizerEntry:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError) as exc:  # pragma: no cover - builtins without signatures
        raise ConfigError(f"optimizer `{name}`: cannot read the constructor signature of {cls!r} ({exc})") from None
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise ConfigError(f"optimizer `{name}`: {cls.__qualname__} does not take the parameters as first argument")
    defaults: dict[str, Any] = {}
    required: set[str] = set(REQUIRED_BY_CLASS.get(cls.__name__, ()))
    float_args: set[str] = set()
    tuple_args: set[str] = set()
    accepts_any = False
    for p in params[1:]:
        if p.kind == inspect.Parameter.VAR_KEYWORD:
            accepts_any = True
            continue
        if p.kind == inspect.Parameter.VAR_POSITIONAL:
            continue
        if p.default is inspect.Parameter.empty or p.default is _TORCH_REQUIRED:
            required.add(p.name)
            continue
        ok, value = _json_default(p.default)
        if not ok:
            # Not expressible in YAML/JSON (e.g. a callable): left to the constructor, outside the run id.
            continue
        if isinstance(p.default, tuple):
            tuple_args.add(p.name)
        if isinstance(value, int) and not isinstance(value, bool) and "float" in str(p.annotation):
            float_args.add(p.name)
            value = float(value)
        defaults[p.name] = value
    for key, value in (overrides or {}).items():
        if key in defaults or key in required or accepts_any:
            defaults[key] = list(value) if isinstance(value, tuple) else value
            required.discard(key)
    return OptimizerEntry(
        name=name, cls=cls, kind=kind, defaults=defaults, float_args=frozenset(float_args),
        tuple_args=frozenset(tuple_args), required=frozenset(required), accepts_any_kwarg=accepts_any,
        overrides=dict(overrides or {}), no_decay_1d_default=no_decay_1d_default,
    )


def _timm_entry(name: str) -> OptimizerEntry:
    timm_name = name.split(":", 1)[1]
    try:
        import timm.optim as timm_optim
    except ImportError as exc:
        raise ConfigError(f"optimizer `{name}` needs timm, which cannot be imported ({exc})") from None
    try:
        info = timm_optim.get_optimizer_info(timm_name)
    except ValueError:
        names = timm_optim.list_optimizers()
        raise ConfigError(
            f"unknown timm optimizer `{timm_name}` at `optimizer.name`{did_you_mean(timm_name, names)} "
            f"timm has: {', '.join(names)}"
        ) from None
    cls = info.opt_class
    if isinstance(cls, str):
        module, _, attr = cls.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"optimizer `{name}` maps to {info.opt_class}, which cannot be imported ({exc})") from None
    # What create_optimizer_v2(model, opt=name) passes on top of the class defaults (timm 1.0.x factory).
    overrides: dict[str, Any] = {"weight_decay": 0.0}
    if info.has_momentum:
        overrides["momentum"] = 0.9
    overrides.update(info.defaults or {})
    return _entry_for_class(name, cls, "timm", overrides, no_decay_1d_default=True)


def _unknown_optimizer(name: str) -> ConfigError:
    torch_names = sorted(_torch_optimizers())
    hint = did_you_mean(name, [*OPTIMIZERS, *torch_names])
    return ConfigError(
        f"unknown optimizer `{name}` at `optimizer.name`{hint} Registered: {', '.join(sorted(OPTIMIZERS))}; "
        f"also any torch.optim class ({', '.join(torch_names)}), `timm:<name>` "
        f"(see `python -m benchmarks optimizers`) or an importable class as `package.module:Class`."
    )


def _import_failure(name: str, exc: BaseException) -> str:
    """The message for an ``optimizer.name`` of the form ``module:Class`` that does not import."""
    module_name, _, attr = name.partition(":")
    base = f"optimizer `{name}` at `optimizer.name` cannot be imported ({type(exc).__name__}: {exc})"
    if isinstance(exc, AttributeError):
        try:
            module = import_module(module_name, f"optimizer `{name}`", "optimizer.name")
        except (ImportError, ConfigError):
            return base
        names = [n for n in dir(module) if not n.startswith("_") and inspect.isclass(getattr(module, n, None))]
        same = [n for n in names if n.lower() == attr.lower()]
        hint = f"; did you mean `{module_name}:{same[0]}`?" if same else did_you_mean(attr, names)
        return f"{base}{hint}"
    if isinstance(exc, ModuleNotFoundError):
        return (f"{base}. A module outside this project must be importable by the Python that runs the suite: "
                f"install it, or put the folder that holds it on PYTHONPATH (e.g. `PYTHONPATH=/path/to/code "
                f"python -m benchmarks run ...`; with the local pool and SLURM the workers inherit it)")
    return base


@functools.lru_cache(maxsize=None)
def lookup_optimizer(name: str) -> OptimizerEntry:
    """Resolve an ``optimizer.name`` to its class and defaults; unknown names raise ConfigError listing the
    registered ones."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"`optimizer.name` must be a non-empty string, got {name!r}")
    if name in OPTIMIZERS:
        target = OPTIMIZERS[name]
        try:
            cls = _import_target(target)
        except ImportError as exc:
            raise ConfigError(
                f"optimizer `{name}` is registered as {target}, but importing it failed: {exc}"
            ) from None
        return _entry_for_class(name, cls, "registry")
    if name.startswith("timm:"):
        return _timm_entry(name)
    if ":" in name:
        try:
            cls = _import_target(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(_import_failure(name, exc)) from None
        if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
            raise ConfigError(f"optimizer `{name}` is {cls!r}, not a torch.optim.Optimizer subclass")
        return _entry_for_class(name, cls, "path")
    torch_opts = _torch_optimizers()
    if name in torch_opts:
        return _entry_for_class(name, torch_opts[name], "torch.optim")
    lowered = {k.lower(): k for k in torch_opts}
    if name.lower() in lowered:
        return _entry_for_class(name, torch_opts[lowered[name.lower()]], "torch.optim")
    raise _unknown_optimizer(name)


def resolve_optimizer_config(cfg: Mapping[str, Any], path: str = "optimizer") -> dict[str, Any]:
    """Return the optimizer section with every constructor default filled in.

    Unknown kwargs name the key and the closest valid one; a missing required argument (e.g. SGD's ``lr``)
    and wrong types are errors. The result contains ``name``, every constructor argument and ``no_decay_1d``.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"`{path}` must be a mapping like {{name: adamp, lr: 1.0e-3}}, got {type(cfg).__name__} {cfg!r}"
        )
    if "name" not in cfg:
        raise ConfigError(f"`{path}.name` is missing: name the optimizer, e.g. `{path}: {{name: adamp}}`")
    entry = lookup_optimizer(cfg["name"])
    out: dict[str, Any] = {"name": entry.name}
    valid = [*SECTION_KEYS, *entry.defaults, *entry.required]
    for key in cfg:
        if key in SECTION_KEYS:
            continue
        if key not in entry.defaults and key not in entry.required and not entry.accepts_any_kwarg:
            raise ConfigError(unknown_key_message(str(key), f"{path}.{key}", valid, f"({entry.target})"))
    missing = sorted(k for k in entry.required if k not in cfg)
    if missing:
        raise ConfigError(
            f"`{path}.{missing[0]}` is required for optimizer `{entry.name}` ({entry.cls.__qualname__}); "
            f"set it, e.g. `--set {path}.{missing[0]}=...`"
        )
    for key, default in entry.defaults.items():
        out[key] = default
    for key, value in cfg.items():
        if key in SECTION_KEYS:
            continue
        default = entry.defaults.get(key)
        if key in entry.tuple_args and isinstance(default, list):
            default = tuple(default)
        try:
            value = coerce_like(value, default, f"{path}.{key}", allow_float=key in entry.float_args)
        except ConfigError:  # say where the expected type comes from (built only on error: it is a hot path)
            coerce_like(value, default, f"{path}.{key}", allow_float=key in entry.float_args,
                        where=f"({entry.cls.__qualname__} default: {json.dumps(default)})")
            raise
        if isinstance(value, list):
            for i, v in enumerate(value):
                check_finite(v, f"{path}.{key}[{i}]")
        check_finite(value, f"{path}.{key}")
        out[key] = value
    no_decay = cfg.get("no_decay_1d", entry.no_decay_1d_default)
    out["no_decay_1d"] = coerce_like(no_decay, False, f"{path}.no_decay_1d")
    return out


def _kwargs(entry: OptimizerEntry, resolved: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in resolved.items() if k not in SECTION_KEYS}
    for key in entry.tuple_args:
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    return kwargs


def split_no_decay_1d(params: Iterable[Any]) -> list[dict[str, Any]]:
    """Param groups in which every tensor with ``ndim <= 1`` (biases, norm gains) has ``weight_decay=0``.

    Accepts tensors or param-group dicts; each group is split in two, keeping the group's other options.
    """
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    out = []
    for group in groups:
        tensors = list(group["params"])
        options = {k: v for k, v in group.items() if k != "params"}
        decay = [p for p in tensors if p.ndim > 1]
        no_decay = [p for p in tensors if p.ndim <= 1]
        if decay:
            out.append({**options, "params": decay})
        if no_decay:
            out.append({**options, "params": no_decay, "weight_decay": 0.0})
    return out


def build_optimizer(opt_cfg: Mapping[str, Any], params: Iterable[Any]) -> torch.optim.Optimizer:
    """Build the optimizer described by ``opt_cfg`` (resolved or not) for ``params`` (tensors or groups)."""
    resolved = resolve_optimizer_config(opt_cfg)
    entry = lookup_optimizer(resolved["name"])
    params = list(params)
    if resolved.get("no_decay_1d"):
        params = split_no_decay_1d(params)
    return entry.cls(params, **_kwargs(entry, resolved))


def list_optimizers() -> list[dict[str, str]]:
    """Every name ``optimizer.name`` accepts: ``[{"name", "kind", "target"}]`` (registry, torch.optim, timm)."""
    out = [{"name": name, "kind": "registry", "target": target} for name, target in OPTIMIZERS.items()]
    for name, cls in sorted(_torch_optimizers().items()):
        out.append({"name": name, "kind": "torch.optim", "target": f"torch.optim:{cls.__name__}"})
    try:
        import timm.optim as timm_optim

        for name in timm_optim.list_optimizers():
            info = timm_optim.get_optimizer_info(name)
            target = info.opt_class if isinstance(info.opt_class, str) else (
                f"{info.opt_class.__module__}:{info.opt_class.__qualname__}")
            out.append({"name": f"timm:{name}", "kind": "timm", "target": target})
    except ImportError:  # pragma: no cover - timm is a declared dependency
        pass
    return out


# -- default search spaces of `tune` (benchmarks/workflows/tune.py, docs/tuning.md) ---------------------------
# One place for every registered optimizer's space. "recipe" stands for the run's own configured value (the
# resolved config: the file's value, else the constructor default): the learning rate is searched over two
# decades centred on it (recipe / 10 to recipe x 10, log-uniform): the recipe stays in the middle, and 4-8
# quasi-random points have room on both sides of it. Weight decay is searched
# log-uniform over fixed ranges, so a space never contains 0 (search 0 with a `choice` in a --space file):
#   sgd, sgdp: [1e-6, 1e-3], L2 / SGDP's decoupled decay in PyTorch notation, around the ImageNet standard
#              1e-4 (SGD) and the official README's 1e-5 (SGDP);
#   adamw, adamp: [1e-4, 1e-1], decoupled decay multiplied by lr (PyTorch notation), around PyTorch's AdamW
#              default 1e-2 and the official AdamP README's 1e-2;
#   adam: learning rate only (plain Adam's coupled L2 is what adamw replaces).
# Momentum, betas and AdamP's delta / wd_ratio stay at the recipe: the paper says to keep AdamP's at their
# defaults, and searching them for one optimizer but not another would give it more budget per dimension.
# An optimizer not listed here (torch.optim, timm, a user's class) gets DEFAULT_LR_SPACE unless a --space
# FILE is given.
_LR_AROUND_RECIPE = ("recipe_decades", 1.0)  # log-uniform from recipe / 10**1 to recipe * 10**1
DEFAULT_SEARCH_SPACES: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer.lr": _LR_AROUND_RECIPE, "optimizer.weight_decay": {"log_uniform": [1.0e-6, 1.0e-3]}},
    "sgdp": {"optimizer.lr": _LR_AROUND_RECIPE, "optimizer.weight_decay": {"log_uniform": [1.0e-6, 1.0e-3]}},
    "adam": {"optimizer.lr": _LR_AROUND_RECIPE},
    "adamw": {"optimizer.lr": _LR_AROUND_RECIPE, "optimizer.weight_decay": {"log_uniform": [1.0e-4, 1.0e-1]}},
    "adamp": {"optimizer.lr": _LR_AROUND_RECIPE, "optimizer.weight_decay": {"log_uniform": [1.0e-4, 1.0e-1]}},
}
#: the space of an optimizer without a default space and without --space: lr log-uniform over four decades
DEFAULT_LR_SPACE: dict[str, Any] = {"optimizer.lr": {"log_uniform": [1.0e-5, 1.0e-1]}}


def default_search_space(optimizer: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``search:`` mapping for a resolved optimizer section, and a line saying where it comes from."""
    name = optimizer.get("name")
    spec = DEFAULT_SEARCH_SPACES.get(name) if isinstance(name, str) else None
    if spec is None:
        return dict(DEFAULT_LR_SPACE), f"default for an optimizer without its own space ({name}): lr log-uniform [1e-5, 1e-1]"
    out: dict[str, Any] = {}
    for key, dist in spec.items():
        if isinstance(dist, tuple) and dist[0] == "recipe_decades":
            recipe = optimizer.get(key.split(".", 1)[1])
            if not isinstance(recipe, (int, float)) or isinstance(recipe, bool) or not recipe > 0:
                raise ConfigError(f"the default search space of `{name}` centres `{key}` on the recipe's value, "
                                  f"which is {recipe!r}: set `{key}` or pass --space FILE")
            width = 10.0 ** dist[1]
            out[key] = {"log_uniform": [float(f"{recipe / width:.6g}"), float(f"{recipe * width:.6g}")]}
        else:
            out[key] = {k: list(v) for k, v in dist.items()}
    return out, f"registry default for `{name}` (benchmarks/registry.py: DEFAULT_SEARCH_SPACES)"


__all__ = [
    "OPTIMIZERS",
    "OptimizerEntry",
    "build_optimizer",
    "list_optimizers",
    "lookup_optimizer",
    "resolve_optimizer_config",
    "split_no_decay_1d",
]
