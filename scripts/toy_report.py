#!/usr/bin/env python
"""Report of the toy problems (paper table t00) from results folders; runs nothing itself.

Reads the runs of ``toy2d`` and ``toy3d`` with ``benchmarks.store.load_results`` / ``load_history`` and
writes into ``--out`` (default ``results/toy``):

* ``table.md``: the 2-D toy's norm growth against the paper's stated values (momentum SGD 1 -> 2.93 at
  momentum 0.9 and 1 -> 27.87 at 0.99) and against momentum SGD at the same settings, the dependence on the
  learning rate (when several were run), and the 3-D toy's radius and distance to the optimum beside the
  paper's approximate statements;
* ``table.csv``: the 2-D comparison rows; ``toy3d.csv`` and ``lr_sweep.csv`` when there are such runs;
* the figures of :func:`benchmarks.analysis.toy_plots.toy_figures` (PNG, and a GIF of the 2-D paths).

Typical use after ``python -m benchmarks run configs/toy/toy2d.yaml`` (and toy3d.yaml, toy2d_lr_sweep.yaml):

    python scripts/toy_report.py                      # reads runs/toy2d runs/toy3d runs/toy2d_lr_sweep
    python scripts/toy_report.py runs/my_toys --out results/toy_mine
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from benchmarks import store  # noqa: E402
from benchmarks.analysis import paper, toy, toy_plots  # noqa: E402
from benchmarks.atomic import write_text_atomic  # noqa: E402

DEFAULT_INPUTS = ("runs/toy2d", "runs/toy3d", "runs/toy2d_lr_sweep")


def _env_line(results: pd.DataFrame) -> str:
    devices = sorted(set(results.get("env.device", pd.Series(dtype=object)).dropna().astype(str)))
    torch_versions = sorted(set(results.get("env.torch", pd.Series(dtype=object)).dropna().astype(str)))
    return f"Measured on: {', '.join(devices) or 'unknown device'}; torch {', '.join(torch_versions) or '?'}."


def build_markdown(results: pd.DataFrame, inputs: list[str], figures: list[Path], out_dir: Path) -> str:
    """The text of table.md."""
    growth = toy.norm_growth_table(results)
    lr_table = toy.lr_dependence(results)
    table3 = toy.toy3d_table(results)
    stated = toy.paper_norm_growth()
    lines = [
        "# Toy problems: norm growth of momentum optimizers on scale-invariant weights",
        "",
        f"Results: {', '.join(inputs)}. {_env_line(results)}",
        f"Paper numbers are labelled \"{paper.PAPER_LABEL}\" (results/paper/t00_toy_and_analysis_figures.csv).",
        "",
        "## 2-D toy: min_w -cos(w, w*)",
        "",
        "norm_growth = final ||w|| / initial ||w||; paper = the paper's stated final norm of momentum SGD "
        f"({', '.join(f'momentum {m:g}: 1 -> {v:g}' for m, v in sorted(stated.items()))}; the paper states no lr "
        "or step count); vs_momentum_sgd = norm growth divided by momentum SGD's at the same momentum, lr and "
        "settings; steps_to_reach / steps_to_converge = updates until the angle to w* first falls / stays below "
        "data.angle_tol_deg (-1: not within the run). \"SGDP (paper semantics)\" keeps the momentum buffer "
        "unprojected (project_buffer: false, the paper's Algorithm 1); \"SGDP\" is the official code, which "
        "projects the buffer in place.",
        "",
    ]
    matched = toy.matched_settings(growth)
    shown = growth
    if matched and growth["lr"].nunique() > 1:
        shown = growth[growth["lr"].isin(matched)]
        lines += [f"Learning rate(s) at which momentum SGD matches the paper within 10%: "
                  f"{', '.join(f'{lr:g}' for lr in matched)}. All learning rates: table.csv and the lr table below.",
                  ""]
    lines += [toy.markdown_table(shown), ""]
    msgd = shown[(shown["method"] == "momentum SGD") & shown["paper"].notna()]
    if not msgd.empty:
        lines.append("Momentum SGD against the paper:")
        lines.append("")
        for _, row in msgd.iterrows():
            lines.append(f"- momentum {row['momentum']:g}, lr {row['lr']:g}, {row['steps']:g} steps: ours "
                         f"{row['norm_growth']:.3f} vs {paper.PAPER_LABEL} {row['paper']:g} "
                         f"(ratio {row['ours_over_paper']:.3f})")
        lines.append("")
    sgdp = shown[shown["method"].str.startswith("SGDP") & shown["vs_momentum_sgd"].notna()]
    if not sgdp.empty:
        worst = sgdp.loc[sgdp["vs_momentum_sgd"].idxmax()]
        lines += [f"SGDP's norm growth is at most {worst['vs_momentum_sgd']:.3f} x momentum SGD's at the same "
                  f"settings ({worst['method']}, momentum {worst['momentum']:g}, lr {worst['lr']:g}).", ""]
    if not lr_table.empty:
        lines += ["### Norm growth against the learning rate", "", toy.markdown_table(lr_table), ""]
    lines += [
        "## 3-D toy: Rosenbrock on the hemisphere with a redundant radial axis",
        "",
        "r = final ||w|| (starts at 1); max_r at iteration max_r_step; distance = final distance to the optimum "
        "(1, 1) in (psi, phi); steps_to_converge = updates until the distance stays below data.optimum_tol "
        "(-1: never). paper = the paper's statement about r, approximate values read off its plots.",
        "",
        toy.markdown_table(table3),
        "",
    ]
    if figures:
        lines += ["## Figures", ""]
        for path in figures:
            rel = os.path.relpath(path, out_dir)
            lines.append(f"![{path.stem}]({rel})" if path.suffix == ".png" else f"- animation: [{rel}]({rel})")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", metavar="DIR",
                        help=f"results folders (the --out of `run`); default: those of {', '.join(DEFAULT_INPUTS)} "
                             "that exist")
    parser.add_argument("--out", type=Path, default=Path("results/toy"), help="output folder (default results/toy)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument("--no-animation", action="store_true", help="no GIF of the 2-D paths")
    args = parser.parse_args(argv)

    inputs = args.results or [d for d in DEFAULT_INPUTS if Path(d).is_dir()]
    missing = [d for d in inputs if not Path(d).is_dir()]
    if missing or not inputs:
        print(f"error: results folder(s) not found: {', '.join(missing) or ', '.join(DEFAULT_INPUTS)}; run e.g. "
              "`python -m benchmarks run configs/toy/toy2d.yaml` first", file=sys.stderr)
        return 1
    results = store.load_results(inputs)
    if "task" not in results.columns or not results["task"].astype(str).str.startswith("toy").any():
        print(f"error: no toy2d/toy3d runs in {', '.join(inputs)}", file=sys.stderr)
        return 1
    toy_ids = results.loc[results["task"].astype(str).str.startswith("toy"), "run_id"]
    history = store.load_history(inputs, run_ids=toy_ids)
    not_done = results[results["task"].astype(str).str.startswith("toy") & (results["status"] != "done")]
    for _, row in not_done.iterrows():
        print(f"warning: run {row['run_id']} is {row['status']}; left out", file=sys.stderr)

    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [] if args.no_figures else toy_plots.toy_figures(results, history, out_dir,
                                                              animation=not args.no_animation)
    written = [write_text_atomic(out_dir / "table.md", build_markdown(results, inputs, figures, out_dir))]
    written.append(write_text_atomic(out_dir / "table.csv", toy.norm_growth_table(results).to_csv(index=False)))
    table3 = toy.toy3d_table(results)
    if not table3.empty:
        written.append(write_text_atomic(out_dir / "toy3d.csv", table3.to_csv(index=False)))
    lr_table = toy.lr_dependence(results)
    if not lr_table.empty:
        written.append(write_text_atomic(out_dir / "lr_sweep.csv", lr_table.to_csv(index=False)))
    for path in [*written, *figures]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
