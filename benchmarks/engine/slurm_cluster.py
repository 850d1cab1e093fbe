"""Facts about the SLURM cluster reachable from here: whether a controller answers (checked before anything is
submitted), and its ``MaxArraySize``."""

from __future__ import annotations

import shutil
import subprocess


_CLUSTER_CONFIG: dict[str, str] | None = None


def _scontrol_config() -> dict[str, str]:
    global _CLUSTER_CONFIG
    if _CLUSTER_CONFIG is None:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"`scontrol show config` failed ({proc.returncode}): {proc.stderr.strip()}")
        config: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                config[key.strip()] = value.strip()
        _CLUSTER_CONFIG = config
    return _CLUSTER_CONFIG


#: seconds ``scontrol ping`` may take before SLURM counts as unavailable
PING_TIMEOUT_S = 20.0


def slurm_unavailable() -> str | None:
    """Why SLURM cannot take jobs from here (no ``sbatch``, no controller answering), or None."""
    if shutil.which("sbatch") is None:
        return ("SLURM's sbatch is not on PATH (a local test cluster: sudo bash scripts/slurm_local.sh up; "
                "or run here with --executor local)")
    if shutil.which("scontrol") is None:
        return None  # cannot ask; sbatch itself will tell
    try:
        result = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no SLURM controller answered `scontrol ping` within {PING_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"`scontrol ping` could not run: {exc}"
    text = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "DOWN" in text or " UP" not in text:
        first = text.splitlines()[0] if text else f"exit status {result.returncode}"
        return f"no SLURM controller is answering (`scontrol ping`: {first})"
    return None


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indices run 0..MaxArraySize-1); read once per process."""
    value = _scontrol_config().get("MaxArraySize", "1001")
    try:
        return max(1, int(value))
    except ValueError:
        return 1001
