"""Property-based fuzzer of results folders (hypothesis): damaged copies of a small real results folder.

From the real 6-run folder of tests/data/fuzz_sweep.yaml, each example damages a copy (truncated, wrong-typed,
deeply nested, non-finite or huge records; FIFOs, symlinks and loops; folders where files belong and the
reverse; unreadable permissions; damaged histories and launch manifests) and runs ``status``, ``results``,
``compare``, ``report``, ``tables`` and ``run --dry-run`` on it. Guarantees checked (docs/reliability.md):
each command ends within TIME_LIMIT_S and MEMORY_LIMIT, prints no traceback, exits 0, 1 or 2, names every
damaged file where that command reads it, and never exits 0 without having done its work.

CI runs FUZZ_EXAMPLES examples (default 4, a fixed seed: the same examples every time); more locally, e.g.
``FUZZ_EXAMPLES=500 python -m pytest tests/test_fuzz_results.py -p no:cacheprovider -n 0``. FUZZ_STATS=FILE
appends each example's damages and each command's exit code, seconds and peak RSS to FILE (JSON lines);
FUZZ_TIME_SLACK_S loosens the time check on a shared, busy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.hostile_tools import (DOCUMENTED_EXITS, MEMORY_LIMIT, ROOT, SWEEP, TIME_LIMIT_S, build_real_folder,
                                 copy_folder)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: extra seconds per command when the machine is shared and busy (the guarantee itself is TIME_LIMIT_S)
SLACK_S = float(os.environ.get("FUZZ_TIME_SLACK_S", "0"))

RECORD_KINDS = ("truncate", "wrong_type", "deep", "deep_section", "nonfinite", "string_metric", "unknown_status",
                "string_wall", "fifo", "folder", "loop", "dangling", "devzero", "huge", "binary", "chmod000")
ENTRY_KINDS = ("run_file", "run_fifo", "run_loop", "stray")
HISTORY_KINDS = ("hist_fifo", "hist_binary", "hist_longline", "hist_deep", "hist_dir")
MANIFEST_KINDS = ("man_truncate", "man_fifo", "man_dir", "man_runs_not_list")
ROOT_KINDS = ("runs_file", "runs_loop")

MAPPING_SECTIONS = ("metrics", "config", "timing", "env", "metric_modes", "selection")
TEXT_SECTIONS = ("run_id", "status", "error", "primary_metric")
INT_FIELDS = ("seed", "attempt")

_scalars = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=30), st.booleans())
_json = st.recursive(st.one_of(st.none(), _scalars),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3)),
                     max_leaves=8)
_not_mapping = st.one_of(_scalars, st.lists(_json, max_size=3))
_not_text = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(_json, max_size=3),
                      st.dictionaries(st.text(max_size=5), _json, max_size=3))
_not_int = st.one_of(st.floats(), st.text(max_size=10), st.booleans(), st.lists(_json, max_size=3),
                     st.dictionaries(st.text(max_size=5), _json, max_size=2))


@st.composite
def damages(draw):
    """A list of (kind, run index, payload); a damage of OUT/runs itself, when drawn, comes last."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        group = draw(st.sampled_from(("record", "record", "record", "entry", "history", "manifest", "root")))
        index = draw(st.integers(0, 5))
        if group == "record":
            kind = draw(st.sampled_from(RECORD_KINDS))
            if kind == "truncate":
                payload = draw(st.floats(0.0, 0.95))
            elif kind == "wrong_type":
                section = draw(st.sampled_from(MAPPING_SECTIONS + TEXT_SECTIONS + INT_FIELDS))
                value = draw(_not_mapping if section in MAPPING_SECTIONS else
                             _not_text if section in TEXT_SECTIONS else _not_int)
                payload = (section, value)
            elif kind in ("deep", "deep_section"):
                payload = draw(st.sampled_from((30, 900, 5_000, 200_000)))
            elif kind == "nonfinite":
                payload = draw(st.sampled_from(("NaN", "Infinity", "-Infinity")))
            elif kind == "unknown_status":
                payload = draw(st.sampled_from(("finished", "DONE", "", "ok", "x" * 5000)))
            elif kind == "binary":
                payload = draw(st.binary(min_size=1, max_size=200))
            else:
                payload = None
        elif group == "entry":
            kind = draw(st.sampled_from(ENTRY_KINDS))
            payload = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12))
        elif group == "history":
            kind, payload = draw(st.sampled_from(HISTORY_KINDS)), draw(st.binary(max_size=100))
        elif group == "manifest":
            kind, payload = draw(st.sampled_from(MANIFEST_KINDS)), None
        else:
            kind, payload = draw(st.sampled_from(ROOT_KINDS)), None
        out.append((kind, index, payload))
    roots = [d for d in out if d[0] in ROOT_KINDS]
    return [d for d in out if d[0] not in ROOT_KINDS] + roots[:1]


def _replace(path: Path) -> None:
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _json_text(obj) -> str:
    return json.dumps(obj, allow_nan=True, default=str)


def apply(out: Path, kind: str, index: int, payload, taken: set[str]) -> dict[str, str]:
    """Damage ``out``; return what must be named, by whom ("status", "analysis", "history", "manifest",
    "left_out", "root": the name to find). Each run and the manifest are damaged at most once (``taken``), so
    that a later damage never undoes an earlier one."""
    runs = out / "runs"
    if kind in ROOT_KINDS:
        _replace(runs)
        if kind == "runs_file":
            runs.write_text("not a folder")
        else:
            runs.symlink_to(runs)
        return {"root": str(runs)}
    ids = sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.is_symlink() and p.name not in taken)
    if not ids:
        return {}
    run_id = ids[index % len(ids)]
    if kind in MANIFEST_KINDS:
        if "manifest" in taken:
            return {}
        taken.add("manifest")
    elif kind != "stray":
        taken.add(run_id)
    run_dir = runs / run_id
    record = run_dir / "record.json"
    if kind in HISTORY_KINDS:
        hist = run_dir / "history.jsonl"
        _replace(hist)
        if kind == "hist_fifo":
            os.mkfifo(hist)
        elif kind == "hist_binary":
            hist.write_bytes(b"\xff\xfe" + payload.replace(b"\n", b" ") + b"\n")
        elif kind == "hist_longline":
            hist.write_bytes(b'{"step": 1, "loss": "' + b"x" * (2 * 2**20) + b'"}\n')
        elif kind == "hist_deep":
            hist.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")
        else:
            hist.mkdir()
        return {"history": run_id}
    if kind in MANIFEST_KINDS:
        manifests = sorted((out / "sweeps").glob("*.json"))
        if not manifests:
            return {}
        path = manifests[0]
        if kind == "man_truncate":
            path.write_text(path.read_text()[:20])
        elif kind == "man_fifo":
            _replace(path)
            os.mkfifo(path)
        elif kind == "man_dir":
            _replace(path)
            path.mkdir()
        else:
            data = json.loads(path.read_text())
            data["runs"] = "all of them"
            path.write_text(_json_text(data))
        return {"manifest": path.name}
    if kind in ENTRY_KINDS:
        if kind == "stray":
            stray = runs / f"stray-{payload}"
            _replace(stray)
            stray.write_text("not a run")
            return {"status": stray.name, "analysis": stray.name}
        _replace(run_dir)
        if kind == "run_file":
            run_dir.write_text("not a folder")
        elif kind == "run_fifo":
            os.mkfifo(run_dir)
        else:
            run_dir.symlink_to(run_dir)
        return {"status": run_id, "analysis": run_id, "dry_run_refuses": run_id}
    # record damages
    if not record.is_file() or record.is_symlink():
        _replace(record)
        record.write_text("{}")  # an earlier damage replaced it: start from an empty record
    text = record.read_text(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    unreadable = {"status": run_id, "analysis": run_id}
    if kind == "truncate":
        record.write_text(text[: int(len(text) * payload)])
        return unreadable
    if kind == "wrong_type":
        section, value = payload
        if section == "seed":
            data.setdefault("config", {}).setdefault("train", {})["seed"] = value
            if not isinstance(data["config"], dict) or not isinstance(data["config"]["train"], dict):
                return {}
        else:
            data[section] = value
        record.write_text(_json_text(data))
        return unreadable
    if kind == "deep":
        record.write_text("[" * payload + "]" * payload)
        return unreadable
    if kind == "deep_section":
        record.write_text('{"run_id": "%s", "metrics": ' % run_id + '{"a": ' * payload + "1" + "}" * payload + "}")
        return unreadable
    if kind in ("nonfinite", "string_metric", "string_wall", "unknown_status"):
        if not isinstance(data.get("metrics"), dict) or data.get("status") != "done":
            return {}
        metric = data.get("primary_metric") or "cosine_similarity"
        if kind == "nonfinite":
            data["metrics"][metric] = float(payload.replace("Infinity", "inf"))
        elif kind == "string_metric":
            data["metrics"][metric] = str(data["metrics"].get(metric))
        elif kind == "string_wall":
            if not isinstance(data.get("timing"), dict):
                return {}
            data["timing"]["wall_s"] = "12 s"
        else:
            data["status"] = payload
        record.write_text(_json_text(data))
        if kind == "unknown_status":
            return {"status": run_id, "analysis": run_id}
        return {"left_out": run_id}
    _replace(record)
    if kind == "fifo":
        os.mkfifo(record)
    elif kind == "folder":
        record.mkdir()
        return {**unreadable, "dry_run_refuses": run_id}
    elif kind == "loop":
        record.symlink_to(record)
    elif kind == "dangling":
        record.symlink_to(run_dir / "nowhere.json")
    elif kind == "devzero":
        record.symlink_to("/dev/zero")
    elif kind == "huge":
        record.write_text("{")
        os.truncate(record, 40 * 2**20)  # sparse: 40 MB of NUL bytes without writing them
    elif kind == "binary":
        record.write_bytes(b"\xff" + payload)
    elif kind == "chmod000":
        record.write_text(text)
        record.chmod(0)
        return {} if IS_ROOT else unreadable  # root reads it anyway: then it is no damage
    return unreadable


def commands(out: Path) -> dict[str, list[str]]:
    return {
        "status": ["status", str(out)],
        "results": ["results", str(out)],
        "compare": ["compare", str(out), "--baseline", "sgdp", "--figure-formats", "png"],
        "report": ["report", str(out), "--baseline", "sgdp", "--figure-formats", "png"],
        "tables": ["tables", str(out)],
        "run": ["run", str(SWEEP), "--out", str(out), "--dry-run"],
    }


#: what each command's exit 0 must show (it did its work, it did not just end)
DID_WORK = {"status": " runs: ", "results": "run_id", "compare": "wrote ", "report": "wrote ", "tables": "wrote ",
            "run": " runs ("}


def run_commands(out: Path) -> dict[str, dict]:
    names = list(commands(out))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_driver.py")],
                          input=json.dumps([commands(out)[n] for n in names]), capture_output=True, text=True,
                          cwd=ROOT, timeout=120 + len(names) * (TIME_LIMIT_S + SLACK_S),
                          env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                               "BENCHMARKS_NO_PROGRESS": "1"})
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(names), f"driver failed:\n{proc.stderr[-3000:]}"
    return dict(zip(names, lines))


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    return build_real_folder(tmp_path_factory.mktemp("fuzz") / "real")


def check(out: Path, expected: list[dict[str, str]], results: dict[str, dict]) -> None:
    for name, r in results.items():
        text = r["out"] + r["err"]
        where = f"{name} on {[e for e in expected]}:\n{text[-3000:]}"
        assert r["code"] != -14, f"{name} ran past {TIME_LIMIT_S} s (SIGALRM): {where}"
        assert r["seconds"] <= TIME_LIMIT_S + SLACK_S, f"{name} took {r['seconds']:.1f} s: {where}"
        assert r["code"] in DOCUMENTED_EXITS, f"{name} exit {r['code']}: {where}"
        assert "Traceback (most recent call last)" not in text, f"{name} traceback: {where}"
        assert "MemoryError" not in text, f"{name} ran out of its {MEMORY_LIMIT >> 20} MB: {where}"
        if r["code"] == 0:
            assert DID_WORK[name] in text, f"{name} exit 0 without doing its work: {where}"
    roots = [e["root"] for e in expected if "root" in e]
    if roots:
        for name in ("status", "run"):
            assert results[name]["code"] != 0, f"{name} exit 0 on a broken OUT/runs"
            assert roots[0] in results[name]["out"] + results[name]["err"], f"{name} does not name {roots[0]}"
        return
    for e in expected:
        for key, commands_naming in (("status", ("status",)), ("analysis", ("results", "compare", "report", "tables")),
                                     ("history", ("compare", "report", "tables")), ("manifest", ("status",)),
                                     ("left_out", ("compare", "report"))):
            if key not in e:
                continue
            for name in commands_naming:
                r = results[name]
                shown = r["out"] + r["err"]
                if name == "report" and (out / "report.md").is_file():
                    shown += (out / "report.md").read_text(errors="replace")
                if key == "left_out" and (results["compare"]["code"] != 0 or r["code"] != 0):
                    continue  # no comparison was possible (e.g. no baseline run left): nothing to leave out of
                assert e[key] in shown, f"{name} does not name {e[key]} ({key}):\n{shown[-3000:]}"
        if "dry_run_refuses" in e:
            r = results["run"]
            assert r["code"] == 2 and e["dry_run_refuses"] in r["err"], r["out"] + r["err"]


@pytest.mark.slow
@seed(20261208)
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
          phases=(Phase.explicit, Phase.generate),  # an example takes seconds: shrinking would take hours
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(damage=damages())
def test_damaged_results_folders(real_folder, damage):
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        out = copy_folder(real_folder, work / "out")
        taken: set[str] = set()
        expected = [e for e in (apply(out, *d, taken) for d in damage) if e]
        results = run_commands(out)
        if os.environ.get("FUZZ_STATS"):  # one JSON line per example: what was damaged, seconds and peak RSS
            with open(os.environ["FUZZ_STATS"], "a") as fh:
                fh.write(json.dumps({"damage": [d[:2] for d in damage], "commands": {
                    n: {"code": r["code"], "seconds": round(r["seconds"], 2), "max_rss_kb": r["max_rss_kb"]}
                    for n, r in results.items()}}) + "\n")
        check(out, expected, results)
    finally:
        for path in work.rglob("*"):  # chmod 000 files must stay removable
            if not path.is_symlink():
                try:
                    path.chmod(0o755)
                except OSError:
                    pass
        shutil.rmtree(work, ignore_errors=True)
