"""A run: its id, its resolved config, where it writes; and :func:`execute_run`, which every executor calls.

Run ids are ``<task>-<optimizer.name>-<first 12 hex of sha1(canonical JSON)>`` where the canonical JSON is
the resolved config without ``slurm``/``name``/``tags``, keys sorted, no whitespace. Because the resolved
config has every default filled in and numbers normalised, writing a default explicitly does not change the id.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from benchmarks import store
from benchmarks.config.validate import hashed_view


@dataclass
class RunSpec:
    """One run to execute: its id, its resolved config and the sweep's OUT folder."""

    run_id: str
    config: dict
    out_dir: Path
    #: the grid point that produced it (labels only; not part of the id)
    point: dict = field(default_factory=dict, compare=False)

    @property
    def run_dir(self) -> Path:
        return store.run_path(self.out_dir, self.run_id)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("-", str(text)).strip("-.") or "x"


def compute_run_id(resolved: Mapping[str, Any]) -> str:
    """``<task>-<optimizer.name>-<sha1[:12]>`` of a resolved config (names made file-system safe)."""
    digest = hashlib.sha1(canonical_json(hashed_view(resolved)).encode("utf-8")).hexdigest()[:12]
    return f"{_slug(resolved['task'])}-{_slug(resolved['optimizer']['name'])}-{digest}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _raised_while_interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt was being handled (it is in its context chain)."""
    seen: set[int] = set()
    context = exc.__context__
    while context is not None and id(context) not in seen:
        if isinstance(context, KeyboardInterrupt):
            return True
        seen.add(id(context))
        context = context.__context__
    return False


def execute_run(spec: RunSpec, ctx_extra: Mapping[str, Any] | None = None, *, post_mortem: bool = False) -> str:
    """Run one spec through the shared loop and record it; return the final status.

    Never raises for a failing run: an exception gives status ``failed`` (message in ``error``, full
    traceback in traceback.txt), a NaN/inf loss ``diverged``. A run already ``done``/``diverged`` is not run
    again; a run locked by another live process is left alone (returns ``running``). Ctrl-C and preemption
    leave the record ``interrupted`` (the checkpoint, if any, lets a rerun resume); KeyboardInterrupt is
    re-raised so that the caller stops. A full disk (ENOSPC/EDQUOT anywhere in the run) is not the run's
    failure either: the record says ``interrupted`` with a one-line "no space left on device" error (when it
    can still be written) and :class:`benchmarks.store.OutOfSpace` is raised so that the sweep stops; a rerun
    after freeing space resumes it. Under distributed training only rank 0 writes the record.
    ``post_mortem`` opens pdb at a failing run's exception (the debug executor's ``--pdb``).
    """
    from benchmarks.training import loop
    from benchmarks.training.setup import current_rank

    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = current_rank()
    lock = store.RunLock(run_dir)
    if rank == 0 and not lock.acquire():
        return "running"
    try:
        if rank == 0:
            store.remove_leftover_tmp(run_dir)  # under the lock: left by a writer that was killed
        previous = store.read_record(run_dir)
        if previous is not None and previous.get("status") in store.FINISHED:
            return str(previous["status"])
        attempt = int((previous or {}).get("attempt", 0)) + 1
        record: dict[str, Any] = {
            "run_id": spec.run_id,
            "config": spec.config,
            "status": "running",
            "metrics": {},
            "timing": {"started": _now(), "ended": None, "wall_s": None, "steps": None, "step_time_s": None},
            "env": store.collect_env(None),
            "error": None,
            "attempt": attempt,
        }
        if rank == 0:
            (run_dir / store.TRACEBACK).unlink(missing_ok=True)
            try:
                store.write_record(run_dir, record)
            except OSError as exc:
                if store.out_of_space(exc) is None:
                    raise
                raise store.OutOfSpace(exc.errno, f"{store.describe_out_of_space(exc)}; run {spec.run_id} not "
                                                  f"started") from exc
        t0 = time.perf_counter()
        status = "failed"
        no_space: OSError | None = None
        try:
            result = loop.train(spec.config, run_dir, ctx_extra=ctx_extra)
            status = result["status"]
            record["metrics"] = result["metrics"]
            # the direction of every metric from the task's declaration, so that analysis never guesses it
            record["metric_modes"] = result.get("metric_modes", {})
            record["primary_metric"] = result.get("primary_metric")
            record["selection"] = result.get("selection")
            record["error"] = result.get("error")
            record["timing"].update({
                "steps": result["steps"],
                "epochs": result["epochs"],
                "step_time_s": result["step_time_s"],
                "train_time_s": result["train_time_s"],
                "eval_time_s": result["eval_time_s"],
                "samples_per_s": result["samples_per_s"],
                "resumed_from_step": result["resumed_from_step"],
            })
            record["env"] = store.collect_env(result.get("device"))
            record["env"]["world_size"] = result.get("world_size", 1)
        except KeyboardInterrupt:
            status = "interrupted"
            record["error"] = "interrupted (KeyboardInterrupt); rerun the sweep to resume"
            raise
        except loop.RunPreempted as exc:
            status = "interrupted"
            record["error"] = f"preempted: {exc}"
        except Exception as exc:  # noqa: BLE001 - a failing run must never take the sweep down
            if store.out_of_space(exc) is not None:
                # torch reports a failed checkpoint write as "unexpected pos ..."; the run did not fail
                status = "interrupted"
                record["error"] = (f"{store.describe_out_of_space(exc)}; free space and rerun the sweep to "
                                   f"resume")
                no_space = store.out_of_space(exc)
                return status  # the finally below records it; OutOfSpace is raised after that
            if _raised_while_interrupted(exc):
                # e.g. cleanup code that fails because Ctrl-C cut an import or a write short: the run did not
                # fail, it was interrupted (a "failed" record would make a rerun skip it)
                status = "interrupted"
                record["error"] = (f"interrupted (KeyboardInterrupt, then {type(exc).__name__}: {exc} while "
                                   f"stopping); rerun the sweep to resume")
                raise KeyboardInterrupt from exc
            status = "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            if rank == 0:
                store.write_text_atomic(run_dir / store.TRACEBACK, traceback.format_exc())
            if post_mortem:
                import pdb

                pdb.post_mortem(exc.__traceback__)
        finally:
            record["status"] = status
            record["timing"]["ended"] = _now()
            record["timing"]["wall_s"] = time.perf_counter() - t0
            if rank == 0:
                try:
                    store.write_record(run_dir, record)
                except OSError as exc:
                    if store.out_of_space(exc) is None:
                        raise
                    # the record still says "running" (atomic write): with its lock gone, it reads as
                    # interrupted, and a rerun resumes it like one
                    no_space = no_space or exc
            if no_space is not None:
                raise store.OutOfSpace(no_space.errno, f"{store.describe_out_of_space(no_space)}; run "
                                                       f"{spec.run_id} stopped; a rerun resumes it") from None
        return status
    finally:
        lock.release()


__all__ = ["RunSpec", "canonical_json", "compute_run_id", "execute_run"]
