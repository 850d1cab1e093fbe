"""Reading config files: ``yaml.safe_load``, ``base:`` inheritance and ``--set`` overrides.

* ``base: path`` (or a list of paths) is resolved relative to the file that names it; bases are deep-merged
  in order and the file itself wins. Dicts merge key by key; every other value (lists included) replaces.
* ``--set a.b.c=value`` parses ``value`` as YAML (``3`` is an int, ``1e-3`` a float, ``[0, 1]`` a list,
  ``null`` is None). ``grid.<dotted key>`` and ``zip.<dotted key>`` address one axis of the grid, whose
  own name contains dots.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError

#: top-level sections whose keys are dotted paths themselves (one axis each), not nested dicts
AXIS_SECTIONS = ("grid", "zip")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float, as every ML config author expects.

    YAML 1.1 only resolves floats written with a dot (``1.0e-3``); without this, ``lr: 1e-3`` would be the
    *string* "1e-3" and fail type validation with a confusing message.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text safely; a syntax error becomes a ConfigError naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is not None:
            raise ConfigError(
                f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}",
                source=source,
            ) from None
        raise ConfigError(f"YAML syntax error: {problem}", source=source) from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one YAML file into a dict (no inheritance). Errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    data = parse_yaml(text, source=str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config file must be a mapping of sections (task:, optimizer:, ...), got a {type(data).__name__}",
            source=str(path),
        )
    return data


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` into a copy of ``base``: dicts merge recursively, anything else in ``top`` wins."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), *, _chain: tuple[Path, ...] = ()) -> dict:
    """Load a config file with its ``base:`` chain merged in and ``overrides`` (``a.b=value``) applied.

    The result still holds ``grid:``/``zip:`` (expanded by :func:`benchmarks.config.grid.expand`); ``base:``
    is consumed. Inheritance cycles and missing bases are errors naming the file.
    """
    path = Path(path)
    resolved = path.resolve()
    data = load_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError("`base` must be a path or a list of paths (relative to this file)", source=str(path))
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base) if not os.path.isabs(base) else Path(base)
        if not base_path.exists():
            raise ConfigError(
                f"`base: {base}` not found (looked for {base_path}; paths are relative to this file)",
                source=str(path),
            )
        if base_path.resolve() in (*_chain, resolved):
            cycle = " -> ".join(str(p) for p in (*_chain, resolved, base_path.resolve()))
            raise ConfigError(f"`base:` inheritance cycle: {cycle}", source=str(path))
        merged = deep_merge(merged, load_config(base_path, _chain=(*_chain, resolved)))
    merged = deep_merge(merged, data)
    for override in overrides:
        apply_override(merged, override)
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the dotted key and the YAML-typed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set optimizer.lr=0.01")
    if any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty part in the dotted key {key!r}")
    try:
        value = parse_yaml(raw, source=f"--set {key}")
    except ConfigError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc.message})") from None
    return key, value


def split_key(key: str) -> list[str]:
    """Path of a dotted key; ``grid.x.y`` / ``zip.x.y`` address the single axis ``x.y`` of that section."""
    head, _, rest = key.partition(".")
    if head in AXIS_SECTIONS and rest:
        return [head, rest]
    return key.split(".")


def set_dotted(config: dict, key: str | list[str], value: Any, *, source: str = "") -> None:
    """Set ``config[a][b][c] = value`` for ``key = "a.b.c"``, creating missing dicts."""
    parts = split_key(key) if isinstance(key, str) else key
    node = config
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"{source or 'override'} sets `{'.'.join(parts)}` but `{where}` is a "
                f"{type(child).__name__} ({child!r}), not a section"
            )
        node = child
    node[parts[-1]] = value


def apply_override(config: dict, override: str) -> tuple[str, Any]:
    """Apply one ``--set`` override in place; return the parsed (key, value)."""
    key, value = parse_override(override)
    set_dotted(config, key, value, source=f"--set {override!r}")
    return key, value


__all__ = [
    "AXIS_SECTIONS",
    "apply_override",
    "deep_merge",
    "load_config",
    "load_yaml",
    "parse_override",
    "parse_yaml",
    "set_dotted",
    "split_key",
]
