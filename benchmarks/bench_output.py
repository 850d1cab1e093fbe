"""Where :mod:`benchmarks.bench_step` puts its results: the environment of a measurement, the printed table,
CSV + JSON written atomically, and the rows of an earlier run kept by ``--merge``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def environment(device: torch.device) -> dict:
    """Where and with what the figures were measured; ``dirty`` says the code had uncommitted changes."""
    commit = _git("rev-parse", "HEAD") or None
    status = _git("status", "--porcelain", "--untracked-files=no")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return dict(device=str(device), device_name=name, torch=torch.__version__, python=sys.version.split()[0],
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(), commit=commit,
                dirty=None if status is None else bool(status), host=platform.node(),
                time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def print_table(rows: list[dict], keys: list[str]) -> None:
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def previous_runs(path: Path, keep_unless: set[str]) -> tuple[list[dict], dict[str, dict]]:
    """Rows (and each model's environment) of an earlier step.json, without the models about to be rerun."""
    if not path.exists():
        return [], {}
    try:
        old = json.loads(path.read_text())
        rows = [r for r in old["rows"] if r["model"] not in keep_unless]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--merge: cannot read {path}: {exc}; move it away or run without --merge") from None
    environments = old.get("environments") or {r["model"]: old.get("environment") for r in rows}
    return rows, {m: e for m, e in environments.items() if m not in keep_unless}


def write_outputs(rows: list[dict], env: dict, out_dir: Path, stem: str,
                  environments: dict[str, dict] | None = None) -> None:
    """CSV + JSON of the rows; ``environments`` records which run (machine, commit, time) gave each model."""
    import csv
    import io

    from benchmarks.atomic import write_text_atomic

    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / f"{stem}.csv", table.getvalue())
    doc = {"environment": env, "rows": rows}
    if environments:
        doc["environments"] = environments
    write_text_atomic(out_dir / f"{stem}.json", json.dumps(doc, indent=1))
