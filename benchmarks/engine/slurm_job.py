"""What each array task of a SLURM sweep runs: :class:`SlurmRun`, which exports the distributed environment,
turns the pre-timeout / preemption signal into a checkpoint request to the loop, and requeues the run."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import zlib
from pathlib import Path
from typing import Any

import submitit

from benchmarks.engine.spec import RunSpec, execute_run


def _free_port_for(job_id: str) -> int:
    # every rank of a job must agree on the port without talking; jobs sharing a node must not collide
    return 20000 + zlib.crc32(job_id.encode()) % 20000


def _export_distributed_env() -> tuple[int, int]:
    """Export RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT from submitit's JobEnvironment.

    The loop initialises torch.distributed from these when WORLD_SIZE > 1 (one process per task).
    """
    env = submitit.JobEnvironment()
    if env.cluster == "debug":  # in-process: leave this process's environment alone
        return 0, 1
    rank, world = env.global_rank, env.num_tasks
    os.environ["RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = str(world)
    os.environ["LOCAL_RANK"] = str(env.local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(max(1, world // max(1, env.num_nodes)))
    os.environ["MASTER_ADDR"] = env.hostnames[0]
    os.environ["MASTER_PORT"] = str(_free_port_for(str(env.raw_job_id)))
    return rank, world


class SlurmRun(submitit.helpers.Checkpointable):
    """The callable each array task runs: ``execute_run(spec)``, resumable and requeued on signal.

    A submitit ``Checkpointable``. Submitit's own handler of the pre-timeout / preemption signal (USR2)
    would requeue at once, in the middle of a training step. Instead, the signal first becomes a
    ``request_checkpoint()`` to the loop, which finishes the step, writes a checkpoint and stops (the record
    says ``interrupted``); then submitit's handler runs, calls :meth:`checkpoint` and requeues the job. Should
    the loop not reach a step boundary within ``grace_s`` (a long evaluation), the job is requeued anyway and
    resumes from its last periodic checkpoint. Every start resumes from the run's latest checkpoint. Under
    DDP only rank 0 acts on the signal; requeueing the job ends the other ranks.
    """

    def __init__(self, code_dir: str | None = None, grace_s: float = 60.0) -> None:
        self.code_dir = code_dir
        self.grace_s = grace_s
        self._signal: int | None = None
        self._watchdog: threading.Timer | None = None

    # the signal seen belongs to one process: never pickle it into the requeued submission
    def __getstate__(self) -> dict:
        return {"code_dir": self.code_dir, "grace_s": self.grace_s}

    def __setstate__(self, state: dict) -> None:
        self.code_dir = state.get("code_dir")
        self.grace_s = float(state.get("grace_s", 60.0))
        self._signal = None
        self._watchdog = None

    def __call__(self, spec: RunSpec) -> dict:
        rank, world = _export_distributed_env()
        self._report_code_origin(spec)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and not (spec.config.get("train") or {}).get("num_threads"):
            # task/none (and many clusters) do not bind CPUs: without this every job uses every core
            import torch

            torch.set_num_threads(int(cpus))
        usr_sig = submitit.JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)
        request = _loop_checkpoint_request()
        cooperative = request is not None and callable(submitit_handler)
        if cooperative:
            signal.signal(usr_sig, self._on_signal(request, rank))
        try:
            status = execute_run(spec)
        except BaseException as exc:
            if self._signal is None or not _is_preemption(exc):
                raise
            status = "interrupted"
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()  # the loop stopped (or ended) in time
        if self._signal is not None and cooperative:
            if status in ("done", "diverged", "failed"):
                print(f"[benchmarks] run {spec.run_id} ended ({status}) before it could checkpoint: not requeued",
                      flush=True)
            else:
                print(f"[benchmarks] run {spec.run_id} checkpointed after signal {self._signal}: requeueing",
                      flush=True)
                submitit_handler(self._signal, None)  # checkpoint() + scontrol requeue + exit
        return {"run_id": spec.run_id, "status": status, "rank": rank, "world_size": world}

    def _on_signal(self, request: Any, rank: int) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None or rank != 0:
                # Only rank 0 stops: were another rank to stop first, rank 0 would hang in the next
                # collective, unable even to run this handler. The requeue by rank 0 ends every rank.
                return
            self._signal = signum
            print(f"[benchmarks] caught signal {signum}: the loop checkpoints after this step and stops",
                  flush=True)
            request()
            if self.grace_s > 0:
                self._watchdog = threading.Timer(self.grace_s, _requeue_now, args=(self.grace_s,))
                self._watchdog.daemon = True
                self._watchdog.start()
        return handler

    def checkpoint(self, spec: RunSpec) -> Any:
        """Called by submitit on timeout/preemption: the same run, to be resumed from its checkpoint."""
        request = _loop_checkpoint_request()
        if request is not None and self._signal is None:
            # submitit's handler fired directly (no cooperative stop): the run resumes from the last
            # periodic checkpoint; the request is harmless as the process exits right after
            request()
        return submitit.helpers.DelayedSubmission(SlurmRun(self.code_dir, self.grace_s), spec)

    def _report_code_origin(self, spec: RunSpec) -> None:
        import benchmarks

        origin = Path(benchmarks.__file__).resolve().parent
        print(f"[benchmarks] run {spec.run_id}: code from {origin}", flush=True)
        if self.code_dir and Path(self.code_dir).resolve() not in origin.parents:
            print(f"[benchmarks] WARNING: expected the code snapshot {self.code_dir}; the job imported {origin}",
                  flush=True)


def _requeue_now(grace_s: float) -> None:
    """Watchdog: the loop did not stop in time; requeue (killing this job) so that the run is not lost."""
    job_id = submitit.JobEnvironment().job_id
    print(f"[benchmarks] the loop did not reach a checkpoint within {grace_s:.0f}s of the signal: requeueing "
          f"{job_id} now; the run resumes from its last periodic checkpoint", flush=True)
    subprocess.run(["scontrol", "requeue", job_id], timeout=60, check=False)


def _loop_checkpoint_request() -> Any:
    """The loop's ``request_checkpoint`` (checkpoint after the current step, then stop), if it has one."""
    try:
        from benchmarks.training import loop
    except ImportError:
        return None
    return getattr(loop, "request_checkpoint", None)


def _is_preemption(exc: BaseException) -> bool:
    try:
        from benchmarks.training import loop
    except ImportError:
        return False
    preempted = getattr(loop, "RunPreempted", None)
    return isinstance(preempted, type) and isinstance(exc, preempted)
