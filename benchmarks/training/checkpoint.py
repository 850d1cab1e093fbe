"""Checkpoints that survive being killed at any instant, and RNG states that restore exactly.

A run folder holds at most two checkpoints::

    checkpoint.pt         latest          checkpoint.pt.sha256       "<sha256 hex> <size in bytes>"
    checkpoint.prev.pt    the one before  checkpoint.prev.pt.sha256

``save_checkpoint`` writes a temporary file in the same folder, fsyncs it, and only then rotates
latest -> prev and moves the new file in with ``os.replace``; the checksum file beside it is written the
same way. Whatever instant a job is killed at (SLURM preemption, time limit, SIGKILL, node failure), at
least one complete checkpoint remains. ``load_latest_checkpoint`` verifies size and checksum (when the
checksum file is there) and that ``torch.load(weights_only=True)`` succeeds; a file failing either is
renamed to ``*.corrupt`` (so the next save cannot rotate it over the good previous one) and the previous
checkpoint is used instead. When nothing valid is left it returns ``None`` and the run starts over rather
than crash-looping on every requeue.

Everything saved must be loadable with ``weights_only=True`` (no arbitrary pickles: a checkpoint must never
be able to execute code). ``save_checkpoint`` checks this up front and names the offending key, and
``capture_rng_state`` stores the RNG states as tensors and plain Python values for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import tempfile
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_NAME",
    "PREVIOUS_NAME",
    "capture_rng_state",
    "checkpoint_paths",
    "load_latest_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
_CHECKSUM_SUFFIX = ".sha256"
_TMP_PREFIX = ".checkpoint-"
_TMP_SUFFIX = ".tmp"
#: a leftover temporary file older than this belongs to a killed writer, not a concurrent one
_STALE_TMP_S = 60.0

# Types torch.load(weights_only=True) reconstructs without help.
_PLAIN_TYPES = (bool, int, float, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def checkpoint_paths(run_dir: Path) -> tuple[Path, Path]:
    """Return the (latest, previous) checkpoint paths of a run folder."""
    run_dir = Path(run_dir)
    return run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_NAME


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + _CHECKSUM_SUFFIX)


def _check_weights_only_safe(obj: Any, where: str) -> None:
    """Raise TypeError naming the first value that torch.load(weights_only=True) could not read back."""
    # numpy scalars subclass float/int but pickle through numpy, which weights_only refuses
    if isinstance(obj, (np.generic, np.ndarray)):
        raise TypeError(
            f"checkpoint value {where} is a numpy {type(obj).__name__}; convert it (.item() or "
            "torch.from_numpy) so that torch.load(weights_only=True) can read it back"
        )
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN_TYPES):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise TypeError(f"checkpoint key {where}[{key!r}] has type {type(key).__name__}; use str or int keys")
            _check_weights_only_safe(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple, set)):
        for i, value in enumerate(obj):
            _check_weights_only_safe(value, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint value {where} has type {type(obj).__module__}.{type(obj).__qualname__}, which "
        "torch.load(weights_only=True) cannot read back; store tensors, numbers, strings, None and "
        "lists/tuples/dicts of them (e.g. a state_dict())"
    )


def _fsync_dir(directory: Path) -> None:
    # makes the renames themselves durable; not every file system allows opening a directory
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _WriteRecorder:
    """A file wrapper that remembers the OSError of a failed write: torch's zip writer turns it into a
    RuntimeError ("unexpected pos ...") that does not say the disk is full."""

    def __init__(self, fh):
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._fh.flush()


def _remove_stale_tmp(run_dir: Path) -> None:
    now = time.time()
    for tmp in run_dir.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                tmp.unlink()
        except FileNotFoundError:
            pass


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    """Write ``state`` as the run's latest checkpoint, atomically; the former latest becomes the fallback.

    ``state`` may hold tensors, numbers, strings, None, torch dtypes/devices and lists/tuples/dicts of them
    (model/optimizer/scheduler ``state_dict()``s, ``capture_rng_state()``): a TypeError naming the key is
    raised before anything is written otherwise. Returns the path of the new checkpoint.
    """
    if not isinstance(state, dict):
        raise TypeError(f"save_checkpoint expects a dict, got {type(state).__name__}")
    _check_weights_only_safe(state, "state")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(run_dir)
    latest, previous = checkpoint_paths(run_dir)

    fd, tmp_name = tempfile.mkstemp(dir=run_dir, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = _WriteRecorder(fh)
            try:
                torch.save(state, writer)
            except RuntimeError as exc:
                if writer.error is None:
                    raise
                err = writer.error
                raise OSError(err.errno, f"{err.strerror} (writing checkpoint)", str(tmp)) from exc
            fh.flush()
            os.fsync(fh.fileno())
        digest, size = _sha256(tmp)
        # Each step below leaves a loadable checkpoint behind if the process dies right after it: a file
        # whose checksum file is missing or stale is verified by loading it, or skipped for the other one.
        if latest.exists():
            if _checksum_path(latest).exists():
                os.replace(_checksum_path(latest), _checksum_path(previous))
            else:
                _checksum_path(previous).unlink(missing_ok=True)
            os.replace(latest, previous)
        os.replace(tmp, latest)
        _write_text_atomic(_checksum_path(latest), f"{digest} {size}\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(run_dir)
    return latest


def _verify(path: Path) -> str | None:
    """Return why ``path`` is unusable according to its checksum file, or None (also when there is none)."""
    side = _checksum_path(path)
    try:
        recorded = side.read_text().split()
    except FileNotFoundError:
        return None
    if len(recorded) != 2 or not recorded[1].isdigit():
        # a checksum file cut short is no evidence against the checkpoint: torch.load decides
        return None
    digest, size = _sha256(path)
    if size != int(recorded[1]):
        return f"size {size} bytes, {side.name} records {recorded[1]} (truncated?)"
    if digest != recorded[0]:
        return f"sha256 {digest[:12]}..., {side.name} records {recorded[0][:12]}..."
    return None


def _quarantine(path: Path, reason: str) -> None:
    target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    warnings.warn(f"checkpoint {path} is unusable ({reason}); moved to {target.name}, using the previous one",
                  RuntimeWarning, stacklevel=3)
    log.warning("checkpoint %s is unusable (%s); moved to %s", path, reason, target.name)
    try:
        os.replace(path, target)
        side = _checksum_path(path)
        if side.exists():
            os.replace(side, _checksum_path(target))
    except OSError as exc:  # read-only folder: still fall back, just without moving it
        log.warning("could not move %s aside: %s", path, exc)


def load_latest_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict | None:
    """Return the newest valid checkpoint of a run (loaded with ``weights_only=True``), or None.

    A checkpoint that is truncated, fails its checksum or cannot be unpickled is moved aside as
    ``*.corrupt-<time>`` with a warning and the previous one is tried. None means there is nothing (valid)
    to resume from: the run starts from scratch instead of failing on every restart.
    """
    for path in checkpoint_paths(Path(run_dir)):
        if not path.exists():
            continue
        reason = _verify(path)
        if reason is None:
            try:
                state = torch.load(path, map_location=map_location, weights_only=True)
            except FileNotFoundError:
                continue  # rotated away by a concurrent writer between exists() and load
            except Exception as exc:  # noqa: BLE001 - any failure to read back means: not usable
                reason = f"torch.load failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            else:
                if isinstance(state, dict):
                    return state
                reason = f"holds a {type(state).__name__}, not a dict"
        _quarantine(path, reason)
    return None


# -- RNG state ------------------------------------------------------------------------------------------

def capture_rng_state() -> dict:
    """Snapshot the Python, NumPy, torch CPU and (if initialised) CUDA generators.

    Everything is a tensor or a plain value, so the snapshot can be saved in a checkpoint that loads with
    ``weights_only=True``.
    """
    py_version, py_internal, py_gauss = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict) -> None:
    """Put back the generators captured by :func:`capture_rng_state` (missing parts are left alone)."""
    if "python" in state:
        py = state["python"]
        internal = tuple(int(x) for x in torch.as_tensor(py["internal"]).tolist())
        random.setstate((int(py["version"]), internal, py["gauss_next"]))
    if "numpy" in state:
        nps = state["numpy"]
        keys = torch.as_tensor(nps["keys"]).numpy().astype(np.uint32)
        np.random.set_state((nps["kind"], keys, int(nps["pos"]), int(nps["has_gauss"]),
                             float(nps["cached_gaussian"])))
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = [torch.as_tensor(s, dtype=torch.uint8).cpu() for s in state["cuda"]]
        if len(cuda_states) != torch.cuda.device_count():
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda_states)} devices, this process sees "
                f"{torch.cuda.device_count()}: restoring the common ones; GPU random draws may differ",
                RuntimeWarning, stacklevel=2,
            )
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
