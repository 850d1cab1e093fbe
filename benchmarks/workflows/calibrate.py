"""``python -m benchmarks calibrate``: measure what each task of the battery can detect.

Runs the baseline and the probes of ``benchmarks.workflows.battery`` on every battery task (one task after
another; each task's runs in parallel) into ``OUT/<task>/``, then writes each task's sensitivity card
(``benchmarks.analysis.sensitivity``) into ``CARDS/cards.json`` and ``CARDS/cards.md`` as soon as that task
is done, so an interrupted calibration keeps the cards it finished; rerunning the same command resumes.
``compare-mine`` prints these cards beside its verdicts and gives no verdict on a task that cannot see.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.config.errors import ConfigError

from . import battery as bat
from . import launch

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_CARDS = bat.ROOT / "results" / "battery"
#: the family-wise error rate of a whole battery's verdicts (Bonferroni over its tasks)
FAMILY_ALPHA = 0.05


def task_alpha(n_tasks: int) -> float:
    """Each task's test level, so that any false win or loss over ``n_tasks`` has probability <= 5%."""
    return FAMILY_ALPHA / max(1, n_tasks)


def read_cards(folder: Path = DEFAULT_CARDS) -> dict[str, Any]:
    """The cards file as written by :func:`write_cards` ({} when there is none)."""
    from benchmarks.store import read_json_checked

    path = Path(folder) / "cards.json"
    if not path.exists():
        return {}
    data, error = read_json_checked(path)
    if error or not isinstance(data, dict) or not isinstance(data.get("cards"), dict):
        print(f"warning: {path} is not a cards file ({error or 'no `cards` mapping'}); ignoring it", file=sys.stderr)
        return {}
    return data


def _clean(obj: Any) -> Any:
    """JSON without NaN: NaN and infinities become null (a card value that could not be measured)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_cards(folder: Path, cards: dict[str, Any], machine: str) -> None:
    from benchmarks.analysis.sensitivity import cards_markdown
    from benchmarks.atomic import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    body = {"machine": machine, "cards": cards}
    write_text_atomic(folder / "cards.json", json.dumps(_clean(body), indent=1, sort_keys=True) + "\n")
    header = (f"# Sensitivity cards of the comparison battery\n\nWritten by `python -m benchmarks calibrate` "
              f"(`make calibrate`) on: {machine}. Each row: the task's baseline (AdamP at its recipe), the "
              "probes' mean paired differences (probe − baseline) with their verdicts at the card's alpha, "
              "the minimum detectable effect (80% power) from the A/A sd. Definitions: "
              "benchmarks/analysis/sensitivity.py and docs/battery.md.")
    write_text_atomic(folder / "cards.md", cards_markdown(cards, header))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="measure what each battery task can detect (probe optimizers) and write its sensitivity card",
        description=("Run the baseline and the probe optimizers (broken: SGD lr 1e-4 without momentum; moderate: "
                     "the baseline at lr/3; A/A: the baseline on an independent seed stream; untrained: lr 0) on "
                     "every battery task and write the cards that compare-mine prints beside its verdicts."),
    )
    p.add_argument("--battery", type=Path, default=bat.DEFAULT_BATTERY, help="battery file (default: %(default)s)")
    p.add_argument("--only", default=None, metavar="TASKS", help="comma-separated subset of the battery's tasks")
    p.add_argument("--seeds", default=None, metavar="S,S,...", help="seeds (default: 0,1,2,3,4)")
    p.add_argument("--out", type=Path, default=Path("runs/calibrate"), help="runs folder (default: %(default)s)")
    p.add_argument("--cards", type=Path, default=DEFAULT_CARDS, help="cards folder (default: results/battery)")
    p.add_argument("--executor", default="local", choices=("local", "debug", "slurm"))
    p.add_argument("--max-parallel", type=int, default=None, metavar="N", help="runs at a time (default: the cores)")
    p.add_argument("--no-run", action="store_true", help="only recompute the cards from the runs in OUT")
    p.set_defaults(func=cmd_calibrate)


def probe_configs(task: bat.BatteryTask, cfg: dict[str, Any], seeds: list[int], folder: Path) -> list[Path]:
    """One config per probe (and the baseline) for ``task``, tagged with ``tags.probe``."""
    paths = []
    baseline = dict(cfg["optimizer"])
    for probe in ("baseline", *bat.PROBES):
        opt = baseline if probe == "baseline" else bat.probe_optimizer(probe, baseline)
        run_seeds = bat.probe_seeds(probe, seeds)
        out = bat.with_optimizer(cfg, opt, run_seeds, tags={"probe": probe})
        paths.append(bat.write_config(folder / f"{task.name}-{probe}.yaml", out,
                                      f"calibration probe {probe!r} of {task.config} (written by calibrate)"))
    return paths


def cmd_calibrate(args: argparse.Namespace) -> int:
    try:
        battery = bat.load_battery(args.battery)
        tasks = battery.select(args.only)
        seeds = bat.parse_seeds(args.seeds, DEFAULT_SEEDS)
        configs = {t.name: bat.load_task_config(t) for t in tasks}
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out = args.out.resolve()  # the runs start in the repository root, wherever this command was started
    alpha = task_alpha(len(battery.tasks))
    plans: list[tuple[bat.BatteryTask, list[Path]]] = []
    for task in tasks:
        paths = probe_configs(task, configs[task.name], seeds, args.out / "configs")
        plans.append((task, paths))
    if not args.no_run:
        for task, paths in plans:
            why = launch.ensure_data(task)
            if why:
                print(f"error: {task.name}: {why}", file=sys.stderr)
                return 2
            rc = launch.dry_run(paths, args.out / task.name)
            if rc != 0:
                print(f"error: the calibration configs of {task.name} do not validate (exit {rc}; "
                      f"python -m benchmarks run {' '.join(map(str, paths))} --dry-run shows why)", file=sys.stderr)
                return rc
    machine = launch.machine()
    failed = []
    try:
        for task, paths in plans:
            print(f"== {task.name}: {task.what} ({len(seeds)} seeds x 5 probes)", flush=True)
            started = time.monotonic()
            to_run = launch.count_to_run(paths, args.out / task.name)
            if not args.no_run:
                rc = launch.run(paths, args.out / task.name, args.executor, args.max_parallel)
                if rc == 130:
                    raise KeyboardInterrupt
                if rc != 0:
                    failed.append(f"{task.name} (exit {rc})")
            card = task_card(task, configs[task.name], args.out / task.name, alpha, seeds)
            if card is None:
                continue
            card.update(machine=machine, created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
            existing = read_cards(args.cards).get("cards", {})
            if to_run and not args.no_run:
                # what a run costs as launched (process start, data, evaluation), not only its training loop
                card["seconds_per_run"] = (time.monotonic() - started) * launch.parallel(args.max_parallel) / to_run
            elif task.name in existing:
                card["seconds_per_run"] = existing[task.name].get("seconds_per_run")
            existing[task.name] = card
            order = battery.names()  # the battery's order, then cards of tasks it no longer has
            existing = {k: existing[k] for k in sorted(existing, key=lambda k: (k not in order, order.index(k)
                                                                               if k in order else 0, k))}
            write_cards(args.cards, existing, machine)
            from benchmarks.analysis.sensitivity import card_line

            print(f"   card: {card_line(card, 3)}; A/A {card['probes'].get('aa', {}).get('verdict', '–')}", flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the cards written so far are in {args.cards}/cards.md; rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    print(f"cards: {args.cards / 'cards.md'}")
    if failed:
        print(f"runs that did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def task_card(task: bat.BatteryTask, cfg: dict[str, Any], folder: Path, alpha: float,
              seeds: list[int]) -> dict[str, Any] | None:
    import pandas as pd

    from benchmarks.analysis.sensitivity import build_card, probe_values
    from benchmarks.store import load_results

    frame = load_results(folder)
    if frame.empty or "tags.probe" not in frame.columns:
        print(f"   {task.name}: no finished calibration runs in {folder}", file=sys.stderr)
        return None
    frame = frame[frame["train.seed"].astype(int).isin(set(seeds) | {s + bat.AA_SEED_OFFSET for s in seeds})]
    try:
        metric, mode, values = probe_values(frame, str(frame["task"].iloc[0]), bat.AA_SEED_OFFSET)
        card = build_card(values, mode, alpha, task.ceiling)
    except (KeyError, ValueError) as exc:
        print(f"   {task.name}: no card ({exc})", file=sys.stderr)
        return None
    base = frame[(frame["tags.probe"].astype(str) == "baseline") & (frame["status"] == "done")]
    wall = pd.to_numeric(base.get("timing.wall_s"), errors="coerce").dropna() if "timing.wall_s" in base else None
    card.update(metric=metric, config=str(task.config.relative_to(bat.ROOT)) if task.config.is_relative_to(bat.ROOT)
                else str(task.config), digest=bat.config_digest(cfg), baseline_optimizer=cfg["optimizer"],
                train_seconds=float(wall.median()) if wall is not None and not wall.empty else None)
    return card


__all__ = ["DEFAULT_CARDS", "FAMILY_ALPHA", "cmd_calibrate", "read_cards", "register", "task_alpha", "write_cards"]
