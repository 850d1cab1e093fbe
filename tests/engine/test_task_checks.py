"""Each task's check_config and check_data run for every run of a sweep before launch (and in --dry-run):
values that used to pass validation and fail only inside the run (issue 22, item 3) and missing data or weights
(issue 21, item 6) are exit code 2 naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.config.errors import ConfigError
from benchmarks.engine.sweep import plan_sweep
from benchmarks.tasks import TASKS, get_task
from benchmarks.tasks.base import Task

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "configs/demo/digits.yaml"


def plan_error(config, overrides, tmp_path, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        plan_sweep([config], overrides, out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    return info.value.message


def test_every_task_has_both_checks():
    assert Task.check_config({}) is None and Task.check_data({}) is None  # no-op defaults
    for name in TASKS:
        cls = get_task(name)
        assert "check_config" in vars(cls) or any("check_config" in vars(b) for b in cls.__mro__[1:-3]), name


@pytest.mark.parametrize("override, expected", [
    ("model.name=resnet9000", "model.name: unknown model 'resnet9000'"),
    ("data.name=mnist", "data.name: 'mnist' is not a classification data set; valid: imagefolder, digits"),
    ("data.val_size=1.5", "data.val_size must be in (0, 1)"),
    ("model.width=-1.0", "model.width must be > 0, got -1.0"),
    ("train.seed=1180591620717411303424", "`train.seed` must be a 64-bit integer"),
    ("model.kwargs={depth: 3}", "model.kwargs: digits_cnn takes no extra options"),
])
def test_run_time_failures_are_found_while_planning(override, expected, tmp_path):
    assert expected in plan_error(DIGITS, [override], tmp_path)


@pytest.mark.parametrize("config, override, expected", [
    ("configs/toy/toy2d.yaml", "data.init_angle_deg=180.0", "`data.init_angle_deg` must be in [0, 180)"),
    ("configs/toy/toy3d.yaml", "data.start_psi=9.0", "`data.start_psi` must be in"),
    ("configs/toy/toy2d.yaml", "train.steps_per_epoch=0", "`train.steps_per_epoch` must be an integer >= 1"),
    ("configs/retrieval/digits_demo.yaml", "model.backbone=resnet5", "model.backbone: unknown backbone 'resnet5'"),
    ("configs/retrieval/digits_demo.yaml", "train.samples_per_class=1", "train.samples_per_class must be >= 2"),
    ("configs/lm/synthetic_demo.yaml", "model.d_model=63", "model.d_model must be even"),
    ("configs/lm/synthetic_demo.yaml", "data.name=wikitext-3", "data.name: 'wikitext-3' is not a language-mod"),
    ("configs/paper/table5_speech_commands.yaml", "model.channels=[8]", "model.channels (1 entries) and model.pooling"),
    ("configs/paper/table5_speech_commands.yaml", "data.threshold=best", "data.threshold: 'best'"),
])
def test_each_task_checks_its_config_before_launch(config, override, expected, tmp_path):
    assert expected in plan_error(ROOT / config, [override], tmp_path, check_data=False)


def test_an_error_in_one_grid_point_names_it(write, tmp_path):
    cfg = write("g.yaml", "task: toy2d\noptimizer: {name: sgd, lr: 0.1}\ngrid:\n  data.init_angle_deg: [10.0, 200.0]\n")
    message = plan_error(cfg, [], tmp_path)
    assert message.endswith("got 200.0 (grid point: data.init_angle_deg=200.0)")


# -- data on disk ---------------------------------------------------------------------------------------------

def test_issue_command_nonexistent_imagenet_root_exits_2(tmp_path, capsys):
    code = main(["run", str(ROOT / "configs/paper/table1_resnet18.yaml"), "--set", "data.root=/nonexistent",
                 "--dry-run", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "data.root: /nonexistent does not exist" in err and "Traceback" not in err


def test_smoke_does_not_hide_a_missing_root(tmp_path, capsys):
    code = main(["run", str(ROOT / "configs/paper/table1_resnet18.yaml"), "--set", "data.root=/nonexistent",
                 "--smoke", "--executor", "debug", "--out", str(tmp_path / "o")])
    assert code == 2 and "data.root: /nonexistent does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_imagefolder_layout_is_checked(tmp_path):
    root = tmp_path / "imagenet"
    (root / "train" / "a").mkdir(parents=True)
    cfg = ROOT / "configs/paper/table1_resnet18.yaml"
    assert "has no val/ folder" in plan_error(cfg, [f"data.root={root}"], tmp_path)
    (root / "val" / "a").mkdir(parents=True)
    assert len(plan_sweep([cfg], [f"data.root={root}"], out_dir=tmp_path / "o").runs) == 4
    weights = tmp_path / "missing.pth"
    assert f"model.pretrained_path: {weights} does not exist" in plan_error(
        cfg, [f"data.root={root}", f"model.pretrained_path={weights}"], tmp_path)


def test_skip_data_check_plans_without_data(tmp_path):
    plan = plan_sweep([ROOT / "configs/paper/table1_resnet18.yaml"], out_dir=tmp_path / "o", check_data=False)
    assert len(plan.runs) == 4


def test_retrieval_layout_and_weights_are_checked(tmp_path):
    cfg = ROOT / "configs/paper/table6_cub_triplet.yaml"
    root = tmp_path / "cub"
    root.mkdir()
    assert "cub200: annotation file not found; looked for" in plan_error(cfg, [f"data.root={root}"], tmp_path)
    (root / "CUB_200_2011").mkdir()
    (root / "CUB_200_2011" / "images.txt").write_text("1 a/1.jpg\n")
    assert "image_class_labels.txt not found" in plan_error(cfg, [f"data.root={root}"], tmp_path)
    (root / "CUB_200_2011" / "image_class_labels.txt").write_text("1 1\n")
    message = plan_error(cfg, [f"data.root={root}", f"model.pretrained_path={tmp_path / 'w.pth'}"], tmp_path)
    assert message.startswith(f"model.pretrained_path: {tmp_path / 'w.pth'} does not exist")
    (tmp_path / "w.pth").write_bytes(b"")
    plan_sweep([cfg], [f"data.root={root}", f"model.pretrained_path={tmp_path / 'w.pth'}"], out_dir=tmp_path / "o")


def test_wikitext_layout_is_checked(tmp_path):
    cfg = ROOT / "configs/paper/table7_transformer_xl.yaml"
    assert "data.root is required for data.name='wikitext-103'" in plan_error(cfg, [], tmp_path)
    root = tmp_path / "wt"
    (root / "wikitext-103").mkdir(parents=True)
    (root / "wikitext-103" / "wiki.train.tokens").write_text("a b\n")
    message = plan_error(cfg, [f"data.root={root}"], tmp_path)
    assert message.startswith(f"data.root: WikiText file not found: {root / 'wikitext-103' / 'wiki.valid.tokens'}")
    for split in ("valid", "test"):
        (root / "wikitext-103" / f"wiki.{split}.tokens").write_text("a\n")
    plan_sweep([cfg], [f"data.root={root}"], out_dir=tmp_path / "o")


def test_audio_layout_is_checked(tmp_path):
    cfg = ROOT / "configs/paper/table5_speech_commands.yaml"
    assert "data.root: data/speech_commands_v0.02 does not exist" in plan_error(cfg, [], tmp_path)
    root = tmp_path / "sc"
    root.mkdir()
    assert f"data.val_list: {root / 'validation_list.txt'} not found" in plan_error(cfg, [f"data.root={root}"],
                                                                                     tmp_path)
    (root / "validation_list.txt").write_text("")
    (root / "testing_list.txt").write_text("")
    plan_sweep([cfg], [f"data.root={root}"], out_dir=tmp_path / "o")
    mtt = ROOT / "configs/paper/table5_magnatagatune.yaml"
    assert "annotations_final.csv not found" in plan_error(mtt, [f"data.root={root}"], tmp_path)


# -- --smoke shrinks the run on the configured data (issue 21, item 7) -----------------------------------------

def test_smoke_settings_never_swap_the_data_set():
    for name in TASKS:
        assert not set(get_task(name).smoke) & {"data", "data.name", "data.root"}, name


def test_a_smoke_that_swaps_the_data_set_is_refused(monkeypatch, tmp_path):
    from benchmarks.tasks.classification import Classification

    monkeypatch.setattr(Classification, "smoke", {"data.name": "digits", "train.max_steps": 2})
    message = plan_error(ROOT / "configs/paper/table1_resnet18.yaml", [], tmp_path, smoke=True, check_data=False)
    assert message.startswith("Classification.smoke sets `data.name`: --smoke must run on the configured data set")


def test_smoke_keeps_the_configured_data_and_checks_the_configured_weights(tmp_path):
    cfg = ROOT / "configs/paper/table6_cub_triplet.yaml"
    root = tmp_path / "cub"
    (root / "CUB_200_2011").mkdir(parents=True)
    for name in ("images.txt", "image_class_labels.txt"):
        (root / "CUB_200_2011" / name).write_text("")
    # the smoke backbone takes no weights, but the real run's weights file must still exist
    assert "model.pretrained_path: " in plan_error(cfg, [f"data.root={root}", "model.pretrained_path=/no/w.pth"],
                                                   tmp_path, smoke=True)
    plan = plan_sweep([cfg], [f"data.root={root}", "model.pretrained_path=null"], out_dir=tmp_path / "o", smoke=True)
    data = plan.runs[0].spec.config["data"]
    assert data["name"] == "cub200" and data["root"] == str(root)


def test_lm_smoke_runs_on_the_configured_corpus(tmp_path, capsys):
    cfg = ROOT / "configs/lm/synthetic_demo.yaml"
    out = tmp_path / "o"
    assert main(["run", str(cfg), "--smoke", "--executor", "debug", "--out", str(out), "--set",
                 "zip={optimizer.name: [adamp], tags.optimizer: [AdamP]}", "--set", "grid.model.weight_norm=[false]",
                 "--set", f"data.root={tmp_path / 'corpus'}"]) == 0
    from benchmarks import store

    (record,) = store.load_records(out)
    assert record["status"] == "done"
    data = record["config"]["data"]
    assert (data["name"], data["synthetic_vocab"], data["max_train_tokens"]) == ("synthetic", 500, 20_000)
