"""``python -m benchmarks compare-mine``: a new optimizer on every CPU demo beside the suite's (issue 21.8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.workflows import mine
from benchmarks.config import expand, load_config, resolve_config
from benchmarks.config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("demo", mine.DEMOS, ids=lambda d: d.name)
def test_every_demo_takes_a_new_optimizer_and_drops_the_suites_axes(demo):
    config = load_config(ROOT / demo.config)
    cfg = mine.mine_config(config, "torch.optim:NAdam", {"lr": 2e-3}, [0, 1, 2, 3])
    runs = [resolve_config(run) for run, _ in expand(cfg)]
    assert {r["optimizer"]["name"] for r in runs} == {"torch.optim:NAdam"}
    assert {r["optimizer"]["lr"] for r in runs} == {2e-3}
    assert {r["train"]["seed"] for r in runs} == {0, 1, 2, 3}
    if isinstance(cfg.get("tags"), dict) and "optimizer" in (config.get("tags") or {}):
        assert {r["tags"]["optimizer"] for r in runs} == {"NAdam"}  # never a suite optimizer's tag
    # the suite's own config keeps its optimizers
    assert len({r["optimizer"]["name"] for r, _ in [(resolve_config(x), p) for x, p in expand(config)]}) > 1


@pytest.mark.parametrize("text, expected", [
    (None, {}), ("lr: 1.0e-3", {"lr": 1e-3}), ("{lr: 0.1, momentum: 0.9}", {"lr": 0.1, "momentum": 0.9}),
])
def test_kwargs(text, expected):
    assert mine.parse_kwargs(text) == expected


@pytest.mark.parametrize("text", ["lr", "[1, 2]", "name: sgd", "lr: [", "1: 2"])
def test_bad_kwargs_are_refused(text):
    with pytest.raises(ConfigError, match="--kw"):
        mine.parse_kwargs(text)


def _cli(*args, tmp_path, env_extra=None):
    import os

    env = {**os.environ, "BENCHMARKS_NO_PROGRESS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "benchmarks", "compare-mine", *args, "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_an_optimizer_that_does_not_import_stops_everything_before_a_run(tmp_path):
    res = _cli("nope_not_here.mod:X", "--only", "toy2d,digits", tmp_path=tmp_path)
    assert res.returncode == 2
    assert "PYTHONPATH" in res.stderr and "nothing was run" in res.stderr
    assert not list(tmp_path.glob("*/runs/*"))


@pytest.mark.slow
def test_end_to_end_on_the_toy_with_a_module_outside_the_project(tmp_path):
    code = tmp_path / "code" / "myopts"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "signum.py").write_text(
        "import torch\n"
        "class Signum(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=1e-3):\n"
        "        super().__init__(params, dict(lr=lr))\n"
        "    @torch.no_grad()\n"
        "    def step(self, closure=None):\n"
        "        for g in self.param_groups:\n"
        "            for p in g['params']:\n"
        "                if p.grad is not None:\n"
        "                    p.add_(p.grad.sign(), alpha=-g['lr'])\n")
    res = _cli("myopts.signum:Signum", "--kw", "lr: 0.01", "--only", "toy2d", tmp_path=tmp_path / "out",
               env_extra={"PYTHONPATH": str(tmp_path / "code")})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "## compare-mine: myopts.signum:Signum" in res.stdout
    row = [line for line in res.stdout.splitlines() if line.startswith("| toy2d")]
    assert len(row) == 1 and "norm_growth" in row[0] and "deterministic" in row[0]
    assert (tmp_path / "out" / "configs" / "toy2d-mine.yaml").is_file()
