"""The KJV corpus (Debian's bible-kjv) in the WikiText format: reading, tokens, split, vocabulary, cache, task.

Most tests build from small texts written here in the layout of ``bible -f`` output (or printed by a stand-in
``bible`` program on PATH); the last ones read the installed package and skip, saying why, without it.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmarks.config.errors import ConfigError
from benchmarks.data import kjv
from benchmarks.data import wikitext as wt
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.language_model import LanguageModel

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
needs_bible = pytest.mark.skipif(kjv.find_program() is None,
                                 reason="Debian's bible-kjv is not installed (apt-get install bible-kjv, or "
                                        "make bible-kjv)")

WORDS = ["the", "LORD", "and", "said", "unto", "him", "of", "land", "God", "Israel", "king's", "fathers'",
         "brick-kiln", "came", "went", "shall", "be", "thy", "Aaron"]


def _verses(books=(("Ge", 3, 20), ("Exo", 2, 20), ("Rev", 22, 21)), seed: int = 0) -> list[str]:
    """Lines ``<Book><chapter>:<verse> <text>``; each book is (name, chapters, verses per chapter)."""
    rng = np.random.default_rng(seed)
    lines = []
    for book, chapters, per in books:
        for c in range(1, chapters + 1):
            for v in range(1, per + 1):
                words = rng.choice(WORDS, size=int(rng.integers(4, 14)))
                punct = rng.choice([",", ";", ":", ""], size=len(words))
                text = " ".join(f"{w}{p}" for w, p in zip(words, punct)).rstrip(",;:") + "."
                lines.append(f"{book}{c}:{v} {text[0].upper()}{text[1:]}")
    return lines


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- tokens
def test_tokens_follow_wikitext_conventions():
    text = "And the LORD's servant said, Build ye a brick-kiln; in your fathers' house (saith he)?"
    assert kjv.tokenize(text) == [
        "And", "the", "LORD", "'s", "servant", "said", ",", "Build", "ye", "a", "brick", "@-@", "kiln", ";", "in",
        "your", "fathers", "'", "house", "(", "saith", "he", ")", "?"]


def test_parse_reads_the_layout_and_names_a_bad_line(tmp_path):
    verses = kjv.parse_verses("Ge1:1 In the beginning.\n\n1Sm2:10 The adversaries.  \n", "x")
    assert [(v.book, v.chapter, v.verse, v.text) for v in verses] == [
        ("Ge", 1, 1, "In the beginning."), ("1Sm", 2, 10, "The adversaries.")]
    with pytest.raises(kjv.KJVSourceError, match=r"x, line 2: 'Genesis 1' is not a verse"):
        kjv.parse_verses("Ge1:1 In the beginning.\nGenesis 1\n", "x")
    with pytest.raises(kjv.KJVSourceError, match="line 3: book 'Ge' comes back"):
        kjv.parse_verses("Ge1:1 a.\nExo1:1 b.\nGe2:1 c.\n", "x")


def test_text_source_must_be_a_bounded_regular_file(tmp_path, monkeypatch):
    with pytest.raises(kjv.KJVSourceError, match="not a regular file"):
        kjv.read_verses(tmp_path)
    with pytest.raises(kjv.KJVSourceError, match="nothing.txt: cannot be read"):
        kjv.build_kjv_wikitext(tmp_path / "o", 50, tmp_path / "nothing.txt")
    big = _write(tmp_path / "big.txt", _verses())
    monkeypatch.setattr(kjv, "MAX_SOURCE_BYTES", 100)
    with pytest.raises(kjv.KJVSourceError, match="more than the 100 accepted"):
        kjv.read_verses(big)


# ------------------------------------------------------------------------------------------- split, vocab
def test_each_book_gives_its_head_to_train_and_its_tail_to_valid_then_test(tmp_path):
    lines = _verses()
    folder = kjv.build_kjv_wikitext(tmp_path / "out", vocab_size=1000, source=_write(tmp_path / "v.txt", lines))
    parts = {}  # split -> book -> verse lines, read back from the files through their headings
    for s in wt.SPLITS:
        parts[s] = {}
        for ln in (folder / wt.FILE_NAMES[s]).read_text(encoding="utf-8").splitlines():
            if ln.startswith(" = "):
                book = ln.split()[1]
                assert book not in parts[s]
                parts[s][book] = []
            else:
                parts[s][book].append(ln)
    expected = {}
    for ln in lines:
        ref, text = ln.split(" ", 1)
        expected.setdefault(ref.split(":")[0].rstrip("0123456789"), []).append(
            " " + " ".join(kjv.tokenize(text)) + " ")
    # every split has every book, in the source's order; within a book train, valid, test follow each other
    for s in wt.SPLITS:
        assert list(parts[s]) == ["Ge", "Exo", "Rev"]
    for book, verses in expected.items():
        assert parts["train"][book] + parts["valid"][book] + parts["test"][book] == verses
        # a verse goes where its first token lies: train below 90% of the book's tokens, valid below 95%
        sizes = [len(v.split()) for v in verses]
        starts = np.cumsum([0, *sizes[:-1]]) / sum(sizes)
        n_train, n_valid = len(parts["train"][book]), len(parts["valid"][book])
        assert starts[n_train - 1] < 0.9 <= starts[n_train], book
        assert starts[n_train + n_valid - 1] < 0.95 <= starts[n_train + n_valid], book


def test_vocabulary_cap_maps_rarer_words_to_unk(tmp_path):
    lines = _verses() + ["Jude1:1 Zerubbabel Zerubbabel Zerubbabel Methuselah."] * 30
    src = _write(tmp_path / "v.txt", lines)
    full = wt.load_wikitext(kjv.build_kjv_wikitext(tmp_path / "o", 10_000, src), use_cache=False)
    n_words = len(full.vocab) - 1  # every distinct word plus <eos>; <unk> had count 0
    assert full.vocab.counts[full.vocab.unk_id] == 0
    cap = 12
    small = wt.load_wikitext(kjv.build_kjv_wikitext(tmp_path / "o", cap, src), use_cache=False)
    assert len(small.vocab) == cap and n_words > cap
    kept = [w for w in small.vocab.itos if w not in (wt.UNK, wt.EOS)]
    ranked = sorted(((-c, w) for w, c in zip(full.vocab.itos, full.vocab.counts) if w not in (wt.UNK, wt.EOS)))
    assert sorted(kept) == sorted(w for _, w in ranked[: cap - 2])
    # the unknown count is exactly the tokens of the dropped words
    dropped = {w for _, w in ranked[cap - 2:]}
    n_dropped = sum(int(c) for w, c in zip(full.vocab.itos, full.vocab.counts) if w in dropped)
    assert small.vocab.counts[small.vocab.unk_id] == n_dropped
    assert small.train.size == full.train.size


def test_built_once_reused_and_keyed_on_source_and_vocab(tmp_path):
    src = _write(tmp_path / "v.txt", _verses())
    a = kjv.build_kjv_wikitext(tmp_path / "o", 50, src)
    stamp = (a / kjv.STAMP).stat().st_mtime_ns
    assert kjv.build_kjv_wikitext(tmp_path / "o", 50, src) == a
    assert (a / kjv.STAMP).stat().st_mtime_ns == stamp  # not rewritten
    assert kjv.build_kjv_wikitext(tmp_path / "o", 60, src) != a
    _write(src, _verses(seed=1))
    os.utime(src, ns=(1, 1))
    assert kjv.build_kjv_wikitext(tmp_path / "o", 50, src) != a
    # no temporary folder left behind
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if p.name.startswith(".")) == []


def test_a_partial_folder_is_rebuilt_not_trusted(tmp_path):
    src = _write(tmp_path / "v.txt", _verses())
    a = kjv.build_kjv_wikitext(tmp_path / "o", 50, src)
    (a / wt.FILE_NAMES["test"]).unlink()
    assert kjv.build_kjv_wikitext(tmp_path / "o", 50, src) == a
    assert (a / wt.FILE_NAMES["test"]).is_file()


def test_too_few_verses_is_one_clear_error(tmp_path):
    with pytest.raises(kjv.KJVSourceError, match="2 verses are too few"):
        kjv.build_kjv_wikitext(tmp_path / "o", 50, _write(tmp_path / "v.txt", ["Ge1:1 A b.", "Ge1:2 C d."]))


# --------------------------------------------------------------------------------- the bible program
def _fake_bible(folder: Path, lines: list[str], rc: int = 0) -> Path:
    """A stand-in ``bible`` on PATH that prints ``lines`` (and records its arguments)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = _write(folder / "out.txt", lines)
    prog = folder / "bible"
    prog.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/args\ncat {data}\nexit {rc}\n")
    prog.chmod(0o755)
    return folder


def test_program_output_is_read_with_pretty_printing_off(tmp_path, monkeypatch):
    bindir = _fake_bible(tmp_path / "bin", _verses())
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    folder = kjv.build_kjv_wikitext(tmp_path / "o", 100)
    assert (bindir / "args").read_text().split() == ["-f", "-p", "/usr/lib", "Gen1:1-Rev22:21"]
    assert wt.load_wikitext(folder, use_cache=False).train.size > 1000


@pytest.mark.parametrize("lines, rc, match", [
    (_verses()[:-1], 0, "printed Ge1:1 to Rev22:20, not Ge1:1 to Rev22:21"),
    (_verses(), 3, "exited with status 3"),
])
def test_a_failing_or_truncated_program_is_an_error(tmp_path, monkeypatch, lines, rc, match):
    bindir = _fake_bible(tmp_path / "bin", lines, rc=rc)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(kjv.KJVSourceError, match=match):
        kjv.build_kjv_wikitext(tmp_path / "o", 100)


def test_missing_package_exits_2_before_anything_runs(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no bible program
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", str(ROOT / "configs/lm/kjv_demo.yaml"),
                           "--set", f"data.root={tmp_path / 'data'}", "--out", str(out), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "apt-get install bible-kjv" in proc.stderr
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())


# --------------------------------------------------------------------------------------------- the task
def _task(tmp_path: Path, **overrides) -> LanguageModel:
    cfg = {k: copy.deepcopy(dict(v)) for k, v in LanguageModel.defaults.items()}
    cfg["train"].update({"batch_size": 4, "epochs": 1})
    for key, value in {**LanguageModel.smoke, "data.name": "kjv", "data.root": str(tmp_path / "kjv"),
                       **overrides}.items():
        section, _, name = key.partition(".")
        cfg[section][name] = value
    ctx = RunContext(run_dir=tmp_path / "run", device=torch.device("cpu"), seed=0, log=lambda *_: None)
    return LanguageModel(cfg, ctx)


def test_task_trains_and_scores_the_built_corpus(tmp_path, monkeypatch):
    bindir = _fake_bible(tmp_path / "bin", _verses(books=(("Ge", 8, 30), ("Exo", 8, 30), ("Rev", 22, 21))))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    task = _task(tmp_path, **{"model.cutoffs": [8]})
    LanguageModel.check_data(task.config)
    assert {"Exo", "kiln", "'s", wt.UNK, wt.EOS} <= set(task.corpus.vocab.itos)  # the program's text, built
    model = task.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for inp_tgt in list(task.train_batches(0))[:3]:
        loss, _ = task.loss(model, inp_tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metrics = task.evaluate(model)
    assert set(metrics) == {"val_ppl", "test_ppl"} and all(np.isfinite(v) for v in metrics.values())


def test_missing_program_is_a_config_error_unless_the_corpus_is_built(tmp_path, monkeypatch):
    bindir = _fake_bible(tmp_path / "bin", _verses())
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cfg = _task(tmp_path).config
    monkeypatch.setattr(kjv, "find_program", lambda: None)
    with pytest.raises(ConfigError, match="apt-get install bible-kjv"):
        LanguageModel.check_data(cfg)
    monkeypatch.undo()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    kjv.build_kjv_wikitext(tmp_path / "kjv")
    monkeypatch.setattr(kjv, "find_program", lambda: None)
    LanguageModel.check_data(cfg)  # built: the package is not needed any more


def test_battery_config_has_one_optimizer_and_only_seeds_on_its_grid():
    cfg = yaml.safe_load((ROOT / "configs/battery/lm.yaml").read_text())
    assert isinstance(cfg["optimizer"]["name"], str)
    assert cfg["grid"] == {"train.seed": [0, 1, 2, 3, 4]} and "zip" not in cfg
    assert cfg["train"]["num_threads"] == 1 and cfg["data"]["name"] == "kjv"


# ------------------------------------------------------------------------------------ the real package
@needs_bible
def test_the_installed_kjv(tmp_path):
    verses = kjv.read_verses()
    assert len(verses) == 31_102 and len({v.book for v in verses}) == 66
    folder = kjv.build_kjv_wikitext(tmp_path / "o", 10_000)
    corpus = wt.load_wikitext(folder, use_cache=False)
    assert len(corpus.vocab) == 10_000
    # the split is 90/5/5 of each book's tokens (+ the per-book headings and <eos>)
    sizes = np.array([corpus.train.size, corpus.valid.size, corpus.test.size]) / sum(
        corpus.split(s).size for s in wt.SPLITS)
    assert np.allclose(sizes, [0.9, 0.05, 0.05], atol=0.01)
    unk = corpus.vocab.unk_id
    assert float((corpus.valid == unk).mean()) < 0.02  # the cap drops only rare words
    assert corpus.vocab.decode(corpus.train[:8]) == ["=", "Ge", "=", "<eos>", "In", "the", "beginning", "God"]
