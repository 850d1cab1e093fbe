"""WikiText-103 / WikiText-2 (word level) and a synthetic corpus in the same file format.

On-disk layout (the "raw"-less, tokenised release of Merity et al., 2016)::

    <root>/wiki.train.tokens
    <root>/wiki.valid.tokens
    <root>/wiki.test.tokens

(``<root>/wikitext-103/`` or ``<root>/wikitext-2/`` holding those files is accepted too.) Every line is split
on whitespace and gets an ``<eos>`` token at its end, blank lines included (so a blank line is one ``<eos>``).
The files already contain ``<unk>`` for rare words, so the vocabulary is closed: it is every distinct token of
the training file, ordered by frequency (ties by the token's code points, so the order never depends on
dictionary insertion order). Words of the validation/test files that are missing from it map to ``<unk>``.

Building WikiText-103 (103M tokens, 540 MB) streams the files twice (count, then encode into a preallocated
``int32`` array), so memory stays near the size of the token array (413 MB) plus a few chunks of text. The
result is cached in one ``.npz`` file (written to a temporary file in the same folder, then renamed) and
reused as long as size and mtime of the three source files are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from benchmarks.atomic import write_text_atomic

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
FILE_NAMES = {split: f"wiki.{split}.tokens" for split in SPLITS}
#: bump when tokenisation or the cache layout changes, so old caches are rebuilt instead of misread
CACHE_VERSION = 1
#: characters of text read per chunk; bounds the transient memory of the str objects that split() creates
_CHUNK_CHARS = 1 << 22


@dataclass
class Vocab:
    """Word list ordered by training-set frequency (``itos``) with the counts it was built from."""

    itos: list[str]
    counts: np.ndarray
    _stoi: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def stoi(self) -> dict[str, int]:
        """Word -> index (built on first use; 267k entries for WikiText-103)."""
        if self._stoi is None:
            self._stoi = {w: i for i, w in enumerate(self.itos)}
        return self._stoi

    @property
    def unk_id(self) -> int:
        return self.stoi[UNK]

    @property
    def eos_id(self) -> int:
        return self.stoi[EOS]

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Iterable[str]) -> list[int]:
        """Indices of ``words`` (unknown words -> ``<unk>``)."""
        return list(map(self.stoi.get, words, repeat(self.unk_id)))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


@dataclass
class Corpus:
    """A word-level corpus: vocabulary plus the ``int32`` token stream of each split."""

    vocab: Vocab
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    root: Path
    cache_file: Path | None = None
    #: True when this object was read from the cache rather than built from the text files
    from_cache: bool = False

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, name)


class MissingDataError(FileNotFoundError):
    """A WikiText file is missing; the message names it and the expected layout."""


# ----------------------------------------------------------------------------------------------- reading
def resolve_root(root: str | os.PathLike, name: str | None = None) -> Path:
    """Return the folder that holds ``wiki.{train,valid,test}.tokens``: ``root/<name>`` or ``root`` itself.

    The named sub-folder is preferred, so a root holding several releases side by side (and perhaps token
    files of its own) loads the corpus that was asked for. Raises :class:`MissingDataError` naming the first
    missing file and the layout that is expected.
    """
    root = Path(root).expanduser()
    candidates = ([root / name] if name else []) + [root]
    for cand in candidates:
        if all((cand / FILE_NAMES[s]).is_file() for s in SPLITS):
            return cand
    base = next((c for c in candidates if (c / FILE_NAMES["train"]).is_file()), root)
    missing = next(base / FILE_NAMES[s] for s in SPLITS if not (base / FILE_NAMES[s]).is_file())
    layout = "\n".join(f"    {root}/{FILE_NAMES[s]}" for s in SPLITS)
    extra = f" (or the same three files under {root / name}/)" if name else ""
    raise MissingDataError(
        f"WikiText file not found: {missing}. Expected the word-level token files{extra}:\n{layout}\n"
        "(the 'wikitext-103' / 'wikitext-2' release, not the '-raw' one; nothing is downloaded here)")


def iter_token_chunks(path: Path) -> Iterator[list[str]]:
    """Yield the tokens of ``path`` chunk by chunk, with ``<eos>`` after every line (blank lines included).

    Chunks are whole lines (``readlines`` with a size hint); splitting a chunk once after turning newlines
    into `` <eos> `` is several times faster than splitting line by line and gives identical tokens, since
    whitespace never occurs inside a token.
    """
    eos_sep = f" {EOS} "
    with open(path, encoding="utf-8") as f:
        while True:
            lines = f.readlines(_CHUNK_CHARS)
            if not lines:
                return
            text = "".join(lines)
            if not text.endswith("\n"):  # last line of a file without a trailing newline still ends a line
                text += "\n"
            yield text.replace("\n", eos_sep).split()


def count_tokens(path: Path) -> Counter:
    """Token frequencies of ``path`` (``<eos>`` counted once per line)."""
    counter: Counter = Counter()
    for tokens in iter_token_chunks(path):
        counter.update(tokens)
    return counter


def build_vocab(counter: Counter) -> Vocab:
    """Vocabulary ordered by decreasing frequency, ties by the word itself; ``<unk>``/``<eos>`` always in."""
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    itos = [w for w, _ in items]
    counts = [c for _, c in items]
    for special in (EOS, UNK):  # a corpus without them still needs both ids (end of line, unseen words)
        if special not in counter:
            itos.append(special)
            counts.append(0)
    return Vocab(itos=itos, counts=np.asarray(counts, dtype=np.int64))


def encode_file(path: Path, vocab: Vocab, n_tokens: int | None = None) -> np.ndarray:
    """Encode ``path`` into an ``int32`` array (one pass to count tokens first when ``n_tokens`` is None)."""
    if n_tokens is None:
        n_tokens = sum(len(t) for t in iter_token_chunks(path))
    out = np.empty(n_tokens, dtype=np.int32)
    pos = 0
    stoi, unk = vocab.stoi, vocab.unk_id
    for tokens in iter_token_chunks(path):
        ids = np.fromiter(map(stoi.get, tokens, repeat(unk)), dtype=np.int32, count=len(tokens))
        if pos + ids.size > n_tokens:
            raise RuntimeError(f"{path} changed while it was being read (more tokens than counted)")
        out[pos:pos + ids.size] = ids
        pos += ids.size
    if pos != n_tokens:
        raise RuntimeError(f"{path} changed while it was being read ({pos} tokens, {n_tokens} counted)")
    return out


def build_corpus(root: Path) -> Corpus:
    """Read the three files of ``root`` (already resolved) without any cache."""
    counter = count_tokens(root / FILE_NAMES["train"])
    vocab = build_vocab(counter)
    train = encode_file(root / FILE_NAMES["train"], vocab, n_tokens=sum(counter.values()))
    del counter
    valid = encode_file(root / FILE_NAMES["valid"], vocab)
    test = encode_file(root / FILE_NAMES["test"], vocab)
    return Corpus(vocab=vocab, train=train, valid=valid, test=test, root=root.resolve())


# ------------------------------------------------------------------------------------------------- cache
def source_signature(root: Path) -> dict:
    """What the cache is keyed on: resolved path, plus size and mtime (ns) of each source file."""
    files = {}
    for s in SPLITS:
        st = (root / FILE_NAMES[s]).stat()
        files[FILE_NAMES[s]] = [st.st_size, st.st_mtime_ns]
    return {"version": CACHE_VERSION, "root": str(root.resolve()), "files": files}


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/adamp_bench/wikitext`` (``~/.cache/...`` when the variable is unset)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adamp_bench" / "wikitext"


def default_cache_dir(root: Path) -> Path:
    """``<root>/.cache`` when it can be created and written, else :func:`user_cache_dir`."""
    preferred = root / ".cache"
    try:
        preferred.mkdir(exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return user_cache_dir()


def cache_path(root: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache file of the corpus in ``root``; its name hashes the resolved root, so one folder holds many."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(root)
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return folder / f"wikitext-{root.resolve().name}-{digest}.npz"


def _bytes_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def save_cache(corpus: Corpus, path: Path, signature: dict) -> None:
    """Write the corpus to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            # words never contain whitespace (the files are split on it), so "\n" is a safe separator
            np.savez(f, meta=_bytes_array(json.dumps(signature, sort_keys=True)),
                     vocab=_bytes_array("\n".join(corpus.vocab.itos)), counts=corpus.vocab.counts,
                     train=corpus.train, valid=corpus.valid, test=corpus.test)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cache(path: Path, signature: dict) -> Corpus | None:
    """Return the cached corpus, or None when the cache is absent, stale (signature differs) or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            if meta != signature:
                return None
            itos = z["vocab"].tobytes().decode("utf-8").split("\n")
            vocab = Vocab(itos=itos, counts=z["counts"])
            arrays = {s: z[s] for s in SPLITS}
    except Exception as exc:  # a truncated/corrupt cache is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable WikiText cache {path}: {exc!r}; rebuilding it", stacklevel=2)
        return None
    if len(itos) != len(vocab.counts) or any(a.dtype != np.int32 for a in arrays.values()):
        return None
    return Corpus(vocab=vocab, root=Path(signature["root"]), cache_file=path, from_cache=True, **arrays)


def load_wikitext(root: str | os.PathLike, name: str | None = None, cache_dir: str | os.PathLike | None = None,
                  use_cache: bool = True) -> Corpus:
    """Load a WikiText corpus from ``root`` (or ``root/<name>``), from the cache when it is up to date.

    ``cache_dir=None`` caches in ``<root>/.cache`` (or the user cache when ``root`` is read-only).
    """
    folder = resolve_root(root, name)
    if not use_cache:
        return build_corpus(folder)
    signature = source_signature(folder)
    path = cache_path(folder, cache_dir)
    cached = load_cache(path, signature)
    if cached is not None:
        return cached
    corpus = build_corpus(folder)
    if source_signature(folder) == signature:  # don't cache a build of files that changed meanwhile
        try:
            save_cache(corpus, path, signature)
            corpus.cache_file = path
        except OSError as exc:
            warnings.warn(f"could not write the WikiText cache {path}: {exc}", stacklevel=2)
    return corpus


# ------------------------------------------------------------------------------------- ordered batching
def batchify(tokens: np.ndarray | torch.Tensor, batch_size: int, rank: int = 0,
             world_size: int = 1) -> torch.Tensor:
    """Cut the token stream into ``batch_size`` contiguous streams, returned as ``(batch_size/world, n)``.

    Stream ``b`` is ``tokens[b*n:(b+1)*n]`` (the tail that does not fill a row is dropped), exactly as
    Transformer-XL's ordered iterator lays out the data. Under DDP rank ``r`` gets streams
    ``[r*B/W, (r+1)*B/W)``: the global batch, and hence the result, is the same for any world size.
    """
    if batch_size < 1 or batch_size % world_size:
        raise ValueError(f"batch size {batch_size} must be a positive multiple of the world size {world_size}")
    data = torch.as_tensor(tokens)
    n = data.numel() // batch_size
    if n < 2:
        raise ValueError(f"{data.numel()} tokens are too few for {batch_size} streams (need >= 2 per stream)")
    streams = data[: n * batch_size].view(batch_size, n)
    per_rank = batch_size // world_size
    return streams[rank * per_rank:(rank + 1) * per_rank]


def num_segments(n_stream: int, tgt_len: int) -> int:
    """Segments per pass over streams of length ``n_stream`` (the last one may be shorter)."""
    return math.ceil((n_stream - 1) / tgt_len)


def iter_segments(streams: torch.Tensor, tgt_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield consecutive ``(input, target)`` segments ``(B, <=tgt_len)`` (int64); target is input shifted by 1.

    Consecutive segments are contiguous: segment k+1 starts where segment k ended, which is what lets the
    model carry its memory from one segment to the next.
    """
    n = streams.size(1)
    for i in range(0, n - 1, tgt_len):
        seq_len = min(tgt_len, n - 1 - i)
        yield (streams[:, i:i + seq_len].long(), streams[:, i + 1:i + 1 + seq_len].long())


# ------------------------------------------------------------------------------------ synthetic corpus
def write_synthetic_wikitext(root: str | os.PathLike, vocab_size: int = 500, train_tokens: int = 200_000,
                             valid_tokens: int = 20_000, test_tokens: int = 20_000, branching: int = 4,
                             seed: int = 0) -> Path:
    """Write ``wiki.{train,valid,test}.tokens`` of a first-order Markov language into ``root``.

    Each word has ``branching`` possible successors with Dirichlet(1) weights, and the words' overall
    popularity is Zipf-like, so the unigram perplexity is high while the true conditional perplexity is at most
    ``branching``: a model that learns the bigram structure beats the unigram model by a wide margin.
    The files look like WikiText: a leading space, `` = Heading = `` lines, blank lines between paragraphs,
    and the rarest 3% of words written as ``<unk>``. Deterministic in ``seed``; existing files whose
    recorded parameters match are kept.
    """
    root = Path(root)
    params = {"vocab_size": vocab_size, "train_tokens": train_tokens, "valid_tokens": valid_tokens,
              "test_tokens": test_tokens, "branching": branching, "seed": seed, "version": 1}
    stamp = root / "synthetic.json"
    if stamp.is_file() and all((root / FILE_NAMES[s]).is_file() for s in SPLITS):
        try:
            if json.loads(stamp.read_text()) == params:
                return root
        except ValueError:
            pass
    if vocab_size < 10 or branching < 1:
        raise ValueError(f"vocab_size must be >= 10 and branching >= 1, got {vocab_size}, {branching}")
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    popularity /= popularity.sum()
    successors = np.stack([rng.choice(vocab_size, size=branching, replace=False, p=popularity)
                           for _ in range(vocab_size)])
    weights = rng.dirichlet(np.ones(branching), size=vocab_size)
    cum = np.cumsum(weights, axis=1)
    n_rare = max(1, int(0.03 * vocab_size))
    words = [f"w{i}" for i in range(vocab_size)]
    for i in range(vocab_size - n_rare, vocab_size):
        words[i] = UNK
    root.mkdir(parents=True, exist_ok=True)
    state = int(rng.choice(vocab_size, p=popularity))
    for split, n_target in (("train", train_tokens), ("valid", valid_tokens), ("test", test_tokens)):
        lines: list[str] = []
        produced = 0
        while produced < n_target:
            if rng.random() < 0.05:
                heading = [words[state], words[int(rng.integers(vocab_size))]]
                lines += [f" = {' '.join(heading)} = ", " "]
                produced += 6
            length = int(rng.integers(8, 40))
            u = rng.random(length)
            sentence = []
            for k in range(length):
                state = int(successors[state, np.searchsorted(cum[state], u[k] * cum[state, -1])])
                sentence.append(words[state])
            lines.append(" " + " ".join(sentence) + " ")
            produced += length + 1
            if rng.random() < 0.2:
                lines.append(" ")
                produced += 1
        write_text_atomic(root / FILE_NAMES[split], "\n".join(lines) + "\n")
    write_text_atomic(stamp, json.dumps(params, sort_keys=True))
    return root


def unigram_perplexity(vocab: Vocab, tokens: np.ndarray, smoothing: float = 1.0) -> float:
    """Perplexity of ``tokens`` under the (add-``smoothing``) unigram distribution of the training counts."""
    counts = vocab.counts.astype(np.float64) + smoothing
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[np.asarray(tokens, dtype=np.int64)].mean()))


__all__ = [
    "EOS", "UNK", "SPLITS", "FILE_NAMES", "Vocab", "Corpus", "MissingDataError", "resolve_root",
    "iter_token_chunks", "count_tokens", "build_vocab", "encode_file", "build_corpus", "source_signature",
    "user_cache_dir", "default_cache_dir", "cache_path", "save_cache", "load_cache", "load_wikitext",
    "batchify", "num_segments", "iter_segments", "write_synthetic_wikitext", "unigram_perplexity",
]
