"""Tests of the synthesised keyword set (benchmarks/data/spoken_words.py) and of the audio demo config on it.

The generator needs Debian's espeak-ng; the tests that synthesise speech are skipped, with the install
command as the reason, where it is absent (`.ci/run` and `make audio-demo-data` try to install it). The
missing-binary error, the split rule and argument checks need no espeak-ng and always run.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.config.errors import ConfigError
from benchmarks.data import audio as audio_data
from benchmarks.data import spoken_words
from benchmarks.engine.spec import execute_run
from benchmarks.engine.sweep import plan_sweep

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "audio" / "demo.yaml"
WORDS = ["yes", "no", "go"]
SPEAKERS = 6  # 1 validation, 1 test, 4 training speakers at the default 10 % / 10 %

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng, or make audio-demo-data)",
)


def _generate(out: Path, seed: int = 0, **kwargs) -> Path:
    return spoken_words.generate(out, words=WORDS, speakers=SPEAKERS, takes=2, seed=seed, jobs=2, **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng, or make audio-demo-data)")
    return _generate(tmp_path_factory.mktemp("spoken") / "words")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------------------
# with espeak-ng
# ----------------------------------------------------------------------------------------------------------
@needs_espeak
def test_writes_the_speech_commands_layout_the_reader_accepts(dataset):
    wavs = sorted(dataset.glob("*/*.wav"))
    assert len(wavs) == len(WORDS) * SPEAKERS * 2
    assert sorted(p.name for p in dataset.iterdir() if p.is_dir()) == sorted(WORDS)
    for path in wavs:
        stem = path.stem.split("_nohash_")
        assert len(stem) == 2 and len(stem[0]) == 8 and int(stem[0], 16) >= 0 and stem[1] in ("0", "1"), path
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
    splits = audio_data.read_speech_commands(dataset)
    assert splits.classes == sorted(WORDS) and not splits.multilabel and not splits.missing
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4 * 6, 6, 6)
    # speech, not silence: each clip has a loud part well above its noise floor
    x = audio_data.load_audio(wavs[0], 16000)
    frames = np.abs(x[: x.size // 160 * 160]).reshape(-1, 160).mean(axis=1)
    assert frames.max() > 20 * np.median(frames[frames > 0]) or frames.max() > 0.05
    readme = (dataset / "README.txt").read_text()
    assert "SYNTHESISED SPEECH" in readme and "NOT Speech Commands" in readme and "espeak-ng" in readme


@needs_espeak
def test_split_lists_are_by_speaker(dataset):
    lists = {k: set((dataset / f).read_text().split()) for k, f in
             (("val", "validation_list.txt"), ("test", "testing_list.txt"))}
    assert lists["val"] and lists["test"] and not lists["val"] & lists["test"]
    split_of: dict[str, set[str]] = defaultdict(set)
    for path in dataset.glob("*/*.wav"):
        rel = f"{path.parent.name}/{path.name}"
        which = "val" if rel in lists["val"] else "test" if rel in lists["test"] else "train"
        split_of[path.name.split("_nohash_")[0]].add(which)
    assert all(len(s) == 1 for s in split_of.values()), split_of  # every speaker in exactly one split
    with open(dataset / "speakers.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["speaker"]: {r["split"]} for r in rows} == dict(split_of)
    assert sorted(r["split"] for r in rows).count("train") == SPEAKERS - 2
    # every listed clip of a speaker, for every word and take
    for rel in lists["val"] | lists["test"]:
        assert (dataset / rel).is_file()
    assert len(lists["val"]) == len(WORDS) * 2


@needs_espeak
def test_same_seed_same_bytes_other_seed_other_speakers(dataset, tmp_path):
    again = _generate(tmp_path / "again")
    assert _files(again).keys() == _files(dataset).keys()
    assert _files(again) == _files(dataset)
    other = spoken_words.generate(tmp_path / "other", words=WORDS[:2], speakers=3, takes=1, seed=1)
    assert not {p.name for p in other.glob("*/*.wav")} & {p.name for p in dataset.glob("*/*.wav")}


@needs_espeak
def test_existing_output_is_refused_unless_forced(dataset, tmp_path):
    out = tmp_path / "words"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="--force"):
        _generate(out)
    assert (out / "keep.txt").exists()


@needs_espeak
@pytest.mark.slow
def test_demo_config_trains_the_audio_task_on_it(dataset, tmp_path):
    # the demo config as shipped, smoke-sized, on the generated set: a real HCNN run through the engine
    plan = plan_sweep([DEMO], overrides=[f"data.root={dataset}", "grid.optimizer.name=[adamp]",
                                         "grid.train.seed=[0]", "train.max_steps=3"],
                      out_dir=tmp_path / "out", smoke=True)
    assert len(plan.runs) == 1
    spec = plan.runs[0].spec
    assert spec.config["train"]["select"] == "best" and spec.config["data"]["root"] == str(dataset)
    assert execute_run(spec) == "done", (spec.run_dir / "traceback.txt").read_text()
    record = json.loads((spec.run_dir / "record.json").read_text())
    metrics = record["metrics"]
    assert 0.0 <= metrics["val_score"] <= 100.0 and 0.0 <= metrics["test_score"] <= 100.0
    assert metrics["skipped_files"] == 0.0 and "last_val_score" in metrics


# ----------------------------------------------------------------------------------------------------------
# without espeak-ng
# ----------------------------------------------------------------------------------------------------------
def test_missing_espeak_exits_2_with_the_install_command(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.data.spoken_words", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "espeak-ng" in lines[0] and "apt-get install espeak-ng" in lines[0]
    assert not (tmp_path / "out").exists()


def test_demo_config_points_at_the_generated_set(tmp_path):
    plan = plan_sweep([DEMO], out_dir=tmp_path, check_data=False)  # the data are written on first use
    runs = [r.spec.config for r in plan.runs]
    assert len(runs) == 6
    assert sorted({c["optimizer"]["name"] for c in runs}) == ["adam", "adamp"]
    assert {c["train"]["seed"] for c in runs} == {0, 1, 2}
    assert all(c["task"] == "audio" and c["data"]["name"] == "speech_commands" and c["train"]["select"] == "best"
               and c["train"]["device"] == "cpu" and c["data"]["root"] == "runs/data/spoken_words" for c in runs)


def test_split_ranks_speakers_by_the_speech_commands_hash():
    ids = [f"{i:08x}" for i in range(20)]
    split = spoken_words.split_speakers(ids, 0.1, 0.1)
    ranked = sorted(ids, key=spoken_words.speech_commands_hash)
    assert [split[s] for s in ranked] == ["val"] * 2 + ["test"] * 2 + ["train"] * 16
    assert all(0.0 <= spoken_words.speech_commands_hash(s) <= 100.0 for s in ids)
    # tiny sets still get one validation and one test speaker, and refuse to leave none for training
    assert sorted(spoken_words.split_speakers(ids[:3], 0.1, 0.1).values()) == ["test", "train", "val"]
    with pytest.raises(ConfigError, match="--speakers 2"):
        spoken_words.split_speakers(ids[:2], 0.1, 0.1)


@pytest.mark.parametrize("words, match", [(["yes", "Yes"], "lower-case"), (["yes", "../x"], "lower-case"),
                                          (["yes", "yes"], "distinct"), (["yes"], "distinct")])
def test_bad_words_are_refused_before_anything_runs(tmp_path, words, match):
    with pytest.raises(ConfigError, match=match):
        spoken_words.generate(tmp_path / "out", words=words, speakers=3)
    assert not (tmp_path / "out").exists()


def test_speakers_are_distinct_and_deterministic():
    a, b = spoken_words.plan_speakers(30, seed=0), spoken_words.plan_speakers(30, seed=0)
    assert a == b and len({s.id for s in a}) == 30 and len({(s.voice, s.variant) for s in a}) == 30
    assert all(120 <= s.rate <= 200 and 20 <= s.pitch <= 80 for s in a)
    assert {s.id for s in spoken_words.plan_speakers(30, seed=1)}.isdisjoint({s.id for s in a})
