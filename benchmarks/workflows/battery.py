"""The comparison battery: the CPU tasks that ``compare-mine`` judges and ``calibrate`` measures.

A battery file (``configs/battery/battery.yaml``) names each task's config and what the task is. Every
battery config runs ONE optimizer, the baseline (AdamP at that task's recipe), over ``grid: {train.seed:
[...]}`` and nothing else, so that swapping the optimizer section gives exactly the run a user's optimizer
is compared with. The probes are built from that section here, in one place:

* ``broken``: torch SGD at lr 1e-4 without momentum, an optimizer that barely trains;
* ``moderate``: the baseline at a third of its learning rate, moderately worse on a short budget;
* ``aa``: the baseline itself on an independent seed stream (seed s + :data:`AA_SEED_OFFSET` is paired with
  the baseline's seed s: other initial weights and data order, the same optimizer), so its paired
  differences are real run-to-run noise with mean 0;
* ``untrained``: SGD at lr 0, the model as initialised (batch-norm statistics still follow the data), for
  the headroom of the metric.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from benchmarks.config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BATTERY = ROOT / "configs" / "battery" / "battery.yaml"
#: the A/A probe's seed s + this offset is paired with the baseline's seed s
AA_SEED_OFFSET = 1000
PROBES = ("broken", "moderate", "aa", "untrained")
BROKEN = {"name": "sgd", "lr": 1.0e-4, "momentum": 0.0}
UNTRAINED = {"name": "sgd", "lr": 0.0}


@dataclass(frozen=True)
class BatteryTask:
    name: str
    config: Path
    what: str
    #: the best value the primary metric can take (100 for accuracies in %, 1 for a perplexity), if known
    ceiling: float | None = None
    #: (folder relative to the repository root, module that writes it) for data generated on first use
    data: tuple[str, str] | None = None


@dataclass(frozen=True)
class Battery:
    path: Path
    tasks: tuple[BatteryTask, ...]
    #: the deterministic toy shown beside the verdicts (values, never a verdict)
    toy: Path | None = None

    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def select(self, only: str | None) -> list[BatteryTask]:
        if not only:
            return list(self.tasks)
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - set(self.names()) - {"toy"})
        if unknown:
            raise ConfigError(f"--only: unknown task(s) {', '.join(unknown)}; the battery ({self.path}) has: "
                              f"{', '.join(self.names())}" + (", toy" if self.toy else ""))
        return [t for t in self.tasks if t.name in wanted]

    def wants_toy(self, only: str | None) -> bool:
        return self.toy is not None and (not only or "toy" in [w.strip() for w in only.split(",")])


def load_battery(path: str | Path | None = None) -> Battery:
    """Read a battery file; every problem is a ConfigError naming the file and key."""
    from benchmarks.config.loader import load_yaml

    path = Path(path) if path is not None else DEFAULT_BATTERY
    raw = load_yaml(path)
    where = str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict) or not raw["tasks"]:
        raise ConfigError("a battery file needs `tasks:`, a mapping of task names to {config, what, ceiling}",
                          source=where)
    unknown = sorted(set(raw) - {"tasks", "toy"})
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; a battery file has `tasks` and `toy`", source=where)
    tasks = []
    for name, spec in raw["tasks"].items():
        if not isinstance(name, str) or not name.replace("_", "").isalnum() or name == "toy":
            raise ConfigError(f"tasks: {name!r} is not a valid task name (letters, digits, _; not 'toy')", source=where)
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), str):
            raise ConfigError(f"tasks.{name} needs `config:` (a path relative to the battery file)", source=where)
        bad = sorted(set(spec) - {"config", "what", "ceiling", "data"})
        if bad:
            raise ConfigError(f"tasks.{name}: unknown key(s) {', '.join(bad)}; valid: config, what, ceiling, data",
                              source=where)
        ceiling = spec.get("ceiling")
        if ceiling is not None and (isinstance(ceiling, bool) or not isinstance(ceiling, (int, float))):
            raise ConfigError(f"tasks.{name}.ceiling must be a number, got {ceiling!r}", source=where)
        data = spec.get("data")
        if data is not None:
            if not (isinstance(data, dict) and set(data) == {"folder", "module"}
                    and all(isinstance(v, str) for v in data.values())):
                raise ConfigError(f"tasks.{name}.data must be {{folder: PATH, module: python.module}}", source=where)
            data = (data["folder"], data["module"])
        config = (path.parent / spec["config"]).resolve()
        if not config.is_file():
            raise ConfigError(f"tasks.{name}.config: {config} is not a file", source=where)
        tasks.append(BatteryTask(name, config, str(spec.get("what") or name),
                                 None if ceiling is None else float(ceiling), data))
    toy = raw.get("toy")
    if toy is not None:
        if not isinstance(toy, str) or not (path.parent / toy).is_file():
            raise ConfigError(f"toy: {toy!r} is not a config file (relative to the battery file)", source=where)
        toy = (path.parent / toy).resolve()
    return Battery(path.resolve(), tuple(tasks), toy)


def load_task_config(task: BatteryTask) -> dict[str, Any]:
    """The task's config (``base:`` merged), checked against the battery contract."""
    from benchmarks.config.loader import load_config

    cfg = load_config(task.config)
    where = str(task.config)
    opt = cfg.get("optimizer")
    if not isinstance(opt, dict) or not isinstance(opt.get("name"), str):
        raise ConfigError("a battery config names its baseline in `optimizer:` (name, lr, ...)", source=where)
    lr = opt.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError("the baseline in `optimizer:` needs a learning rate `lr` > 0 (the moderate probe is "
                          "the baseline at lr / 3)", source=where)
    if cfg.get("zip"):
        raise ConfigError("a battery config has no `zip:` (one optimizer over seeds only)", source=where)
    axes = set((cfg.get("grid") or {}).keys())
    if axes != {"train.seed"}:
        raise ConfigError(f"a battery config varies only `grid: {{train.seed: [...]}}`, not {sorted(axes)}",
                          source=where)
    return cfg


def config_digest(cfg: Mapping[str, Any]) -> str:
    """A short hash of a task's config without its seeds: a calibration card is valid for this digest only."""
    body = {k: v for k, v in cfg.items() if k not in ("grid", "tags")}
    text = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_seeds(cfg: Mapping[str, Any], seeds: Sequence[int] | None) -> dict[str, Any]:
    """``cfg`` with ``grid.train.seed`` set to ``seeds`` (unchanged when None)."""
    cfg = dict(cfg)
    if not seeds:
        return cfg
    grid = dict(cfg.get("grid") or {})
    grid["train.seed"] = list(seeds)
    zipped = dict(cfg.get("zip") or {})
    zipped.pop("train.seed", None)
    cfg["grid"] = grid
    if zipped:
        cfg["zip"] = zipped
    else:
        cfg.pop("zip", None)
    return cfg


def _strip_optimizer_axes(axes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (axes or {}).items()
            if not (k == "optimizer" or k.startswith("optimizer.") or k == "tags.optimizer")}


def with_optimizer(cfg: Mapping[str, Any], optimizer: Mapping[str, Any], seeds: Sequence[int] | None = None,
                   tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``cfg`` with every optimizer axis removed and ``optimizer`` as its one optimizer (and the seeds set)."""
    out = dict(cfg)
    for key in ("grid", "zip"):
        kept = _strip_optimizer_axes(out.get(key))
        if kept:
            out[key] = kept
        else:
            out.pop(key, None)
    out["optimizer"] = dict(optimizer)
    old_tags = out.get("tags")
    if isinstance(old_tags, dict) and "optimizer" in old_tags:
        old_tags = {**old_tags, "optimizer": short_name(str(optimizer["name"]))}
    if tags:
        out["tags"] = {**(old_tags if isinstance(old_tags, dict) else {}), **tags}
    elif old_tags is not None:
        out["tags"] = old_tags
    return with_seeds(out, seeds)


def short_name(optimizer: str) -> str:
    """``pkg.module:Class`` / ``torch.optim.SGD`` / ``adamp`` -> the class or registry name."""
    return optimizer.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def probe_optimizer(probe: str, baseline: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer section of ``probe`` (see the module doc) for a task whose baseline is ``baseline``."""
    if probe == "broken":
        return dict(BROKEN)
    if probe == "untrained":
        return dict(UNTRAINED)
    if probe == "moderate":
        return {**baseline, "lr": float(baseline["lr"]) / 3.0}
    if probe == "aa":
        return dict(baseline)
    raise ValueError(f"unknown probe {probe!r}; probes: {', '.join(PROBES)}")


def probe_seeds(probe: str, seeds: Sequence[int]) -> list[int]:
    return [s + AA_SEED_OFFSET for s in seeds] if probe == "aa" else list(seeds)


def write_config(path: Path, cfg: Mapping[str, Any], header: str) -> Path:
    from benchmarks.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"# {line}\n" for line in header.splitlines())
                      + yaml.safe_dump(dict(cfg), sort_keys=False))
    return path


def parse_seeds(text: str | None, default: Sequence[int]) -> list[int]:
    if not text:
        return list(default)
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) >= AA_SEED_OFFSET:
        raise ConfigError(f"--seeds needs distinct integers in [0, {AA_SEED_OFFSET}), got {text!r} (seeds from "
                          f"{AA_SEED_OFFSET} on are the A/A probe's independent stream)")
    return seeds


__all__ = ["AA_SEED_OFFSET", "Battery", "BatteryTask", "DEFAULT_BATTERY", "PROBES", "config_digest",
           "load_battery", "load_task_config", "parse_seeds", "probe_optimizer", "probe_seeds", "short_name",
           "with_optimizer", "with_seeds", "write_config"]
