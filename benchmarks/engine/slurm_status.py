"""Where the runs of a SLURM sweep stand, for ``status DIR``: the run records first, then the scheduler
(sacct, or squeue without accounting), asked at most every :data:`STATUS_MAX_AGE_S` seconds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


#: SLURM job states -> what ``status DIR`` shows
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING",
            "STAGE_OUT"}
_REQUEUED = {"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "RESV_DEL_HOLD"}
_FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "REVOKED", "SPECIAL_EXIT"}
_RECORD_FINAL = {"done", "failed", "diverged"}
STATUS_MAX_AGE_S = 30.0


def _expand_job_ids(job_id: str) -> list[str]:
    """``123_[0-2,5%4]`` -> 123_0 123_1 123_2 123_5; plain ids are returned as they are."""
    match = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not match:
        return [job_id]
    base, ranges = match.group(1), match.group(2).split("%")[0]
    out = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _query_sacct(array_ids: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    """Current state and number of earlier (requeued) attempts per job id, or None without accounting."""
    ids = sorted(set(array_ids))
    cmd = ["sacct", "-n", "-P", "-X", "-D", "--format=JobID,State,ExitCode,NodeList", "-j", ",".join(ids)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 2 or "." in fields[0]:
            continue
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"
        for job_id in _expand_job_ids(fields[0]):
            row = rows.setdefault(job_id, {"state": state, "attempts": 0})
            # -D lists every attempt of a requeued job, oldest first: the last line is the current one
            row["attempts"] += 1
            row["state"] = state
            if len(fields) > 2:
                row["exit_code"] = fields[2]
    return rows


def query_squeue(array_ids: Iterable[str]) -> dict[str, dict[str, Any]] | None:
    cmd = ["squeue", "-h", "-r", "-o", "%i|%T|%r|%o", "-j", ",".join(sorted(set(array_ids)))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
        return None
    rows: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        fields = line.split("|")
        if len(fields) >= 2:
            for job_id in _expand_job_ids(fields[0]):
                requeued = len(fields) > 2 and "requeue" in fields[2].lower()
                rows[job_id] = {"state": fields[1], "attempts": 2 if requeued else 1, "source": "squeue",
                                "command": fields[3] if len(fields) > 3 else None}
    return rows


def _scheduler_rows(job_ids: list[str], cache_file: Path | None, max_age_s: float) -> dict[str, dict[str, Any]]:
    wanted = sorted({j.split("_")[0] for j in job_ids if j})
    if not wanted:
        return {}
    if cache_file is not None:
        from benchmarks.store import read_json_checked

        cached, _ = read_json_checked(cache_file)  # a regular file of bounded size, or nothing
        try:
            if cached and cached.get("arrays") == wanted and time.time() - float(cached["queried_at"]) < max_age_s:
                return cached["rows"]
        except (ValueError, KeyError, TypeError):
            pass
    rows = _query_sacct(wanted)
    source = "sacct"
    if rows is None:
        rows, source = query_squeue(wanted), "squeue"
    elif any(j not in rows for j in job_ids if j):
        # accounting lags the controller by a few seconds after a submission: ask squeue for the rest
        for job_id, row in (query_squeue(wanted) or {}).items():
            rows.setdefault(job_id, row)
    if rows is None:
        rows, source = {}, "none"
    for row in rows.values():
        row.setdefault("source", source)
    if cache_file is not None:
        cache_file = Path(cache_file)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=".slurm-status-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"queried_at": time.time(), "arrays": wanted, "rows": rows, "source": source}, fh)
        os.replace(tmp, cache_file)
    return rows


def _record_status(out_dir: Path, run_id: str) -> str | None:
    from benchmarks.store import read_record

    record = read_record(Path(out_dir) / "runs" / run_id)  # None when missing or unreadable
    status = record.get("status") if record else None
    return status if isinstance(status, str) else None


def slurm_status(entries: Sequence[Mapping[str, Any]], out_dir: Path, cache_file: Path | None = None,
                 max_age_s: float = STATUS_MAX_AGE_S) -> dict[str, dict[str, Any]]:
    """Per run of a SLURM sweep: ``state`` (pending|running|requeued|done|diverged|failed|unknown) and why.

    ``entries`` are the sweep manifest's entries (run_id, job_id, log). A finished record.json decides
    done/diverged/failed; otherwise the scheduler does (sacct, or squeue when accounting is off), queried at
    most every ``max_age_s`` seconds: the answer is kept in ``cache_file`` (default
    ``<out_dir>/sweeps/.slurm-status.cache``). Each value also has ``slurm_state``, ``job_id``, ``log`` and
    ``attempts`` (starts so far; more than 1 means the run was requeued).
    """
    out_dir = Path(out_dir)
    if cache_file is None:
        # not *.json: manifests are every sweeps/*.json
        cache_file = out_dir / "sweeps" / ".slurm-status.cache"
    job_ids = [str(e.get("job_id") or "") for e in entries]
    rows = _scheduler_rows(job_ids, cache_file, max_age_s)
    result: dict[str, dict[str, Any]] = {}
    for entry, job_id in zip(entries, job_ids):
        row = rows.get(job_id) or {}
        slurm_state = row.get("state")
        attempts = int(row.get("attempts", 0))
        record = _record_status(out_dir, entry["run_id"])
        if record in _RECORD_FINAL:
            state = record
        elif slurm_state is None:
            # not known to the scheduler (yet, or any more): the record is all there is
            state = {"running": "running", "queued": "pending", "interrupted": "requeued"}.get(record, "unknown")
            if rows and record in ("running", "queued", "interrupted"):
                state = "failed"  # the scheduler answered, knows the sweep, but not this job: it is gone
        elif slurm_state in _REQUEUED or (slurm_state == "PENDING" and attempts > 1):
            state = "requeued"
        elif slurm_state == "PENDING":
            state = "pending"
        elif slurm_state in RUNNING_STATES:
            state = "running"
        elif slurm_state in _FAILED or slurm_state == "COMPLETED":
            # COMPLETED without a finished record: the job ended but the run did not
            state = "failed"
        else:
            state = "unknown"
        result[entry["run_id"]] = {"state": state, "slurm_state": slurm_state, "record_status": record,
                                   "job_id": job_id or None, "log": entry.get("log"), "attempts": attempts}
    return result


def slurm_status_report(out_dir: Path, manifests: Sequence[Mapping[str, Any]] | None = None,
                        cache_file: Path | None = None, max_age_s: float = STATUS_MAX_AGE_S) -> str:
    """Text for ``status DIR``: counts and one line per run of the folder's SLURM launches (latest wins).

    Lines: run id, state, job id, SLURM state, number of starts, and the log path for runs not done.
    Returns "" when the folder has no SLURM launch.
    """
    from benchmarks import store

    out_dir = Path(out_dir)
    if manifests is None:
        manifests = store.list_manifests(out_dir)
    latest: dict[str, Mapping[str, Any]] = {}
    for manifest in manifests:
        for entry in manifest.get("runs") or []:
            if entry.get("executor") == "slurm" and entry.get("run_id"):
                latest[entry["run_id"]] = entry
    if not latest:
        return ""
    states = slurm_status(list(latest.values()), out_dir, cache_file=cache_file, max_age_s=max_age_s)
    order = ["pending", "running", "requeued", "done", "diverged", "failed", "unknown"]
    counts = {s: sum(1 for v in states.values() if v["state"] == s) for s in order}
    lines = [f"slurm: {len(states)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    width = max(len(r) for r in states)
    for run_id in sorted(states, key=lambda r: (order.index(states[r]["state"]), r)):
        v = states[run_id]
        line = (f"  {run_id:<{width}}  {v['state']:<8}  job {v['job_id'] or '-'}  "
                f"{(v['slurm_state'] or '-'):<10}  starts {v['attempts']}")
        if v["state"] != "done" and v.get("log"):
            line += f"  log {v['log']}"
        lines.append(line)
    return "\n".join(lines)
