"""Search spaces of ``tune``: the ``search:`` section of a config (or a ``--space FILE``) and its points.

```yaml
search:                                   # dotted keys of the run config -> one distribution each
  optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}
  optimizer.weight_decay: {log_uniform: [1.0e-4, 1.0e-1]}
  optimizer.momentum: {uniform: [0.8, 0.99]}
  train.batch_size: {int_uniform: [32, 128]}   # both ends included
  optimizer.nesterov: {choice: [true, false]}
```

Points are a scrambled Sobol sequence (scipy.stats.qmc) in the unit cube, seeded, mapped to each dimension;
the sequence is deterministic given the seed, so the first k points of ``--trials 8`` are the points of
``--trials 4`` when k = 4 (a tune can be extended without rerunning its trials). A key must name a value of
the resolved run config (every default filled in) or a keyword argument the optimizer accepts; anything
else (an unknown distribution, bounds in the wrong order, a log range that touches 0, an unknown key) is a
:class:`ConfigError` naming the file and the key, before anything runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import ConfigError, did_you_mean

DISTRIBUTIONS = ("log_uniform", "uniform", "int_uniform", "choice")
#: significant digits kept of a sampled float: enough to tell points apart, short enough to read in a run id's
#: config and a report
DIGITS = 6


@dataclass(frozen=True)
class Dimension:
    """One searched key and its distribution."""

    key: str
    kind: str  # one of DISTRIBUTIONS
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def value(self, u: float) -> Any:
        """The value at ``u`` in [0, 1) of the unit interval (the quantile function of the distribution)."""
        u = min(max(float(u), 0.0), math.nextafter(1.0, 0.0))
        if self.kind == "choice":
            return self.choices[int(u * len(self.choices))]
        if self.kind == "int_uniform":
            return int(self.low + math.floor(u * (self.high - self.low + 1)))
        if self.kind == "log_uniform":
            x = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        x = float(f"{x:.{DIGITS}g}")
        return min(max(x, self.low), self.high)  # rounding must not leave the declared range

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice {list(self.choices)}"
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a search and where they were declared (``source``, for messages)."""

    dims: tuple[Dimension, ...]
    source: str = "search"

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dims]

    def to_section(self) -> dict[str, Any]:
        """The space as a ``search:`` mapping (what :func:`parse_search` reads back)."""
        out: dict[str, Any] = {}
        for d in self.dims:
            out[d.key] = {d.kind: list(d.choices) if d.kind == "choice" else [d.low, d.high]}
        return out

    def points(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """The first ``n`` points of the seeded scrambled Sobol sequence, as ``{key: value}`` mappings."""
        return [{d.key: d.value(u) for d, u in zip(self.dims, row)} for row in unit_points(len(self.dims), n, seed)]


def unit_points(d: int, n: int, seed: int = 0) -> list[list[float]]:
    """``n`` points of a scrambled Sobol sequence in [0, 1)^d; the first k do not depend on n."""
    if n < 1:
        raise ConfigError(f"--trials must be >= 1, got {n}")
    if d < 1:
        return [[] for _ in range(n)]
    from scipy.stats import qmc

    engine = qmc.Sobol(d, scramble=True, rng=seed)
    with warnings.catch_warnings():
        # scipy warns that n is not a power of 2 (balance properties); a prefix of the sequence is what we want
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(n).tolist()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_dimension(key: Any, spec: Any, source: str) -> Dimension:
    """One ``key: {distribution: args}`` entry; a ConfigError names ``source`` and the key otherwise."""
    where = f"`search.{key}`"
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"search keys are dotted config keys like `optimizer.lr`, got {key!r}", source=source)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where} must be one distribution, e.g. `{key}: {{log_uniform: [1.0e-4, 1.0e-2]}}`; "
                          f"got {spec!r}. Distributions: {', '.join(DISTRIBUTIONS)}", source=source)
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution `{kind}`{did_you_mean(str(kind), DISTRIBUTIONS)} "
                          f"Distributions: {', '.join(DISTRIBUTIONS)}.", source=source)
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice needs a non-empty list of values, got {args!r}", source=source)
        return Dimension(key, kind, choices=tuple(args))
    if not (isinstance(args, list) and len(args) == 2 and all(_number(a) for a in args)):
        raise ConfigError(f"{where}: {kind} needs [low, high] (two finite numbers), got {args!r}", source=source)
    low, high = args
    if kind == "int_uniform":
        if not all(isinstance(a, int) for a in args):
            raise ConfigError(f"{where}: int_uniform bounds must be integers, got {args!r}", source=source)
        if low > high:
            raise ConfigError(f"{where}: int_uniform needs low <= high, got [{low}, {high}]", source=source)
        return Dimension(key, kind, low, high)
    if not low < high:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]", source=source)
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{where}: log_uniform needs 0 < low < high (a log scale never reaches 0), got "
                          f"[{low}, {high}]; search 0 with `choice` or a uniform range", source=source)
    return Dimension(key, kind, float(low), float(high))


def parse_search(section: Any, source: str = "search") -> SearchSpace:
    """Parse a ``search:`` mapping (or the contents of a ``--space`` file) into a :class:`SearchSpace`."""
    if isinstance(section, dict) and set(section) == {"search"}:
        section = section["search"]  # a --space file may hold the section itself or its contents
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"a search space maps dotted keys to distributions, e.g. `search: {{optimizer.lr: "
                          f"{{log_uniform: [1.0e-4, 1.0e-2]}}}}`; got {section!r}", source=source)
    dims = [parse_dimension(k, v, source) for k, v in section.items()]
    for d in dims:
        for other in dims:
            if other.key.startswith(d.key + "."):
                raise ConfigError(f"`search.{d.key}` and `search.{other.key}` overlap: search each key once",
                                  source=source)
    return SearchSpace(tuple(dims), source)


def _lookup(config: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_keys(space: SearchSpace, resolved: Mapping[str, Any], optimizer_kwargs: Sequence[str] = (),
               any_optimizer_kwarg: bool = False) -> None:
    """Every key of ``space`` names a value of the resolved run config or an optimizer keyword argument.

    ``optimizer_kwargs`` are the names the optimizer's constructor takes; ``any_optimizer_kwarg`` says it
    takes ``**kwargs`` (then any ``optimizer.<name>`` is accepted and the optimizer itself judges it).
    """
    known = [k for k in _leaves(resolved) if not k.startswith(("tags", "name", "slurm"))]
    for d in space.dims:
        head = d.key.split(".", 1)[0]
        if head in ("tags", "name", "slurm", "grid", "zip", "base", "search"):
            raise ConfigError(f"`search.{d.key}`: `{head}` is not part of what a run computes; search keys of "
                              f"data, model, optimizer or train", source=space.source)
        found, value = _lookup(resolved, d.key)
        if found and isinstance(value, dict) and d.kind != "choice":
            raise ConfigError(f"`search.{d.key}` is a section, not a value: search one of its keys", source=space.source)
        if found:
            continue
        rest = d.key.removeprefix("optimizer.")
        if d.key.startswith("optimizer.") and "." not in rest and (rest in optimizer_kwargs or any_optimizer_kwarg):
            continue
        raise ConfigError(f"`search.{d.key}` is not a key of the run config (nor an argument of its optimizer)"
                          f"{did_you_mean(d.key, known)} Keys: {', '.join(known[:40])}"
                          f"{' ...' if len(known) > 40 else ''}", source=space.source)


def _leaves(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_leaves(value, dotted + "."))
        else:
            out.append(dotted)
    return out


def describe(point: Mapping[str, Any]) -> str:
    """``optimizer.lr=0.00123 optimizer.weight_decay=0.0042``."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


__all__ = ["DISTRIBUTIONS", "Dimension", "SearchSpace", "check_keys", "describe", "parse_dimension",
           "parse_search", "unit_points"]
