"""Grid expansion: ``grid:`` is a cartesian product over dotted keys, ``zip:`` varies keys together.

```yaml
grid:                       # every combination (the last key varies fastest)
  optimizer.name: [sgd, sgdp]
  train.seed: [0, 1, 2]
zip:                        # equal-length lists, element i of each list goes together; crossed with grid
  optimizer.lr: [0.1, 0.001]
  optimizer.weight_decay: [1.0e-4, 1.0e-2]
```

``zip:`` may also be a list of such mappings (several independent zipped groups, crossed with each other).
A grid value that is a mapping *replaces* the section or key it addresses (``optimizer: [{name: sgd, lr: 0.1}]``
gives exactly that optimizer section, without keys inherited from the file's own ``optimizer:``).

Each key is varied once: a section (``optimizer``) and a key inside it (``optimizer.lr``) may both be
varied only when no value of the section sets that key (the key then completes each section); otherwise one
would silently override the other, and labels zipped with either would go to the wrong runs. Points are generated lazily (:func:`iter_points`), and :func:`count_points`
gives the size of a grid without building it.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Mapping

from .errors import ConfigError


def copy_tree(obj: Any) -> Any:
    """Copy a tree of dicts and lists (YAML data); leaves are shared. Much faster than copy.deepcopy."""
    if isinstance(obj, dict):
        return {k: copy_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [copy_tree(v) for v in obj]
    return obj


def _axes(section: Any, name: str) -> list[tuple[str, list]]:
    if section is None:
        return []
    if not isinstance(section, dict):
        raise ConfigError(f"`{name}` must map dotted keys to lists of values, got a {type(section).__name__}")
    axes = []
    for key, values in section.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"`{name}` keys must be dotted config keys like `optimizer.lr`, got {key!r}")
        if not isinstance(values, list):
            raise ConfigError(
                f"`{name}.{key}` must be a list of values, got {type(values).__name__} {values!r} "
                f"(write `{key}: [{values!r}]` for a single value)"
            )
        if not values:
            raise ConfigError(f"`{name}.{key}` is an empty list: it would expand to zero runs")
        if key.split(".")[0] in ("grid", "zip", "base"):
            raise ConfigError(f"`{name}.{key}`: `{key.split('.')[0]}` cannot be varied by a grid")
        axes.append((key, values))
    return axes


def _zip_groups(section: Any) -> list[list[tuple[str, list]]]:
    groups = section if isinstance(section, list) else [section] if section is not None else []
    out = []
    for i, group in enumerate(groups):
        name = "zip" if not isinstance(section, list) else f"zip[{i}]"
        axes = _axes(group, name)
        lengths = {key: len(values) for key, values in axes}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"`{k}` has {n}" for k, n in lengths.items())
            raise ConfigError(f"`{name}` lists must all have the same length: {listed}")
        if axes:
            out.append(axes)
    return out


def _factors(config: Mapping[str, Any]) -> list[list[tuple[str, list]]]:
    """The factors of the product: one single-axis group per grid key, then each zip group; checked."""
    grid_axes = _axes(config.get("grid"), "grid")
    zip_groups = _zip_groups(config.get("zip"))
    seen: dict[str, str] = {}
    for key, _ in grid_axes:
        seen[key] = "grid"
    for i, group in enumerate(zip_groups):
        where = "zip" if not isinstance(config.get("zip"), list) else f"zip[{i}]"
        for key, _ in group:
            if key in seen:
                raise ConfigError(f"`{key}` is varied twice (in `{seen[key]}` and in `zip`); vary each key once")
            seen[key] = where
    values_of = {key: values for key, values in grid_axes}
    values_of.update((key, values) for group in zip_groups for key, values in group)
    for key in seen:
        parts = key.split(".")
        for n in range(1, len(parts)):
            section = ".".join(parts[:n])
            inner = parts[n:]
            if section in seen and any(_sets(value, inner) for value in values_of[section]):
                raise ConfigError(
                    f"`{seen[section]}.{section}` sets `{'.'.join(inner)}` inside its `{section}` values and "
                    f"`{seen[key]}.{key}` varies the same key: one would silently override the other (and labels "
                    f"paired with either would go to the wrong runs). Vary each key once: either inside the "
                    f"`{section}` values or as `{key}`")
    return [[(key, values)] for key, values in grid_axes] + zip_groups


def _sets(value: Any, inner: list[str]) -> bool:
    """Whether the section value ``value`` holds the dotted path ``inner``."""
    for part in inner:
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def count_points(config: Mapping[str, Any]) -> int:
    """Number of grid points (runs before de-duplication), computed without expanding the grid."""
    total = 1
    for group in _factors(config):
        total *= len(group[0][1])
    return total


def iter_points(config: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The grid points one at a time: each maps dotted keys to the values of one run (one ``{}`` without a grid)."""
    factors = _factors(config)
    for combo in itertools.product(*(range(len(group[0][1])) for group in factors)):
        point: dict[str, Any] = {}
        for group, i in zip(factors, combo):
            for key, values in group:
                point[key] = values[i]
        yield point


def grid_points(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The list of grid points: each maps dotted keys to the values of one run (``[{}]`` without a grid)."""
    return list(iter_points(config))


def iter_expand(config: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Expand ``grid:``/``zip:`` lazily into ``(run_config, point)`` pairs; run configs hold no grid/zip keys."""
    base = copy_tree({k: v for k, v in config.items() if k not in ("grid", "zip")})
    for point in iter_points(config):
        # Copy only the dicts on the paths the point sets; untouched sections are shared between runs,
        # which keeps a 10,000-run expansion fast. Run configs are read-only from here on (validation
        # builds new dicts), so the sharing is never visible.
        run = dict(base)
        for key in sorted(point, key=lambda k: k.count(".")):
            parts = key.split(".")
            node = run
            for i, part in enumerate(parts[:-1]):
                child = node.get(part)
                if child is None:
                    child = {}
                elif isinstance(child, dict):
                    child = dict(child)
                else:
                    raise ConfigError(
                        f"grid key `{key}` sets `{key}` but `{'.'.join(parts[: i + 1])}` is a "
                        f"{type(child).__name__} ({child!r}), not a section"
                    )
                node[part] = child
                node = child
            node[parts[-1]] = copy_tree(point[key])
        yield run, point


def expand(config: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Expand ``grid:``/``zip:`` into the list of ``(run_config, point)`` pairs (see :func:`iter_expand`)."""
    return list(iter_expand(config))


def describe_point(point: Mapping[str, Any]) -> str:
    """Short one-line label of a grid point: ``optimizer.name=sgd train.seed=1``."""
    parts = []
    for key, value in point.items():
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
            parts.append(f"{key}={{{value}}}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


__all__ = ["copy_tree", "count_points", "describe_point", "expand", "grid_points", "iter_expand", "iter_points"]
