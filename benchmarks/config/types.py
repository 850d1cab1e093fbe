"""Type checking of config values against their default (the single source of truth for a key's type)."""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError

_NUMBER = (int, float)


def describe_type(value: Any) -> str:
    """Human name of the type a default implies (used in error messages)."""
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} values" if isinstance(value, tuple) else "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


def coerce_like(value: Any, default: Any, path: str, *, allow_float: bool = False, where: str = "") -> Any:
    """Check ``value`` against the type of ``default`` and return it normalised.

    Ints are accepted (and converted) where a float is expected, so ``lr: 1`` and ``lr: 1.0`` resolve to the
    same config and the same run id. A ``None`` default accepts anything (the owner did not fix a type).
    ``allow_float`` marks an int default whose annotation says float (e.g. ``momentum: float = 0``).
    Tuples (e.g. ``betas``) become lists of the same length, element-checked.
    """
    where = f" {where}" if where else ""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"`{path}`{where} must be a boolean (true/false), got {_got(value)}")
    if isinstance(default, int) and not allow_float:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"`{path}`{where} must be an integer, got {_got(value)}")
    if isinstance(default, _NUMBER):
        if isinstance(value, _NUMBER) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"`{path}`{where} must be a number, got {_got(value)}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(f"`{path}`{where} must be a string, got {_got(value)}")
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)) and len(value) == len(default):
            return [coerce_like(v, d, f"{path}[{i}]", where=where.strip()) for i, (v, d) in enumerate(zip(value, default))]
        raise ConfigError(f"`{path}`{where} must be a list of {len(default)} values, got {_got(value)}")
    if isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"`{path}`{where} must be a list, got {_got(value)}")
    if isinstance(default, dict):
        if isinstance(value, dict):
            return value
        raise ConfigError(f"`{path}`{where} must be a mapping, got {_got(value)}")
    return value


def check_finite(value: Any, path: str) -> None:
    """Reject NaN/inf numbers, which never make sense as hyper-parameters and break canonical JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"`{path}` must be a finite number, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        # torch, numpy and the data loaders take 64-bit integers; a larger one fails deep inside a run
        raise ConfigError(f"`{path}` must be a 64-bit integer (between -2**63 and 2**63 - 1), got {value}")
    # Inside lists and mappings too: the run id's canonical JSON cannot hold NaN/inf anywhere, and without
    # this a value like `milestones: [30, .inf]` failed later with a bare ValueError instead of exit code 2.
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_finite(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{path}.{key}")


__all__ = ["check_finite", "coerce_like", "describe_type"]
