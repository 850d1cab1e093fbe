"""Audio data: waveform loading and readers of the three data sets of the paper's audio table, in their
official on-disk layouts.

Layouts (``root`` is ``data.root``):

* **Speech Commands v0.02** (keyword spotting, 35 words)::

      root/<word>/<speaker>_nohash_<n>.wav      one folder per keyword, 16 kHz mono
      root/validation_list.txt                 relative paths ("right/bb05582b_nohash_3.wav"), one per line
      root/testing_list.txt
      root/_background_noise_/                 ignored (every folder starting with "_" is)

  Training = every clip listed in neither list. Classes = the keyword folders, sorted.

* **MagnaTagATune** (music tagging)::

      root/annotations_final.csv               tab-separated: clip_id, 188 tag columns (0/1), mp3_path
      root/<audio_dir>/<mp3_path>              e.g. root/f/american_bach_soloists-...-30-59.mp3

  The 50 most frequent tags over the whole file are the targets. Split by the folder that starts
  ``mp3_path`` (the split of Dieleman & Schrauwen 2014 used by the Harmonic CNN paper): folders ``0``-``9``,
  ``a``, ``b`` -> train, ``c`` -> validation, ``d``, ``e``, ``f`` -> test. libsndfile >= 1.1 reads MP3; where it
  cannot (older libsndfile, a damaged file), a decoded copy with the same path and a ``.wav`` or ``.flac``
  suffix is used instead and is preferred when present (``root/f/x.mp3`` -> ``root/f/x.wav``).

* **DCASE 2017 Task 4** (weakly labelled sound event tagging, 17 classes)::

      root/groundtruth_weak_label_training_set.csv     file \\t onset \\t offset \\t label   (one label a row)
      root/groundtruth_weak_label_testing_set.csv
      root/groundtruth_weak_label_evaluation_set.csv
      root/**/Y<file>                                  audio anywhere under root, with or without "Y"

  The label column may also hold several comma-separated labels (``Car,Car passing by``); class names that
  contain commas ("Air horn, truck horn") are recognised. Rows of the same file are merged. Default split (the
  Harmonic CNN paper's): train = training + testing sets minus a validation set drawn as 10 % of each class's
  rows (pandas ``sample(frac=0.1, random_state=123)``); test = evaluation set.

A file that is missing, corrupt or unreadable is skipped with a warning naming it, and counted
(:class:`SkipLog`); it never stops a run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from benchmarks.atomic import write_text_atomic
from benchmarks.config.errors import ConfigError

__all__ = [
    "AUDIO_SUFFIXES",
    "DCASE2017_CLASSES",
    "AudioReadError",
    "AudioSplits",
    "Clip",
    "ClipDataset",
    "EpochSampler",
    "SkipLog",
    "chunk_starts",
    "collate_eval",
    "collate_train",
    "fit_length",
    "load_audio",
    "parse_dcase_labels",
    "read_dcase2017",
    "read_dcase_csv",
    "read_magnatagatune",
    "read_speech_commands",
    "resample",
    "resolve_audio_path",
    "steps_per_epoch",
    "subsample",
]

#: suffixes tried for decoded copies of compressed files, in order of preference
DECODED_SUFFIXES = (".wav", ".flac")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")

#: the 17 classes of DCASE 2017 Task 4 (AudioSet names), in the task's official order
DCASE2017_CLASSES: tuple[str, ...] = (
    "Train horn", "Air horn, truck horn", "Car alarm", "Reversing beeps", "Ambulance (siren)",
    "Police car (siren)", "Fire engine, fire truck (siren)", "Civil defense siren", "Screaming", "Bicycle",
    "Skateboard", "Car", "Car passing by", "Bus", "Truck", "Motorcycle", "Train",
)

MTAT_TRAIN_FOLDERS = frozenset("0123456789ab")
MTAT_VAL_FOLDERS = frozenset("c")
MTAT_TEST_FOLDERS = frozenset("def")


# ----------------------------------------------------------------------------------------------------------
# Waveforms
# ----------------------------------------------------------------------------------------------------------
class AudioReadError(OSError):
    """An audio file that cannot be read (missing, corrupt, unsupported); carries the path."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample the last axis from ``orig_sr`` to ``target_sr`` with a polyphase filter
    (``scipy.signal.resample_poly``, Kaiser window); a no-op when the rates are equal."""
    if orig_sr == target_sr:
        return x
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_sr), int(orig_sr))
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32, copy=False)


def _decoded_candidates(path: Path) -> list[Path]:
    if path.suffix.lower() in DECODED_SUFFIXES:
        return [path]
    return [path.with_suffix(s) for s in DECODED_SUFFIXES] + [path]


def resolve_audio_path(path: str | os.PathLike) -> Path | None:
    """The file to read for ``path``: a decoded ``.wav``/``.flac`` copy if one exists beside it, else the
    path itself; None when neither exists."""
    for candidate in _decoded_candidates(Path(path)):
        if candidate.is_file():
            return candidate
    return None


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    offset: float | None = None,
    length: int | None = None,
) -> np.ndarray:
    """Read ``path`` as mono float32 at ``sample_rate`` (averaging channels, resampling if needed).

    With ``length`` (samples at ``sample_rate``) a window of that many samples is returned, starting at the
    fraction ``offset`` in [0, 1] of the possible start positions; shorter files are returned whole (see
    :func:`fit_length`). Raises :class:`AudioReadError` for a missing or unreadable file.
    """
    import soundfile as sf

    resolved = resolve_audio_path(path)
    if resolved is None:
        raise AudioReadError(path, "file not found")
    errors: list[str] = []
    for candidate in [c for c in _decoded_candidates(Path(path)) if c.is_file()]:
        try:
            with sf.SoundFile(str(candidate)) as f:
                file_sr, frames = int(f.samplerate), int(f.frames)
                if length is not None and offset is not None and file_sr == sample_rate and 0 < length < frames:
                    # Same rate: read only the window (cheap seeking for WAV/FLAC).
                    start = int(round(min(max(offset, 0.0), 1.0) * (frames - length)))
                    f.seek(start)
                    data = f.read(length, dtype="float32", always_2d=True)
                else:
                    data = f.read(dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError ...
            errors.append(f"{candidate.name}: {type(exc).__name__}: {exc}")
            continue
        if data.shape[0] == 0:
            errors.append(f"{candidate.name}: no audio frames")
            continue
        wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        wave = resample(np.ascontiguousarray(wave, dtype=np.float32), file_sr, sample_rate)
        if not np.all(np.isfinite(wave)):
            errors.append(f"{candidate.name}: non-finite samples")
            continue
        if length is not None and offset is not None and wave.shape[0] > length:
            start = int(round(min(max(offset, 0.0), 1.0) * (wave.shape[0] - length)))
            wave = wave[start:start + length]
        return wave
    raise AudioReadError(path, "; ".join(errors))


def fit_length(wave: np.ndarray, length: int, pad_offset: float = 0.0) -> np.ndarray:
    """Crop to ``length`` samples from the start, or zero-pad with the signal placed at the fraction
    ``pad_offset`` of the free space (0: signal first, padding after)."""
    n = wave.shape[0]
    if n >= length:
        return wave[:length]
    out = np.zeros(length, dtype=np.float32)
    start = int(round(min(max(pad_offset, 0.0), 1.0) * (length - n)))
    out[start:start + n] = wave
    return out


def chunk_starts(n_samples: int, length: int, n_chunks: int) -> list[int]:
    """Start positions of up to ``n_chunks`` windows of ``length`` samples evenly spread over a clip."""
    if n_samples <= length:
        return [0]
    last = n_samples - length
    n = max(1, min(int(n_chunks), last + 1))
    if n == 1:
        return [last // 2]
    return sorted({int(round(i * last / (n - 1))) for i in range(n)})


# ----------------------------------------------------------------------------------------------------------
# Skipped files
# ----------------------------------------------------------------------------------------------------------
class SkipLog:
    """The set of files skipped so far (missing, corrupt, unreadable), with a warning for each new one.

    Warnings name the file for the first ``max_warnings`` files, then one summary warning; the full list is
    kept in ``skipped`` and can be written with :meth:`write`.
    """

    def __init__(self, max_warnings: int = 20):
        self.skipped: dict[str, str] = {}
        self.max_warnings = max_warnings
        self._suppressed = False

    def add(self, path: str | os.PathLike, reason: str) -> None:
        path = str(path)
        if path in self.skipped:
            return
        self.skipped[path] = reason
        if len(self.skipped) <= self.max_warnings:
            warnings.warn(f"skipping audio file {path}: {reason}", RuntimeWarning, stacklevel=2)
        elif not self._suppressed:
            self._suppressed = True
            warnings.warn(
                f"more than {self.max_warnings} audio files skipped; further ones are counted without a warning "
                "(metric skipped_files, list in skipped_files.txt of the run folder)",
                RuntimeWarning,
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.skipped)

    def write(self, path: Path) -> None:
        """Write ``path<TAB>reason`` lines atomically (temp file in the same folder + os.replace)."""
        write_text_atomic(path, "".join(f"{p}\t{r}\n" for p, r in sorted(self.skipped.items())))


# ----------------------------------------------------------------------------------------------------------
# Data set readers
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    """One audio file and its target: a class index (single-label) or a 0/1 vector (multi-label)."""

    path: Path
    target: Any


@dataclass
class AudioSplits:
    """The splits of one data set, its class names, whether it is multi-label, and files skipped while
    indexing (listed but missing on disk)."""

    train: list[Clip]
    val: list[Clip]
    test: list[Clip]
    classes: list[str]
    multilabel: bool
    missing: dict[str, str] = field(default_factory=dict)

    def split(self, name: str) -> list[Clip]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _require_dir(root: str | os.PathLike | None, dataset: str) -> Path:
    if root is None or str(root) == "":
        raise ConfigError(f"data.root is not set: give the folder holding the {dataset} data set (DATA=...)")
    path = Path(os.path.expanduser(str(root)))
    if not path.is_dir():
        raise ConfigError(f"data.root={str(root)!r}: not a directory (expected the {dataset} data set)")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{what}: file not found: {path}")
    return path


def _keep_existing(clips: list[Clip], missing: dict[str, str]) -> list[Clip]:
    kept = []
    for clip in clips:
        if resolve_audio_path(clip.path) is None:
            missing[str(clip.path)] = "file not found"
        else:
            kept.append(clip)
    return kept


def _check_nonempty(splits: AudioSplits, dataset: str, root: Path) -> AudioSplits:
    for name in ("train", "val", "test"):
        if not splits.split(name):
            raise ConfigError(
                f"data.root={str(root)!r}: the {dataset} {name} split is empty ({len(splits.missing)} listed files "
                "missing on disk); check data.root / data.audio_dir against the layout in benchmarks/data/audio.py"
            )
    return splits


def read_speech_commands(
    root: str | os.PathLike | None,
    val_list: str = "validation_list.txt",
    test_list: str = "testing_list.txt",
) -> AudioSplits:
    """Index Speech Commands (v0.02 layout; see the module docstring)."""
    base = _require_dir(root, "Speech Commands")
    classes = sorted(
        d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")) and any(d.glob("*.wav"))
    )
    if not classes:
        raise ConfigError(f"data.root={str(root)!r}: no keyword folders with .wav files (Speech Commands layout)")
    index = {c: i for i, c in enumerate(classes)}

    def read_list(name: str, key: str) -> set[str]:
        text = _require_file(base / name, f"data.{key} ({name})").read_text(encoding="utf-8")
        return {line.strip().replace("\\", "/") for line in text.splitlines() if line.strip()}

    val_set, test_set = read_list(val_list, "val_list"), read_list(test_list, "test_list")
    train: list[Clip] = []
    val: list[Clip] = []
    test: list[Clip] = []
    for word in classes:
        for wav in sorted((base / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            clip = Clip(wav, index[word])
            (val if rel in val_set else test if rel in test_set else train).append(clip)
    missing: dict[str, str] = {}
    listed = {c.path.relative_to(base).as_posix() for c in val + test}
    for rel in sorted((val_set | test_set) - listed):
        word = rel.split("/", 1)[0]
        if word in index:  # listed in a split file but absent on disk
            missing[str(base / rel)] = "file not found"
    return _check_nonempty(AudioSplits(train, val, test, classes, multilabel=False, missing=missing),
                           "Speech Commands", base)


def read_magnatagatune(
    root: str | os.PathLike | None,
    audio_dir: str = "",
    top_k: int = 50,
    annotations: str = "annotations_final.csv",
    drop_untagged: bool = False,
) -> AudioSplits:
    """Index MagnaTagATune (see the module docstring): top-``top_k`` tags, split by mp3_path folder."""
    import pandas as pd

    base = _require_dir(root, "MagnaTagATune")
    csv_path = _require_file(base / annotations, "data.root (MagnaTagATune annotations)")
    df = pd.read_csv(csv_path, sep="\t", dtype=str, keep_default_na=False)
    for column in ("clip_id", "mp3_path"):
        if column not in df.columns:
            raise ConfigError(
                f"{csv_path}: no column {column!r}; expected a tab-separated header with clip_id, the tag "
                f"columns and mp3_path (found {list(df.columns)[:5]}...)"
            )
    tag_columns = [c for c in df.columns if c not in ("clip_id", "mp3_path")]
    if top_k < 1 or top_k > len(tag_columns):
        raise ConfigError(f"data.top_k_tags={top_k}: must be in [1, {len(tag_columns)}] ({csv_path})")
    try:
        tags = df[tag_columns].apply(pd.to_numeric).to_numpy(dtype=np.float32)
    except ValueError as exc:
        raise ConfigError(f"{csv_path}: tag columns must hold 0/1 values ({exc})") from None
    counts = tags.sum(axis=0)
    # Stable sort: ties keep the file's column order, so the tag set never depends on the sort algorithm.
    top = np.argsort(-counts, kind="stable")[:top_k]
    classes = [tag_columns[i] for i in top]
    targets = (tags[:, top] > 0).astype(np.float32)
    audio_base = base / audio_dir if audio_dir else base
    train: list[Clip] = []
    val: list[Clip] = []
    test: list[Clip] = []
    for rel, target in zip(df["mp3_path"], targets):
        rel = rel.strip()
        if not rel:
            continue
        if drop_untagged and not target.any():
            continue
        folder = rel.replace("\\", "/").split("/", 1)[0].lower()
        clip = Clip(audio_base / rel, target)
        if folder in MTAT_TRAIN_FOLDERS:
            train.append(clip)
        elif folder in MTAT_VAL_FOLDERS:
            val.append(clip)
        elif folder in MTAT_TEST_FOLDERS:
            test.append(clip)
    missing: dict[str, str] = {}
    train, val, test = (_keep_existing(s, missing) for s in (train, val, test))
    return _check_nonempty(AudioSplits(train, val, test, classes, multilabel=True, missing=missing),
                           "MagnaTagATune", base)


def parse_dcase_labels(text: str, source: str = "") -> list[str]:
    """Split a DCASE label field into class names; commas inside class names ("Air horn, truck horn") are
    kept by joining comma-separated pieces greedily into the longest known name."""
    pieces = [p.strip() for p in text.split(",")]
    known = set(DCASE2017_CLASSES)
    labels: list[str] = []
    i = 0
    while i < len(pieces):
        for j in range(len(pieces), i, -1):
            candidate = ", ".join(pieces[i:j])
            if candidate in known:
                labels.append(candidate)
                i = j
                break
        else:
            if pieces[i]:
                raise ConfigError(
                    f"{source}: unknown DCASE 2017 Task 4 label {pieces[i]!r} in {text!r}; valid labels: "
                    f"{', '.join(DCASE2017_CLASSES)}"
                )
            i += 1
    return labels


def read_dcase_csv(path: Path) -> list[tuple[str, list[str]]]:
    """Rows (file name, labels) of a DCASE 2017 Task 4 weak-label file: ``file\\tonset\\toffset\\tlabels``.

    A first column without an audio suffix is a YouTube id; the file name is then
    ``<id>_<onset>_<offset>.wav`` with three decimals, as the task's audio files are named.
    """
    rows: list[tuple[str, list[str]]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < 4:
            raise ConfigError(
                f"{path}:{lineno}: expected 4 tab-separated fields (file, onset, offset, labels), got {len(fields)}"
            )
        name, onset, offset, label_text = fields[0].strip(), fields[1], fields[2], fields[3]
        if lineno == 1 and name.lower() in ("filename", "file", "ytid"):
            continue  # header
        if not name.lower().endswith(AUDIO_SUFFIXES):
            try:
                name = f"{name}_{float(onset):.3f}_{float(offset):.3f}.wav"
            except ValueError:
                raise ConfigError(f"{path}:{lineno}: onset/offset must be numbers, got {onset!r}, {offset!r}") from None
        rows.append((name, parse_dcase_labels(label_text, f"{path}:{lineno}")))
    return rows


def _index_audio(base: Path) -> dict[str, Path]:
    """Map file name (and name without a leading "Y") -> path for every audio file under ``base``."""
    found: dict[str, Path] = {}
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            if name.lower().endswith(AUDIO_SUFFIXES):
                path = Path(dirpath) / name
                for key in (name, name[1:] if name.startswith("Y") else None):
                    if key:
                        stem = os.path.splitext(key)[0]
                        found.setdefault(key, path)
                        found.setdefault(stem, path)
    return found


def read_dcase2017(
    root: str | os.PathLike | None,
    train_list: str | Sequence[str] = (
        "groundtruth_weak_label_training_set.csv", "groundtruth_weak_label_testing_set.csv"),
    val_list: str | None = None,
    test_list: str = "groundtruth_weak_label_evaluation_set.csv",
    val_fraction: float = 0.1,
    split_seed: int = 123,
    audio_dir: str = "",
) -> AudioSplits:
    """Index DCASE 2017 Task 4 (see the module docstring). With ``val_list`` set, that file is the
    validation set; otherwise ``val_fraction`` of each class's training rows are drawn with ``split_seed``."""
    import pandas as pd

    base = _require_dir(root, "DCASE 2017 Task 4")
    classes = list(DCASE2017_CLASSES)
    index = {c: i for i, c in enumerate(classes)}

    def read(names: str | Sequence[str], key: str) -> list[tuple[str, list[str]]]:
        names = [names] if isinstance(names, str) else list(names)
        rows: list[tuple[str, list[str]]] = []
        for name in names:
            rows += read_dcase_csv(_require_file(base / name, f"data.{key} ({name})"))
        return rows

    train_rows = read(train_list, "train_list")
    test_rows = read(test_list, "test_list")
    if val_list is not None:
        val_rows = read(val_list, "val_list")
        val_files = {name for name, _ in val_rows}
        train_rows = [r for r in train_rows if r[0] not in val_files]
    else:
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction}: must be in (0, 1) when data.val_list is null")
        long = pd.DataFrame([(name, lab) for name, labels in train_rows for lab in labels], columns=["file", "label"])
        val_files = set()
        for c in classes:
            rows = long[long["label"] == c]
            if len(rows):
                val_files |= set(rows.sample(frac=val_fraction, random_state=split_seed)["file"])
        val_rows = [r for r in train_rows if r[0] in val_files]
        train_rows = [r for r in train_rows if r[0] not in val_files]

    audio = _index_audio(base / audio_dir if audio_dir else base)
    missing: dict[str, str] = {}

    def to_clips(rows: list[tuple[str, list[str]]]) -> list[Clip]:
        merged: dict[str, np.ndarray] = {}
        for name, labels in rows:
            target = merged.setdefault(name, np.zeros(len(classes), dtype=np.float32))
            for lab in labels:
                target[index[lab]] = 1.0
        clips = []
        for name, target in merged.items():
            path = audio.get(name) or audio.get(os.path.splitext(name)[0])
            if path is None:
                missing[str(base / name)] = "file not found under data.root"
            else:
                clips.append(Clip(path, target))
        return clips

    splits = AudioSplits(to_clips(train_rows), to_clips(val_rows), to_clips(test_rows), classes,
                         multilabel=True, missing=missing)
    return _check_nonempty(splits, "DCASE 2017 Task 4", base)


def subsample(clips: list[Clip], n: int | None, seed: int) -> list[Clip]:
    """A fixed random subset of ``n`` clips (all when ``n`` is None or not smaller), in the original order."""
    if n is None or n >= len(clips):
        return clips
    keep = np.sort(np.random.default_rng(seed).choice(len(clips), size=n, replace=False))
    return [clips[i] for i in keep]


# ----------------------------------------------------------------------------------------------------------
# torch datasets
# ----------------------------------------------------------------------------------------------------------
class EpochSampler(Sampler):
    """Shuffled ``(index, crop_offset, pad_offset)`` keys of one epoch, fixed by (seed, epoch) so that the
    random crops do not depend on the number of data-loading workers."""

    def __init__(self, n: int, seed: int, epoch: int):
        self.n, self.seed, self.epoch = n, seed, epoch

    def __iter__(self) -> Iterator[tuple[int, float, float]]:
        rng = np.random.default_rng([self.seed, self.epoch, 0x5EED])
        order = rng.permutation(self.n)
        offsets = rng.random((self.n, 2))
        for i in order:
            yield int(i), float(offsets[i, 0]), float(offsets[i, 1])

    def __len__(self) -> int:
        return self.n


class ClipDataset(Dataset):
    """Waveforms of a clip list. Training keys are ``(index, crop_offset, pad_offset)`` and give one window of
    ``input_length`` samples; evaluation keys are indices and give up to ``eval_chunks`` evenly spread
    windows. An unreadable file gives an item with ``x = None`` and the reason, so the collate function can
    drop it and the task can count it."""

    def __init__(self, clips: Sequence[Clip], sample_rate: int, input_length: int, train: bool,
                 eval_chunks: int = 1):
        self.clips = list(clips)
        self.sample_rate = int(sample_rate)
        self.input_length = int(input_length)
        self.train = train
        self.eval_chunks = int(eval_chunks)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        if self.train:
            index, crop, pad = key
        else:
            index, crop, pad = int(key), None, 0.0
        clip = self.clips[index]
        try:
            if self.train:
                wave = fit_length(load_audio(clip.path, self.sample_rate, crop, self.input_length),
                                  self.input_length, pad)
                x = torch.from_numpy(wave)
            else:
                wave = load_audio(clip.path, self.sample_rate)
                starts = chunk_starts(wave.shape[0], self.input_length, self.eval_chunks)
                x = torch.from_numpy(np.stack([fit_length(wave[s:], self.input_length) for s in starts]))
        except AudioReadError as exc:
            return {"x": None, "path": str(clip.path), "reason": exc.reason, "index": index}
        return {"x": x, "y": clip.target, "path": str(clip.path), "index": index}


def _targets(items: list[dict[str, Any]]) -> torch.Tensor:
    ys = [it["y"] for it in items]
    if isinstance(ys[0], np.ndarray):
        return torch.from_numpy(np.stack(ys).astype(np.float32))
    return torch.tensor(ys, dtype=torch.long)


def collate_train(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack readable items into ``{"x": (B, L), "y": (B,) or (B, C), "skipped": [(path, reason)]}``."""
    ok = [it for it in items if it["x"] is not None]
    skipped = [(it["path"], it["reason"]) for it in items if it["x"] is None]
    if not ok:
        return {"x": None, "y": None, "skipped": skipped}
    return {"x": torch.stack([it["x"] for it in ok]), "y": _targets(ok), "skipped": skipped}


def collate_eval(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate the windows of readable clips: ``x`` (sum of windows, L), ``counts`` (windows per clip),
    ``y`` (one target per clip), ``index`` (clip indices) and ``skipped``."""
    ok = [it for it in items if it["x"] is not None]
    skipped = [(it["path"], it["reason"]) for it in items if it["x"] is None]
    if not ok:
        return {"x": None, "y": None, "counts": [], "index": [], "skipped": skipped}
    return {
        "x": torch.cat([it["x"] for it in ok]),
        "counts": [int(it["x"].shape[0]) for it in ok],
        "y": _targets(ok),
        "index": [it["index"] for it in ok],
        "skipped": skipped,
    }


def steps_per_epoch(n_clips: int, batch_size: int) -> int:
    """Batches per training epoch: the last partial batch is dropped (batch norm needs > 1 sample and equal
    batches keep steps comparable), except that a split smaller than one batch gives one batch."""
    return n_clips // batch_size if n_clips >= batch_size else 1
