"""The peers' own test suites, run against ours: timm's tests/test_optim.py and pytorch_optimizer's tests,
their AdamP/SGDP cases, with each package's registry pointed at our classes (tests/optim/peer_plugins/).

Both come from the packages' sdists, fetched at test time with pip into ``.cache/peers/`` (git-ignored), as
benchmarks/reference.py fetches the official adamp; none of their code is in this repository. timm's tests
run against the installed timm (the sdist of the same version); pytorch_optimizer is not installed: its
package and tests run from the unpacked sdist. What is deselected, and why, is in docs/compatibility.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "peers"
PLUGINS = Path(__file__).resolve().parent / "peer_plugins"
PYTORCH_OPTIMIZER = "4.1.0"


def _sdist(name: str, version: str, members: tuple[str, ...]) -> Path:
    """The unpacked parts ``members`` (folders) of ``name==version``'s sdist; fetched once."""
    root = CACHE / f"{name}-{version}"
    if all((root / m).is_dir() for m in members):
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           "--dest", str(CACHE), f"{name}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(CACHE.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) + \
        sorted(CACHE.glob(f"{name}-{version}.tar.gz"))
    if proc.returncode != 0 or not archives:
        raise RuntimeError(f"could not fetch the {name} sdist with {' '.join(cmd)}:\n{proc.stderr}")
    with tarfile.open(archives[0]) as tar:
        top = tar.getnames()[0].split("/")[0]
        wanted = [m for m in tar.getmembers() if any(m.name.startswith(f"{top}/{p}/") for p in members)]
        tar.extractall(CACHE, members=wanted, filter="data")
    if CACHE / top != root:
        (CACHE / top).rename(root)
    return root


def _pytest(cwd: Path, plugin: str, args: list[str]) -> subprocess.CompletedProcess:
    # cwd first on sys.path (the sdist's own `tests` package wins over ours), then the plugins and this
    # repository's `adamp`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(REPO)]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", plugin, "-p", "no:cacheprovider", "-o", "addopts=",
           "--rootdir", str(cwd), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _summary(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]


@pytest.mark.slow
def test_timm_optim_suite_passes_with_ours():
    """timm's AdamP/SGDP cases (not its cautious variants cadamp/csgdp, which are timm's own optimizers)."""
    timm = pytest.importorskip("timm")
    pytest.importorskip("expecttest")  # timm's test module imports torch's internal TestCase
    root = _sdist("timm", timm.__version__, ("tests",))
    proc = _pytest(root, "timm_ours", ["tests/test_optim.py", "-k", "(adamp or sgdp) and not cadamp and not csgdp"])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = _summary(proc)
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 30 and "failed" not in summary, summary


@pytest.mark.slow
def test_pytorch_optimizer_suite_passes_with_ours():
    """pytorch_optimizer's AdamP/SGDP cases (the test files that have any), less those of options AdamP does
    not have."""
    root = _sdist("pytorch_optimizer", PYTORCH_OPTIMIZER, ("pytorch_optimizer", "tests"))
    not_ours = ["use_gc", "adanorm", "adam_debias", "cautious"]  # its options that AdamP has no equivalent of
    expr = "(adamp or sgdp) and " + " and ".join(f"not {o}" for o in not_ours)
    files = [f"tests/{f}.py" for f in ("test_create_optimizer", "test_general_optimizer_parameters",
                                       "test_gradients", "test_optimizer_variants", "test_optimizers")]
    proc = _pytest(root, "pytorch_optimizer_ours", [*files, "-k", expr])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = _summary(proc)
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 42 and "failed" not in summary, summary
