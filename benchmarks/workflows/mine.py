"""``python -m benchmarks compare-mine OPT``: does a new optimizer beat AdamP on the CPU battery?

For each task of the battery (``configs/battery/battery.yaml``; see ``benchmarks.workflows.battery``) two
configs are written under ``OUT/configs/``: the task's baseline (AdamP at the task's recipe) and the same
config with ``OPT`` and its keyword arguments in place of the baseline. Everything is validated before
anything runs. Then, one task after another, both run into ``OUT/<task>/`` and the task's verdict is printed
as soon as its runs finish, with the task's sensitivity card (``results/battery/cards.md``, written by
``calibrate``) beside it; ``OUT/report.md`` is rewritten after each task. Ctrl-C keeps what was printed and
written; the same command resumes (finished runs are never rerun).

Statistics: the paired t-test of ``compare`` at alpha = 0.05 / (number of tasks judged), so that the chance
of any false win or loss over the whole battery is at most 5% while each task's verdict can be printed as
soon as it is known. A task whose card says it cannot see (the broken probe was no loss at 3 seeds) gives
no verdict. The deterministic 2-D toy is shown beside (values, never a verdict).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from benchmarks.config.errors import ConfigError

from . import battery as bat
from . import launch
from .calibrate import DEFAULT_CARDS, read_cards, task_alpha
from .mine_report import TaskPlan

DEFAULT_SEEDS = (0, 1, 2)
MINE = "mine"
#: each task's sweep output (progress, warnings) goes here; the terminal shows the verdicts
LOG = "compare-mine.log"


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
    return _check_kwargs(value, f"--kw {text!r}")


def _check_kwargs(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a mapping of argument names to values, e.g. 'lr: 1.0e-3'")
    if "name" in value:
        raise ConfigError(f"{where} must not set `name`: the optimizer is the command's first argument")
    empty = sorted(k for k, v in value.items() if v is None)
    if empty:
        raise ConfigError(f"{where}: {', '.join(empty)} has no value (write e.g. 'lr: 1.0e-3')")
    return value


def read_kw_file(path: Path, tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A YAML file mapping task names (and ``toy``) to the optimizer's keyword arguments on that task."""
    from benchmarks.config.loader import load_yaml

    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError("--kw-file must map task names to keyword arguments, e.g. `digits: {lr: 1.0e-3}`",
                          source=str(path))
    unknown = sorted(set(map(str, raw)) - set(tasks) - {"toy"})
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; battery tasks: {', '.join(tasks)}, toy",
                          source=str(path))
    return {str(k): _check_kwargs(v or {}, f"{path}: {k}") for k, v in raw.items()}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare-mine",
        help="does a new optimizer beat AdamP? run it on the CPU battery and judge it task by task",
        description=(
            "Run OPT and the battery's baseline (AdamP at each task's recipe) on every battery task, one task "
            "after another, printing each task's verdict as soon as its runs finish, with what the task can "
            "detect (its sensitivity card). A module outside this project must be importable: install it or "
            "put its folder on PYTHONPATH. Ctrl-C keeps the verdicts printed; the same command resumes."),
        epilog="example: PYTHONPATH=~/code python -m benchmarks compare-mine mypkg.signum:Signum --kw 'lr: 1e-4'",
    )
    p.add_argument("optimizer", metavar="OPT", help="optimizer: a registry name, torch.optim class or pkg.module:Class")
    p.add_argument("--kw", default=None, metavar="YAML",
                   help="its keyword arguments on every task, as YAML, e.g. 'lr: 1.0e-3, weight_decay: 0.01'")
    p.add_argument("--kw-file", type=Path, default=None, metavar="FILE",
                   help="YAML mapping task -> keyword arguments; a task listed there uses those instead of --kw")
    p.add_argument("--out", type=Path, default=Path("runs/mine"), help="results folder (default: %(default)s)")
    p.add_argument("--battery", type=Path, default=bat.DEFAULT_BATTERY, help="battery file (default: %(default)s)")
    p.add_argument("--cards", type=Path, default=DEFAULT_CARDS, help="sensitivity cards folder (default: results/battery)")
    p.add_argument("--only", default=None, metavar="TASKS", help="comma-separated subset of the battery's tasks (and toy)")
    p.add_argument("--seeds", default=None, metavar="S,S,...", help="seeds (default: 0,1,2; verdicts need >= 3)")
    p.add_argument("--with-suite", action="store_true",
                   help="also run AdamW at the baseline's recipe (AdamP without its projection): shown, not judged")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="give both sides the same tuning budget: N quasi-random trials per task from their search "
                        "spaces, selected on validation, then compared at --seeds (docs/tuning.md)")
    p.add_argument("--space", type=Path, default=None, metavar="FILE",
                   help="with --trials: your optimizer's search space (YAML: key: {log_uniform: [a, b]} ...); "
                        "default lr log-uniform over [1e-5, 1e-1]")
    p.add_argument("--executor", default="local", choices=("local", "debug", "slurm"),
                   help="how runs are launched (default: %(default)s)")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N", help="runs at a time (default: the cores)")
    p.add_argument("--margin", action="append", default=[], metavar="[TASK=]VALUE",
                   help="equivalence margin in the metric's units (repeatable); without one nothing is called a tie")
    p.set_defaults(func=cmd_compare_mine)


def _margins(items: Sequence[str], tasks: Sequence[str]) -> dict[str, float]:
    """``compare``'s --margin parsing, with the battery's task names as the only valid TASK."""
    from benchmarks.analysis.commands import parse_margins

    try:
        out = parse_margins(items)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    unknown = sorted(set(out) - set(tasks) - {"*"})
    if unknown:
        raise ConfigError(f"--margin: unknown task(s) {', '.join(unknown)}; tasks: {', '.join(tasks)}")
    return out


def plan_tasks(args: argparse.Namespace, battery: bat.Battery, tasks: list[bat.BatteryTask],
               kwargs: dict[str, Any], per_task: dict[str, dict[str, Any]], seeds: list[int]) -> list[TaskPlan]:
    cards = read_cards(args.cards).get("cards", {})
    plans = []
    for task in tasks:
        cfg = bat.load_task_config(task)
        baseline = dict(cfg["optimizer"])
        mine = {"name": args.optimizer, **per_task.get(task.name, kwargs)}
        folder = args.out / "configs"
        paths = [bat.write_config(folder / f"{task.name}-baseline.yaml", bat.with_optimizer(cfg, baseline, seeds),
                                  f"{task.config}: the baseline"),
                 bat.write_config(folder / f"{task.name}-{MINE}.yaml", bat.with_optimizer(cfg, mine, seeds),
                                  f"{task.config} with {args.optimizer} in place of the baseline")]
        if args.with_suite:
            suite = {"name": "adamw", "lr": baseline["lr"], "weight_decay": baseline.get("weight_decay", 0.0)}
            paths.append(bat.write_config(folder / f"{task.name}-suite.yaml", bat.with_optimizer(cfg, suite, seeds),
                                          f"{task.config} with AdamW at the baseline's recipe (not judged)"))
        card = cards.get(task.name)
        if card and card.get("digest") != bat.config_digest(cfg):
            card = None  # measured on another version of the config: it says nothing about this one
        plans.append(TaskPlan(task, cfg, baseline, mine, paths, card,
                              (card or {}).get("seconds_per_run")))
    return plans


def print_plan(plans: list[TaskPlan], toy: bool, out: Path, parallel: int, trials: int | None = None,
               n_seeds: int = 0) -> None:
    print(f"compare-mine: {len(plans)} task(s){' and the 2-D toy' if toy else ''}, into {out}/", flush=True)
    total, unknown = 0.0, []
    for p in plans:
        # with --trials: both sides' trials and final runs (an upper bound: finished ones are skipped)
        p.to_run = 2 * (trials + n_seeds) if trials else launch.count_to_run(p.paths, out / p.task.name)
        est = "" if p.seconds_per_run is None else f", about {p.seconds_per_run:.0f} s each"
        if p.seconds_per_run is None and p.to_run:
            unknown.append(p.task.name)
        total += (p.seconds_per_run or 0.0) * p.to_run
        print(f"  {p.task.name}: {p.to_run} run(s) to do{est} — {p.task.what}")
    minutes = total / max(1, parallel) / 60
    more = f" (+ {', '.join(unknown)}: no stored timing)" if unknown else ""
    print(f"estimate: about {minutes:.0f} min with {parallel} runs at a time{more}, from the timings stored with the "
          f"sensitivity cards. Ctrl-C keeps the verdicts printed; the same command resumes.", flush=True)


def cmd_compare_mine(args: argparse.Namespace) -> int:
    from .mine_report import judge_task, overall_line, summary_header, task_row, toy_row

    try:
        battery = bat.load_battery(args.battery)
        tasks = battery.select(args.only)
        seeds = bat.parse_seeds(args.seeds, DEFAULT_SEEDS)
        kwargs = parse_kwargs(args.kw)
        per_task = read_kw_file(args.kw_file, battery.names()) if args.kw_file else {}
        margins = _margins(args.margin, battery.names())
        if args.trials is not None and args.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {args.trials}")
        if args.space is not None and args.trials is None:
            raise ConfigError("--space is the search space of --trials: give --trials N too")
        if args.trials is not None:
            from .mine_tuned import TRIAL_SEED

            if TRIAL_SEED in seeds:
                raise ConfigError(f"--seeds must not include {TRIAL_SEED}: with --trials the tuning runs at that "
                                  "seed, and the selected points are compared at seeds the selection never saw")
        plans = plan_tasks(args, battery, tasks, kwargs, per_task, seeds)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out = args.out.resolve()  # the runs start in the repository root, wherever this command was started
    toy = battery.wants_toy(args.only)
    toy_paths = _toy_configs(battery, args, kwargs, per_task) if toy else []
    skipped = {}
    for p in list(plans):
        why = launch.ensure_data(p.task)
        if why:
            skipped[p.task.name] = why  # e.g. espeak-ng missing: said in the summary, never silently left out
            plans.remove(p)
    # everything validated before anything runs: a typo in OPT or --kw costs a second, not a sweep
    checks = [(p.task.name, _checked_paths(p, args)) for p in plans] + ([("toy", toy_paths)] if toy else [])
    for name, paths in checks:
        rc = launch.dry_run(paths, args.out / name)
        if rc != 0:
            print(f"error: the configs of {name} ({', '.join(map(str, paths))}) do not validate (exit {rc}); nothing "
                  f"was run", file=sys.stderr)
            return rc
    alpha = task_alpha(len(plans))
    parallel = launch.parallel(args.max_parallel)
    print_plan(plans, toy, args.out, parallel, args.trials, len(seeds))
    rows: list[str] = []
    failed = []
    report = args.out / "report.md"
    print("\n" + summary_header(alpha), flush=True)
    try:
        if toy:
            rc = launch.run(toy_paths, args.out / "toy", args.executor, args.max_parallel, log=args.out / "toy" / LOG)
            _interrupted(rc)
            rows.append(toy_row(args.out / "toy", args.optimizer))
            print(rows[-1], flush=True)
        for p in plans:
            if args.trials:
                judged, folder = _tuned(p, args, seeds)
            else:
                judged, folder = p, args.out / p.task.name
                log = folder / LOG
                print(f"(running {p.task.name}: {p.to_run} run(s); progress in {log})", file=sys.stderr, flush=True)
                rc = launch.run(p.paths, folder, args.executor, args.max_parallel, log=log)
                _interrupted(rc)
                if rc != 0:
                    failed.append(f"{p.task.name} (exit {rc}; its log: {log})")
            p.result = judge_task(judged, folder, args.optimizer, alpha, margins)
            rows.append(task_row(p, alpha))
            print(rows[-1], flush=True)
            _write(report, args, plans, rows, skipped, alpha, seeds)
    except KeyboardInterrupt:
        _write(report, args, plans, rows, skipped, alpha, seeds)
        print(f"\ninterrupted: the verdicts above are kept in {report}; rerun the same command to resume",
              file=sys.stderr)
        return 130
    for name, why in skipped.items():
        rows.append(f"| {name} | – | – | – | – | not run | {why} | |")
        print(rows[-1])
    _write(report, args, plans, rows, skipped, alpha, seeds)
    print("\n" + overall_line(plans, args.optimizer))
    print(f"full report (settings of both sides, per-seed values, cards): {report}")
    if failed:
        print(f"runs that did not finish: {', '.join(failed)} (see `python -m benchmarks status DIR`)", file=sys.stderr)
        return 1
    return 0


def _checked_paths(p: TaskPlan, args: argparse.Namespace) -> list[Path]:
    """The configs to validate before anything runs. With --trials the learning rate comes from the search
    space, so a config without one is checked at a stand-in lr (the trials set their own)."""
    if not args.trials or "lr" in p.mine:
        return p.paths
    check = bat.with_optimizer(p.cfg, {**p.mine, "lr": 1.0e-3})
    return [p.paths[0], bat.write_config(args.out / "configs" / f"{p.task.name}-{MINE}-check.yaml", check,
                                         f"{p.task.config} with {args.optimizer} at a stand-in lr, to validate it "
                                         "before tuning")]


def _tuned(p: TaskPlan, args: argparse.Namespace, seeds: list[int]) -> tuple[TaskPlan, Path]:
    from .mine_tuned import run_tuned

    print(f"(tuning {p.task.name}: {args.trials} trials per side, then {len(seeds)} seeds each)", file=sys.stderr,
          flush=True)
    judged, folder, lines = run_tuned(p, args, seeds)
    p.tuning = lines
    for line in lines[:4]:
        if line.startswith("- "):
            print(f"  {p.task.name}: {line[2:]}", flush=True)
    return judged, folder


def _write(report: Path, args: argparse.Namespace, plans: list[TaskPlan], *rest: Any) -> None:
    """``OUT/report.md``; with --trials it ends with the time-to-target profile over the tasks tuned so far."""
    from .mine_report import write_report

    tail: list[str] = []
    results = [p.tune_result for p in plans if p.tune_result is not None]
    if results:
        from .mine_tuned import profile_lines

        tail = profile_lines(results, results[0].arms[0].label, report.parent / "figures")
    write_report(report, args, plans, *rest, tail=tail)


def _interrupted(rc: int) -> None:
    if rc in (130, -2):
        raise KeyboardInterrupt


def _toy_configs(battery: bat.Battery, args: argparse.Namespace, kwargs: Mapping[str, Any],
                 per_task: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    from benchmarks.config.loader import load_config

    assert battery.toy is not None
    cfg = load_config(battery.toy)
    folder = args.out / "configs"
    base = {**cfg["optimizer"], "name": "sgdp"}  # SGDP at the toy's learning rate and momentum (0.04, 0.9)
    mine = {"name": args.optimizer, **per_task.get("toy", kwargs)}
    if getattr(args, "trials", None) and "lr" not in mine:
        mine["lr"] = base["lr"]  # the toy is not tuned: with --trials and no lr given, it runs at the toy's lr
    paths = [bat.write_config(folder / "toy-baseline.yaml", bat.with_optimizer(cfg, base), f"{battery.toy}: SGDP"),
             bat.write_config(folder / f"toy-{MINE}.yaml", bat.with_optimizer(cfg, mine),
                              f"{battery.toy} with {args.optimizer}")]
    if args.with_suite:
        paths.append(bat.write_config(folder / "toy-suite.yaml", dict(cfg), f"{battery.toy} as it is (the suite)"))
    return paths


__all__ = ["DEFAULT_SEEDS", "TaskPlan", "cmd_compare_mine", "parse_kwargs", "read_kw_file", "register"]
