"""The official ``adamp==0.3.0`` as the test reference, fetched at test time into an ignored cache.

It is downloaded with pip (sdist, no dependencies) into ``.cache/reference/`` (git-ignored) and its two
modules are loaded with importlib under the names ``adamp_reference_adamp`` / ``adamp_reference_sgdp``, so
they never shadow this project's ``adamp`` package and are never committed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

VERSION = "0.3.0"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "reference"


def _source_dir() -> Path:
    src = CACHE / f"adamp-{VERSION}" / "adamp"
    if (src / "adamp.py").exists() and (src / "sgdp.py").exists():
        return src
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           "--dest", str(CACHE), f"adamp=={VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archive = CACHE / f"adamp-{VERSION}.tar.gz"
    if proc.returncode != 0 or not archive.exists():
        raise RuntimeError(f"could not fetch the reference package with {' '.join(cmd)}:\n{proc.stderr}")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"adamp-{VERSION}/adamp/")]
        tar.extractall(CACHE, members=members, filter="data")
    return src


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_reference() -> tuple[type, type]:
    """Return the official (AdamP, SGDP) classes."""
    src = _source_dir()
    ref_adamp = _load("adamp_reference_adamp", src / "adamp.py")
    ref_sgdp = _load("adamp_reference_sgdp", src / "sgdp.py")
    return ref_adamp.AdamP, ref_sgdp.SGDP
