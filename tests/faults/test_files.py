"""A full disk, corrupt and truncated records/checkpoints/histories, and two `run` commands on one OUT folder:
each ends, after one plain rerun, equal to an uninterrupted sweep."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from benchmarks import store

from . import harness

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (skipped where mounting is not permitted); always unmounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or 'mount failed'}): the full-disk "
                    f"fault needs root or CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_is_a_one_line_error_and_a_rerun_after_freeing_space_finishes(trial, reference, small_disk):
    out = small_disk / "out"
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * (free - 96 * 1024))  # room for planning and a few checkpoints, not a sweep
    marker = trial.marker()
    first = harness.run(trial.cfg, out, marker)
    output = first.stdout + first.stderr
    assert first.returncode == 1, output
    assert "Traceback" not in output and "unexpected pos" not in output, output
    assert "error: no space left on device" in output, output
    assert not harness.wait_for_no_processes(marker), output
    assert not harness.corrupt_records(out), output
    assert "failed" not in store.run_statuses(out).values(), output

    filler.unlink()
    rerun = harness.run(trial.cfg, out, trial.marker())
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not harness.differences(harness.snapshot(out), reference), harness.differences(harness.snapshot(out),
                                                                                            reference)
    assert not harness.leftover_tmp(out)


def test_corrupt_records_checkpoints_and_histories_are_reported_and_repaired(trial, reference, reference_out):
    out = trial.out
    shutil.copytree(reference_out, out)
    ids = store.list_run_ids(out)
    dirs = [store.run_path(out, rid) for rid in ids]

    def interrupted(run_dir):
        record = store.read_record(run_dir)
        store.write_record(run_dir, {**record, "status": "interrupted", "metrics": {}})

    (dirs[0] / store.RECORD).write_text((dirs[0] / store.RECORD).read_text()[:50])  # truncated record
    interrupted(dirs[1])
    (dirs[1] / "checkpoint.pt").write_bytes(b"garbage" * 100)  # corrupt latest checkpoint
    interrupted(dirs[2])
    lines = (dirs[2] / store.HISTORY).read_text().splitlines(keepends=True)
    (dirs[2] / store.HISTORY).write_text("".join(lines[: len(lines) // 3]))  # history cut below the checkpoint
    interrupted(dirs[3])
    data = (dirs[3] / "checkpoint.pt").read_bytes()
    (dirs[3] / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated checkpoint
    with open(dirs[3] / store.HISTORY, "a") as fh:
        fh.write('{"step": 99, "spl')  # torn last line

    status = subprocess.run(harness.command(trial.cfg, out)[:3] + ["status", str(out)], cwd=harness.ROOT,
                            env=harness.environment(trial.marker()), capture_output=True, text=True, timeout=120)
    assert "1 unreadable" in status.stdout and str(dirs[0] / store.RECORD) in status.stdout, status.stdout
    results = subprocess.run(harness.command(trial.cfg, out)[:3] + ["results", str(out)], cwd=harness.ROOT,
                             env=harness.environment(trial.marker()), capture_output=True, text=True, timeout=120)
    assert "unreadable run record" in results.stderr and str(dirs[0] / store.RECORD) in results.stderr
    assert "unreadable" in results.stdout

    rerun = harness.run(trial.cfg, out, trial.marker())
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not harness.differences(harness.snapshot(out), reference), harness.differences(harness.snapshot(out),
                                                                                            reference)
    assert not harness.corrupt_records(out)


def test_two_run_commands_on_one_out_folder_share_the_work(trial, reference):
    first, second = trial.marker(), trial.marker()
    a = harness.start(trial.cfg, trial.out, first)
    time.sleep(0.5)
    b = harness.start(trial.cfg, trial.out, second)
    out_a, _ = a.communicate(timeout=harness.EXIT_TIMEOUT_S * 2)
    out_b, _ = b.communicate(timeout=harness.EXIT_TIMEOUT_S * 2)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    assert not harness.wait_for_no_processes(first) and not harness.wait_for_no_processes(second)
    assert not harness.differences(harness.snapshot(trial.out), reference)
    attempts = {rid: store.read_record(store.run_path(trial.out, rid)).get("attempt") for rid in reference}
    assert set(attempts.values()) == {1}, f"runs executed more than once: {attempts}"  # no duplicated work
    assert not harness.corrupt_records(trial.out)
