"""The King James Bible (Debian's ``bible-kjv``) as a word-level corpus in the WikiText file format.

Real English text that an offline machine can install (``apt-get install bible-kjv``; public domain, 31,102
verses, about 821k words). The package stores the text in its own compressed format (``/usr/lib/bible.data``),
so the source is what its ``bible`` program prints for the whole book::

    bible -f -p /usr/lib Gen1:1-Rev22:21

one verse per line, ``<Book><chapter>:<verse> <text>`` (``Ge1:1 In the beginning God created ...``). ``-f``
turns pretty-printing off (one verse per line, no wrapping); ``-p /usr/lib`` stops the program from reading a
``bible.data`` of the current folder first. A text file in the same layout (``source=``) is read instead when
given: a regular file of at most :data:`MAX_SOURCE_BYTES`.

What is written (``wiki.{train,valid,test}.tokens``, read by :mod:`benchmarks.data.wikitext`):

* tokens as in WikiText: punctuation is its own token (``earth .``), a possessive ``'s`` and a trailing
  ``'`` are split off (``king 's``, ``fathers '``), a hyphen inside a word is `` @-@ ``; case is kept;
* one line per verse (verse numbers dropped), and a `` = <Book> = `` heading line where each book's part of a
  split begins;
* split by position within every book: the verses that start in the first 90% of a book's tokens go to
  train, the next 5% to valid, the last 5% to test. Every split holds every book, so the three share genre
  and vocabulary, and each split is made of 66 contiguous passages (as WikiText is made of whole articles);
* a closed vocabulary of ``vocab_size`` entries like WikiText's: the ``vocab_size - 2`` most frequent
  training words (ties by code point) and ``<unk>``/``<eos>``; every other word of any split is ``<unk>``.

The corpus is built once per (source, vocabulary size) into ``<out_root>/kjv-<vocab>-<hash>/`` and reused: it
is written to a temporary folder beside it and renamed into place, so a reader never sees half a corpus and two
processes building it at once leave one complete copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data.wikitext import EOS, FILE_NAMES, SPLITS, UNK

PROGRAM = "bible"
#: where Debian's bible-kjv-text puts bible.data; passed with -p so a file of the current folder is not used
DATA_DIR = "/usr/lib"
WHOLE_BOOK = "Gen1:1-Rev22:21"
FIRST_REF, LAST_REF = "Ge1:1", "Rev22:21"
INSTALL_HINT = "apt-get install bible-kjv (as root), or: make bible-kjv"
#: the whole KJV is 4.4 MB; anything far larger is not this text
MAX_SOURCE_BYTES = 16 << 20
PROGRAM_TIMEOUT_S = 120
#: fractions of every book's tokens that go to valid and to test (the rest, first, to train)
VALID_FRACTION = 0.05
TEST_FRACTION = 0.05
#: vocabulary of data.name=kjv (incl. <unk>, <eos>): 1.8% of training tokens become <unk>, the softmax stays
#: cheap on a CPU
VOCAB_SIZE = 5_000
#: bump when tokenisation, split or layout change, so older built corpora are not reused
BUILD_VERSION = 1
STAMP = "kjv.json"

_VERSE = re.compile(r"(?P<book>[1-3]?[A-Za-z]+)(?P<chapter>\d+):(?P<verse>\d+) (?P<text>.*\S)\s*")
_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")
_TOKEN = re.compile(r"[A-Za-z0-9]+|'s\b|@-@|\S")


class KJVSourceError(Exception):
    """The KJV text cannot be read: package missing, program failed, or a line out of layout."""


@dataclass(frozen=True)
class Verse:
    book: str
    chapter: int
    verse: int
    text: str

    @property
    def ref(self) -> str:
        return f"{self.book}{self.chapter}:{self.verse}"


# ------------------------------------------------------------------------------------------------ source
def find_program() -> str | None:
    return shutil.which(PROGRAM)


def read_program_output(program: str | None = None) -> str:
    """The whole KJV as the ``bible`` program prints it (bounded in size and time)."""
    program = program or find_program()
    if program is None:
        raise KJVSourceError(f"the '{PROGRAM}' program of Debian's bible-kjv package is not installed: "
                             f"{INSTALL_HINT}")
    cmd = [program, "-f", "-p", DATA_DIR, WHOLE_BOOK]
    # stderr goes to a file: a pipe nobody reads could fill up and stall the program while stdout is read
    with tempfile.TemporaryFile() as errfile, subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errfile) as proc:
        try:
            out = proc.stdout.read(MAX_SOURCE_BYTES + 1)
            if len(out) > MAX_SOURCE_BYTES:
                proc.kill()
                raise KJVSourceError(f"{' '.join(cmd)} printed more than {MAX_SOURCE_BYTES} bytes; "
                                     "the KJV is about 4.4 MB")
            rc = proc.wait(timeout=PROGRAM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise KJVSourceError(f"{' '.join(cmd)} did not finish in {PROGRAM_TIMEOUT_S} s") from None
        errfile.seek(0)
        err = errfile.read(4096)
    if rc != 0:
        raise KJVSourceError(f"{' '.join(cmd)} exited with status {rc}: "
                             f"{err.decode('utf-8', 'replace').strip() or 'no message'} "
                             f"(reinstall the package: {INSTALL_HINT})")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KJVSourceError(f"{' '.join(cmd)} printed bytes that are not UTF-8 ({exc})") from None


def read_text_file(path: str | os.PathLike) -> str:
    """A text file in the layout of ``bible -f`` output: a regular file of at most MAX_SOURCE_BYTES."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as exc:
        raise KJVSourceError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KJVSourceError(f"{path}: not a regular file (a text file of verses in the layout of "
                             f"'bible -f {WHOLE_BOOK}' output is expected)")
    if st.st_size > MAX_SOURCE_BYTES:
        raise KJVSourceError(f"{path}: {st.st_size} bytes, more than the {MAX_SOURCE_BYTES} accepted "
                             "(the whole KJV is about 4.4 MB)")
    with open(path, "rb") as fh:
        data = fh.read(MAX_SOURCE_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KJVSourceError(f"{path}: not UTF-8 text ({exc})") from None


def parse_verses(text: str, source: str = "<text>") -> list[Verse]:
    """Verses of ``bible -f`` output; a line out of layout or a book that comes back later is an error."""
    verses: list[Verse] = []
    finished: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _VERSE.fullmatch(line)
        if m is None:
            raise KJVSourceError(f"{source}, line {lineno}: {line[:60]!r} is not a verse; expected "
                                 "'<Book><chapter>:<verse> <text>', e.g. 'Ge1:1 In the beginning ...'")
        verse = Verse(m["book"], int(m["chapter"]), int(m["verse"]), m["text"])
        if verses and verse.book != verses[-1].book:
            finished.add(verses[-1].book)
            if verse.book in finished:
                raise KJVSourceError(f"{source}, line {lineno}: book {verse.book!r} comes back after other "
                                     "books; the text must be in order, each book once")
        verses.append(verse)
    if not verses:
        raise KJVSourceError(f"{source}: no verses")
    return verses


def read_verses(source: str | os.PathLike | None = None) -> list[Verse]:
    """The verses of ``source`` (a text file), or of the installed ``bible`` program (then the whole KJV)."""
    if source is not None:
        return parse_verses(read_text_file(source), str(source))
    verses = parse_verses(read_program_output(), f"'{PROGRAM} -f {WHOLE_BOOK}'")
    if verses[0].ref != FIRST_REF or verses[-1].ref != LAST_REF:
        raise KJVSourceError(f"'{PROGRAM} -f {WHOLE_BOOK}' printed {verses[0].ref} to {verses[-1].ref}, "
                             f"not {FIRST_REF} to {LAST_REF}: the installed text is incomplete "
                             f"(reinstall it: {INSTALL_HINT})")
    return verses


# ------------------------------------------------------------------------------------------ tokens, split
def tokenize(text: str) -> list[str]:
    """WikiText-style tokens: punctuation alone, ``'s`` and a trailing ``'`` split off, ``@-@`` hyphens."""
    return _TOKEN.findall(_HYPHEN.sub(" @-@ ", text))


def split_books(verses: list[Verse], valid_fraction: float = VALID_FRACTION,
                test_fraction: float = TEST_FRACTION) -> dict[str, list[tuple[str, list[list[str]]]]]:
    """``split -> [(book, [tokens of each verse])]``: each book's head to train, then valid, then test.

    A verse goes by where it starts: in the first ``1 - valid - test`` of its book's tokens to train, then
    valid, then test. Raises when a split would be empty (too few verses).
    """
    books: dict[str, list[list[str]]] = {}
    for v in verses:
        books.setdefault(v.book, []).append(tokenize(v.text))
    bounds = (1.0 - valid_fraction - test_fraction, 1.0 - test_fraction)
    out: dict[str, list[tuple[str, list[list[str]]]]] = {s: [] for s in SPLITS}
    for book, toks in books.items():
        total = sum(map(len, toks))
        parts: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
        start = 0
        for t in toks:
            f = start / total
            parts["train" if f < bounds[0] else "valid" if f < bounds[1] else "test"].append(t)
            start += len(t)
        for s in SPLITS:
            if parts[s]:
                out[s].append((book, parts[s]))
    empty = [s for s in SPLITS if not out[s]]
    if empty:
        raise KJVSourceError(f"{len(verses)} verses are too few: split(s) {', '.join(empty)} would be empty "
                             f"(each book gives its last {valid_fraction + test_fraction:.0%} of tokens to "
                             "valid and test)")
    return out


def capped_words(split: dict[str, list[tuple[str, list[list[str]]]]], vocab_size: int) -> set[str]:
    """The ``vocab_size - 2`` most frequent training words (heading tokens included), ties by code point."""
    counts: Counter = Counter()
    for book, verses in split["train"]:
        counts.update(heading(book))
        for t in verses:
            counts.update(t)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {w for w, _ in ranked[: vocab_size - 2]}


def heading(book: str) -> list[str]:
    return ["=", book, "="]


def render(parts: list[tuple[str, list[list[str]]]], keep: set[str]) -> str:
    """WikiText lines: `` = Book = `` then one verse per line, words outside ``keep`` as ``<unk>``."""
    lines = []
    for book, verses in parts:
        for toks in [heading(book), *verses]:
            lines.append(" " + " ".join(w if w in keep else UNK for w in toks) + " ")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------- build
def signature(vocab_size: int, source: str | os.PathLike | None = None) -> dict:
    """What a built corpus is keyed on: version, vocabulary size and the source (a file: path, size, mtime)."""
    if source is None:
        src: object = f"{PROGRAM} {WHOLE_BOOK} (Debian bible-kjv)"
    else:
        p = Path(source).expanduser().resolve()
        try:
            st = p.stat()
        except OSError as exc:
            raise KJVSourceError(f"{p}: cannot be read ({exc.strerror})") from None
        src = [str(p), st.st_size, st.st_mtime_ns]
    return {"version": BUILD_VERSION, "vocab_size": int(vocab_size), "source": src}


def corpus_dir(out_root: str | os.PathLike, vocab_size: int, source: str | os.PathLike | None = None) -> Path:
    sig = signature(vocab_size, source)
    digest = hashlib.sha1(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:10]
    return Path(out_root).expanduser() / f"kjv-{int(vocab_size)}-{digest}"


def is_built(folder: Path, sig: dict) -> bool:
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp.get("signature") == sig and all((folder / FILE_NAMES[s]).is_file() for s in SPLITS)


def check_vocab_size(vocab_size: object) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 3:
        raise ValueError(f"the vocabulary size must be an integer >= 3 (words + <unk> + <eos>), "
                         f"got {vocab_size!r}")
    return vocab_size


def build_kjv_wikitext(out_root: str | os.PathLike, vocab_size: int = VOCAB_SIZE,
                       source: str | os.PathLike | None = None) -> Path:
    """Write (once) the WikiText-format KJV corpus under ``out_root``; return its folder.

    ``source``: a text file in the ``bible -f`` layout; None runs the installed ``bible`` program.
    Raises :class:`KJVSourceError` when the text cannot be read.
    """
    check_vocab_size(vocab_size)
    sig = signature(vocab_size, source)
    folder = corpus_dir(out_root, vocab_size, source)
    if is_built(folder, sig):
        return folder
    verses = read_verses(source)
    parts = split_books(verses)
    keep = capped_words(parts, vocab_size)
    keep.add(UNK)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for s in SPLITS:
            (tmp / FILE_NAMES[s]).write_text(render(parts[s], keep), encoding="utf-8")
        stamp = {"signature": sig, "verses": len(verses), "first": verses[0].ref, "last": verses[-1].ref,
                 "books": len(parts["train"]), "eos": EOS, "unk": UNK}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if folder.exists() and not is_built(folder, sig):
            shutil.rmtree(folder)  # an interrupted or stale build of ours (same name = same signature)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not is_built(folder, sig):  # not a concurrent builder that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Write the KJV (Debian bible-kjv) as WikiText-format token files.")
    ap.add_argument("out_root", help="folder under which kjv-<vocab>-<hash>/ is written (e.g. runs/data/kjv)")
    ap.add_argument("--vocab", type=int, default=VOCAB_SIZE, help=f"vocabulary size incl. <unk>, <eos> ({VOCAB_SIZE})")
    ap.add_argument("--source", default=None, help="a text file in the 'bible -f' layout instead of the program")
    args = ap.parse_args(argv)
    try:
        folder = build_kjv_wikitext(args.out_root, args.vocab, args.source)
    except (KJVSourceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Verse", "KJVSourceError", "read_verses", "parse_verses", "tokenize", "split_books",
           "build_kjv_wikitext", "corpus_dir", "VOCAB_SIZE", "signature", "is_built", "INSTALL_HINT", "find_program"]
