"""Hostile config input (issue 22, items 1-7; issue 21, item 2): every bad input is one line naming the
file/key/line, exit code 2, nothing written, in bounded time and memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.config.errors import ConfigError
from benchmarks.config.grid import count_points, expand, iter_points
from benchmarks.config.loader import load_config, parse_yaml
from benchmarks.engine.sweep import format_plan, plan_sweep

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests.engine.tiny_task:TinyTask"
BASE = f"task: {TINY}\noptimizer: {{name: adamw, lr: 1.0e-2}}\ntrain: {{epochs: 1, batch_size: 32, device: cpu}}\n"


def run_cli(*argv) -> int:
    return main([str(a) for a in argv])


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# -- 1. encoding -------------------------------------------------------------------------------------------

def test_non_utf8_config_names_the_file_and_the_byte(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"task: classification\n# caf\xe9\n")
    assert run_cli("run", path, "--dry-run") == 2
    assert error_of(capsys) == (
        f"error: {path}: not valid UTF-8: byte 0xe9 at byte offset 26 (line 2, column 6); config files are UTF-8 "
        f"(re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`)")


def test_binary_config_is_refused(tmp_path, capsys):
    path = tmp_path / "b.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    assert run_cli("run", path, "--dry-run") == 2
    assert error_of(capsys) == f"error: {path}: not a text file: NUL byte at byte offset 7 (line 1, column 8); " \
                               f"a config is UTF-8 YAML text"


# -- 2. output folder ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dry", [True, False])
def test_out_that_is_a_file_or_under_a_file(write, tmp_path, capsys, dry):
    cfg = write("c.yaml", BASE)
    afile = tmp_path / "afile"
    afile.write_text("x")
    extra = ["--dry-run"] if dry else ["--executor", "debug"]
    assert run_cli("run", cfg, "--out", afile, *extra) == 2
    assert error_of(capsys) == f"error: results folder: {afile} is a file, not a folder; pass --out DIR with a folder"
    assert run_cli("run", cfg, "--out", afile / "sub", *extra) == 2
    assert error_of(capsys) == (f"error: results folder: {afile} (a parent of {afile / 'sub'}) is a file, not a "
                                f"folder; pass --out DIR with a folder")


def test_out_not_writable(write, tmp_path, capsys, monkeypatch):
    cfg = write("c.yaml", BASE)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    # root may write anywhere, so the read-only folder is simulated where the check asks
    monkeypatch.setattr("benchmarks.engine.sweep.os.access",
                        lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    assert run_cli("run", cfg, "--out", ro / "new", "--dry-run") == 2
    assert error_of(capsys) == (f"error: results folder: {ro} (where {ro / 'new'} would be created) is not "
                                f"writable; pass --out DIR with a folder you can write")
    assert not (ro / "new").exists()


def test_results_of_a_file_is_one_line(capsys):
    assert run_cli("results", "/etc/passwd") == 2
    assert error_of(capsys) == "error: /etc/passwd is a file, not a results folder (the --out of `run`)"


# -- 4. billion laughs ---------------------------------------------------------------------------------------

def laughs(levels: int) -> str:
    lines = [BASE, 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_in_under_a_second(write, capsys):
    cfg = write("laughs.yaml", laughs(9))
    start = time.perf_counter()
    assert run_cli("run", cfg, "--dry-run") == 2
    assert time.perf_counter() - start < 1.0
    message = error_of(capsys)
    assert message.startswith(f"error: {cfg}: the value at line ") and "expands to more than 200,000 nodes" in message


def test_moderate_aliases_still_load():
    data = parse_yaml("a: &a {x: 1, y: [1, 2]}\nb: *a\nc: {<<: *a, x: 2}\n")
    assert data == {"a": {"x": 1, "y": [1, 2]}, "b": {"x": 1, "y": [1, 2]}, "c": {"x": 2, "y": [1, 2]}}


def test_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match="recursive alias at line 1"):
        parse_yaml("a: &a [1, *a]\n")


# -- 5. duplicate keys ---------------------------------------------------------------------------------------

def test_duplicate_key_names_key_and_both_lines(write):
    cfg = write("d.yaml", BASE + "data:\n  n: 16\n  dim: 2\n  n: 32\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value) == (f"{cfg}: duplicate key `n` at line 7 (first at line 5); the last one would "
                               f"silently win: keep one")
    flow = write("f.yaml", "optimizer: {lr: 1.0e-3, lr: 5.0}\n")
    with pytest.raises(ConfigError, match="duplicate key `lr` at line 1 \\(first at line 1\\)"):
        load_config(flow)


# -- 6. slurm section ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [["--dry-run"], ["--executor", "debug"], ["--executor", "slurm"]])
def test_slurm_section_is_validated_for_every_executor_before_anything_is_written(write, tmp_path, capsys, extra):
    cfg = write("s.yaml", BASE + "slurm: {partiton: gpu}\n")
    out = tmp_path / "out"
    assert run_cli("run", cfg, "--out", out, *extra) == 2
    message = error_of(capsys)
    assert "unknown key `partiton` at `slurm`; did you mean `partition`?" in message
    assert not out.exists()


# -- 7. huge grids -------------------------------------------------------------------------------------------

def test_grid_is_counted_without_expanding_it():
    cfg = {"grid": {f"k{i}": list(range(10)) for i in range(6)}}
    start = time.perf_counter()
    assert count_points(cfg) == 1_000_000
    first = next(iter_points(cfg))
    assert first == {f"k{i}": 0 for i in range(6)}
    assert time.perf_counter() - start < 0.5


def test_large_grid_needs_a_flag(write, tmp_path, capsys):
    cfg = write("big.yaml", BASE + "grid:\n  train.seed: [" + ", ".join(map(str, range(101))) + "]\n"
                "  data.n: [" + ", ".join(str(16 + i) for i in range(100)) + "]\n")
    start = time.perf_counter()
    assert run_cli("run", cfg, "--dry-run", "--out", tmp_path / "o") == 2
    assert time.perf_counter() - start < 2.0
    assert error_of(capsys) == (
        f"error: the grid expands to 10,100 runs ({cfg}: 10,100), more than the limit of 10,000; check the "
        f"grid/zip lists, or pass --allow-large-grid to plan and launch it anyway (--max-runs N sets the limit)")
    assert run_cli("run", cfg, "--dry-run", "--max-runs", "50", "--set", "grid.data.n=[16]") == 2
    assert "the grid expands to 101 runs" in error_of(capsys)


def test_dry_run_of_many_runs_is_summarised(write, tmp_path, capsys):
    cfg = write("many.yaml", BASE + "grid:\n  train.seed: [" + ", ".join(map(str, range(250))) + "]\n")
    assert run_cli("run", cfg, "--dry-run", "--out", tmp_path / "o") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 202
    assert lines[100] == "... 50 more runs not listed (--list-all lists every run) ..."
    assert lines[-1] == "250 runs (0 already done)" and lines[-2].endswith("train.seed=249")
    assert run_cli("run", cfg, "--dry-run", "--out", tmp_path / "o", "--list-all") == 0
    assert len(capsys.readouterr().out.splitlines()) == 251


def test_allow_large_grid_plans_it(write, tmp_path):
    cfg = write("big.yaml", BASE + "grid:\n  train.seed: [0, 1, 2]\n")
    with pytest.raises(ConfigError, match="3 runs"):
        plan_sweep([cfg], out_dir=tmp_path, max_runs=2)
    plan = plan_sweep([cfg], out_dir=tmp_path, max_runs=None)
    assert len(plan.runs) == 3 and list(format_plan(plan, limit=2))[1].startswith("... 1 more runs")


# -- issue 21, 2: zip/grid composition -------------------------------------------------------------------------

def test_issue_reproduction_zip_merged_from_the_command_line(capsys):
    """The reported command: a zip over `optimizer` merged into the file's zip over optimizer.name/tags."""
    cfg = ROOT / "configs/lm/synthetic_demo.yaml"
    assert run_cli("run", cfg, "--dry-run", "--set", "zip.optimizer=[{name: adamp}, {name: torch.optim:Adamax}]") == 2
    message = error_of(capsys)
    assert "--set 'zip.optimizer=[{name: adamp}, {name: torch.optim:Adamax}]': the config's zip already pairs " \
           "`optimizer.name`, `tags.optimizer` element by element" in message
    assert "--set 'zip={" in message and "docs/configs.md" in message


def test_replacing_the_whole_zip_from_the_command_line(tmp_path, capsys):
    cfg = ROOT / "configs/lm/synthetic_demo.yaml"
    new_zip = "zip={optimizer.name: [adamp, 'torch.optim:Adamax'], tags.optimizer: [AdamP, Adamax]}"
    assert run_cli("run", cfg, "--dry-run", "--out", tmp_path, "--set", new_zip) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "4 runs (0 already done)"
    assert "optimizer.name=torch.optim:Adamax tags.optimizer=Adamax" in lines[1]


def test_section_and_key_inside_it_conflict(write):
    cfg = {"zip": [{"optimizer": [{"name": "adamp"}, {"name": "sgd"}]},
                   {"optimizer.name": ["adamw", "adamp"], "tags.optimizer": ["AdamW", "AdamP"]}]}
    with pytest.raises(ConfigError) as info:
        expand(cfg)
    assert str(info.value) == (
        "`zip[0].optimizer` sets `name` inside its `optimizer` values and `zip[1].optimizer.name` varies the same "
        "key: one would silently override the other (and labels paired with either would go to the wrong runs). "
        "Vary each key once: either inside the `optimizer` values or as `optimizer.name`")
    # a section and a key it does not set: the key completes each section value (the toy configs do this)
    ok = {"grid": {"optimizer": [{"name": "sgd"}, {"name": "sgdp"}], "optimizer.lr": [0.1, 0.01]}}
    assert [r["optimizer"] for r, _ in expand(ok)][1] == {"name": "sgd", "lr": 0.01}


def test_zips_of_two_files_are_not_merged(write):
    write("base.yaml", BASE + "zip: {optimizer.name: [adamw, adamp], tags.optimizer: [AdamW, AdamP]}\n")
    top = write("top.yaml", "base: base.yaml\nzip: {optimizer.lr: [0.1, 0.01]}\n")
    with pytest.raises(ConfigError, match="`zip` is defined both in .*base.yaml and in .*top.yaml"):
        load_config(top)


def test_tag_naming_another_runs_value_is_an_error(write, tmp_path):
    cfg = write("t.yaml", BASE + "zip:\n  optimizer.name: [adamw, adamp]\n  tags.optimizer: [AdamP, AdamW]\n")
    with pytest.raises(ConfigError) as info:
        plan_sweep([cfg], out_dir=tmp_path)
    assert str(info.value) == (
        f"{cfg}: `tags.optimizer: AdamP` is on a run whose `optimizer.name` is 'adamw', while another run has "
        f"`optimizer.name: 'adamp'`: the tag contradicts the value it describes (lists of a zip/grid re-paired?). "
        f"Vary `tags.optimizer` together with `optimizer.name` in one zip, or set both")


def test_tag_left_behind_by_a_set_is_an_error(tmp_path):
    cfg = ROOT / "configs/lm/synthetic_demo.yaml"
    with pytest.raises(ConfigError, match="--set changes `optimizer.name` to 'adamp' but `tags.optimizer` still says"):
        plan_sweep([cfg], ["zip=null", "optimizer.name=adamp"], out_dir=tmp_path)
    plan = plan_sweep([cfg], ["zip=null", "optimizer.name=adamp", "tags.optimizer=AdamP"], out_dir=tmp_path)
    assert {r.spec.config["tags"]["optimizer"] for r in plan.runs} == {"AdamP"}


def test_paper_labels_that_name_no_run_are_allowed(tmp_path):
    # Table 1's "Adam" column is run with AdamW (the author's baseline): no run of the sweep is `adam`
    plan = plan_sweep([ROOT / "configs/paper/table1_resnet18.yaml"], out_dir=tmp_path, check_data=False)
    assert [r.spec.config["tags"]["optimizer"] for r in plan.runs] == ["SGD", "SGDP", "Adam", "AdamP"]
