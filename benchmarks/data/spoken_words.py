"""A small keyword-spotting data set of SYNTHESISED speech in the Speech Commands v0.02 layout.

This is a stand-in for Speech Commands, not Speech Commands: every clip is a word spoken by Debian's
``espeak-ng`` speech synthesiser (formant synthesis), never a recording of a person. It exists so that the
audio task (``benchmarks/tasks/audio.py``) can be run end to end on a CPU without downloading anything;
accuracies on it say nothing about accuracies on the real data set.

Usage::

    python -m benchmarks.data.spoken_words OUT [--words yes no ...] [--speakers 50] [--takes 2] [--seed 0]

Layout written under ``OUT`` (what :func:`benchmarks.data.audio.read_speech_commands` reads)::

    OUT/<word>/<speaker>_nohash_<take>.wav   16 kHz mono 16-bit PCM, exactly 1 s
    OUT/validation_list.txt                  relative paths, one per line
    OUT/testing_list.txt
    OUT/speakers.csv                         each synthetic speaker's voice, variant, rate, pitch and split
    OUT/README.txt                           what this is, the espeak-ng version and the command

A *speaker* is one espeak-ng voice (an English accent) with one voice variant (``+m3``, ``+f2``, ...), a base
speaking rate and a base pitch; its id is 8 hex digits, as in Speech Commands. Each take of a word varies the
rate and pitch a little around the speaker's, places the word at a random position in the 1-s clip, scales it
and adds faint white noise. Everything is drawn from ``--seed``, so the same seed, arguments and espeak-ng
version give byte-identical files.

Split by speaker, as Speech Commands does (all clips of a speaker are in one split, for every word). Speech
Commands puts a speaker in validation when ``sha1(speaker id)`` maps below 10 % and in testing below 20 %; with
a few dozen speakers that threshold rule gives splits of random size, possibly empty, so here the speakers are
ranked by that same hash value and the first ``round(val_fraction * speakers)`` (at least 1) go to
validation, the next ``round(test_fraction * speakers)`` (at least 1) to testing.

Without ``espeak-ng`` on PATH the command exits with status 2 and says how to install it; it never falls back
to other sounds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmarks.atomic import write_text_atomic
from benchmarks.config.errors import ConfigError

__all__ = [
    "DEFAULT_WORDS",
    "ESPEAK_MISSING",
    "Speaker",
    "Take",
    "espeak_version",
    "generate",
    "main",
    "plan_speakers",
    "speech_commands_hash",
    "split_speakers",
]

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # 1 s, the length of a Speech Commands clip
#: the ten command words of the standard 12-class Speech Commands benchmark
DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: English voices of espeak-ng 1.51 (accents); mbrola voices are left out (they need the mbrola package)
VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
#: voice variants shipped with espeak-ng (voices/!v/), male and female; robotic/whisper ones left out
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "Andy", "Annie", "adam", "anika", "aunty", "belinda", "benjamin", "caleb",
    "david", "ed", "edward", "grandma", "grandpa", "john", "linda", "max", "michel", "norbert", "paul",
    "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)
ESPEAK_MISSING = (
    "error: espeak-ng not found on PATH; install it with `apt-get install espeak-ng` (Debian) or "
    "`make audio-demo-data` (which installs it when apt is reachable)"
)
WORD_RE = re.compile(r"^[a-z]+$")
# Speech Commands' which_set() reduces sha1(speaker id) modulo this before scaling to a percentage.
_SC_MAX_PER_CLASS = 2**27 - 1


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng voice + variant at a base rate (words/min) and pitch (0-99)."""

    id: str
    voice: str
    variant: str
    rate: int
    pitch: int


@dataclass(frozen=True)
class Take:
    """One clip: who says which word, with the per-take rate/pitch and placement drawn from the seed."""

    word: str
    speaker: Speaker
    index: int
    rate: int
    pitch: int
    position: float  # fraction of the free space before the word
    gain: float  # peak amplitude
    snr_db: float  # white noise below the word's RMS
    noise_seed: int

    @property
    def relpath(self) -> str:
        return f"{self.word}/{self.speaker.id}_nohash_{self.index}.wav"


# ----------------------------------------------------------------------------------------------------------
# espeak-ng
# ----------------------------------------------------------------------------------------------------------
def espeak_binary() -> str:
    """The espeak-ng executable; ConfigError (exit 2 in the CLI) with the install command when absent."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise ConfigError(ESPEAK_MISSING.removeprefix("error: "))
    return path


def espeak_version(binary: str) -> tuple[str, Path | None]:
    """(version line, data folder) as printed by ``espeak-ng --version``."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    match = re.search(r"Data at:\s*(\S+)", out)
    first = out.splitlines()[0] if out else "unknown"
    return re.sub(r"\s*Data at:.*$", "", first).strip(), Path(match.group(1)) if match else None


def check_variants(data_dir: Path | None) -> None:
    """espeak-ng silently uses its default voice for an unknown variant: refuse instead."""
    if data_dir is None:
        return
    missing = [v for v in VARIANTS if not (data_dir / "voices" / "!v" / v).is_file()]
    missing += [v for v in VOICES if not any((data_dir / "lang").rglob(_voice_file(v)))]
    if missing:
        raise ConfigError(f"espeak-ng data at {data_dir} lacks the voices/variants {', '.join(missing)}; "
                          "expected espeak-ng 1.51 (Debian 12) or newer")


def _voice_file(voice: str) -> str:
    # voice names map to files under lang/ with upper-case region: en-gb-x-rp -> en-GB-x-rp, en-us -> en-US
    parts = voice.split("-")
    if len(parts) >= 2 and len(parts[1]) in (2, 3) and parts[1] != "x":
        parts[1] = parts[1].upper()
    return "-".join(parts)


def synthesise(binary: str, take: Take) -> np.ndarray:
    """The take as float32 at 16 kHz, silence trimmed (not yet placed in the 1-s clip)."""
    rate = take.rate
    for _ in range(8):
        proc = subprocess.run(
            [binary, "-v", f"{take.speaker.voice}+{take.speaker.variant}", "-s", str(rate), "-p", str(take.pitch),
             "--stdout", take.word],
            capture_output=True, check=False,
        )
        if proc.returncode != 0 or not proc.stdout:
            raise RuntimeError(f"espeak-ng failed for {take.relpath} (exit {proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace').strip()}")
        import soundfile as sf

        from benchmarks.data.audio import resample  # imports torch: only once there is speech to resample

        wave, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        wave = resample(wave if wave.ndim == 1 else wave.mean(axis=1), int(sr), SAMPLE_RATE)
        loud = np.flatnonzero(np.abs(wave) > 0.02 * float(np.abs(wave).max() or 1.0))
        if loud.size == 0:
            raise RuntimeError(f"espeak-ng produced silence for {take.relpath}")
        margin = SAMPLE_RATE // 100  # keep 10 ms around the word
        wave = wave[max(0, loud[0] - margin):loud[-1] + margin + 1]
        if wave.shape[0] <= CLIP_SAMPLES:
            return wave
        rate = int(rate * 1.2)  # too long for 1 s: say it faster (deterministic, rarely needed)
    raise RuntimeError(f"{take.relpath}: still longer than 1 s at {rate} words/min")


def render(binary: str, take: Take) -> np.ndarray:
    """The 1-s clip of ``take``: the word placed, scaled and with faint noise; float32 in [-1, 1]."""
    word = synthesise(binary, take)
    word = word * (take.gain / max(float(np.abs(word).max()), 1e-6))
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    start = int(round(take.position * (CLIP_SAMPLES - word.shape[0])))
    clip[start:start + word.shape[0]] = word
    rms = float(np.sqrt(np.mean(word.astype(np.float64) ** 2)))
    noise = np.random.default_rng(take.noise_seed).standard_normal(CLIP_SAMPLES)
    clip += (rms * 10 ** (-take.snr_db / 20) * noise).astype(np.float32)
    return np.clip(clip, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Plan: speakers, takes, split
# ----------------------------------------------------------------------------------------------------------
def plan_speakers(n: int, seed: int) -> list[Speaker]:
    """``n`` distinct speakers drawn from ``seed`` (distinct voice/variant pairs while they last)."""
    rng = np.random.default_rng([seed, 0x5B])
    pairs = [(v, w) for v in VOICES for w in VARIANTS]
    order = rng.permutation(len(pairs))
    speakers, ids = [], set()
    for i in range(n):
        voice, variant = pairs[int(order[i % len(pairs)])]
        sid = hashlib.sha1(f"spoken_words:{seed}:{i}".encode()).hexdigest()[:8]
        if sid in ids:  # 8 hex digits: a collision is astronomically rare, but never merge two speakers
            raise RuntimeError(f"speaker id collision {sid}; choose another --seed")
        ids.add(sid)
        speakers.append(Speaker(sid, voice, variant, rate=int(rng.integers(120, 201)), pitch=int(rng.integers(20, 81))))
    return speakers


def plan_takes(speakers: Sequence[Speaker], words: Sequence[str], takes: int, seed: int) -> list[Take]:
    rng = np.random.default_rng([seed, 0x7A])
    plan = []
    for speaker in speakers:
        for word in words:
            for i in range(takes):
                plan.append(Take(
                    word=word, speaker=speaker, index=i,
                    rate=int(round(speaker.rate * rng.uniform(0.9, 1.1))),
                    pitch=int(np.clip(speaker.pitch + rng.integers(-5, 6), 0, 99)),
                    position=float(rng.uniform()), gain=float(rng.uniform(0.3, 0.9)),
                    snr_db=float(rng.uniform(20.0, 40.0)), noise_seed=int(rng.integers(2**31)),
                ))
    return plan


def speech_commands_hash(speaker_id: str) -> float:
    """Speech Commands' split value of a speaker, a percentage in [0, 100] (its which_set() hash)."""
    value = int(hashlib.sha1(speaker_id.encode()).hexdigest(), 16)
    return (value % (_SC_MAX_PER_CLASS + 1)) * (100.0 / _SC_MAX_PER_CLASS)


def split_speakers(speaker_ids: Sequence[str], val_fraction: float, test_fraction: float) -> dict[str, str]:
    """speaker id -> "train" | "val" | "test", by rank of :func:`speech_commands_hash` (module docstring)."""
    n = len(speaker_ids)
    n_val = max(1, round(val_fraction * n))
    n_test = max(1, round(test_fraction * n))
    if n_val + n_test >= n:
        raise ConfigError(f"--speakers {n}: too few for {n_val} validation + {n_test} test speakers and at least "
                          "one training speaker")
    ranked = sorted(speaker_ids, key=lambda s: (speech_commands_hash(s), s))
    return {s: "val" if r < n_val else "test" if r < n_val + n_test else "train" for r, s in enumerate(ranked)}


# ----------------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------------
def generate(out: str | os.PathLike, words: Sequence[str] = DEFAULT_WORDS, speakers: int = 50, takes: int = 2,
             seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1, jobs: int | None = None,
             force: bool = False, command: str = "") -> Path:
    """Write the data set to ``out`` (see the module docstring) and return its path.

    Written into a sibling folder first and renamed at the end, so ``out`` existing means it is complete.
    """
    out = Path(out)
    words = list(words)
    bad = [w for w in words if not WORD_RE.match(w)]
    if bad:
        raise ConfigError(f"--words: {', '.join(map(repr, bad))} invalid; words are lower-case letters a-z only")
    if len(set(words)) != len(words) or len(words) < 2:
        raise ConfigError(f"--words: need at least 2 distinct words, got {words}")
    if speakers < 3 or takes < 1:
        raise ConfigError(f"--speakers must be >= 3 and --takes >= 1, got {speakers} and {takes}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"{out}: exists and is not empty; delete it or pass --force to replace it")
    binary = espeak_binary()
    version, data_dir = espeak_version(binary)
    check_variants(data_dir)

    people = plan_speakers(speakers, seed)
    split = split_speakers([s.id for s in people], val_fraction, test_fraction)
    plan = plan_takes(people, words, takes, seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for word in words:
            (tmp / word).mkdir(parents=True)

        import soundfile as sf

        def write(take: Take) -> None:
            sf.write(str(tmp / take.relpath), render(binary, take), SAMPLE_RATE, subtype="PCM_16")

        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            list(pool.map(write, plan))  # list() re-raises the first failure
        for name, which in (("validation_list.txt", "val"), ("testing_list.txt", "test")):
            lines = sorted(t.relpath for t in plan if split[t.speaker.id] == which)
            write_text_atomic(tmp / name, "".join(f"{line}\n" for line in lines))
        buf = io.StringIO()
        table = csv.writer(buf, lineterminator="\n")
        table.writerow(["speaker", "voice", "variant", "rate_wpm", "pitch", "split"])
        for s in people:
            table.writerow([s.id, s.voice, s.variant, s.rate, s.pitch, split[s.id]])
        write_text_atomic(tmp / "speakers.csv", buf.getvalue())
        counts = {k: sum(1 for v in split.values() if v == k) for k in ("train", "val", "test")}
        write_text_atomic(tmp / "README.txt", (
            "SYNTHESISED SPEECH - a stand-in for Speech Commands, NOT Speech Commands.\n"
            f"Every clip is a word spoken by the espeak-ng speech synthesiser ({version}), not by a person.\n"
            "Written by benchmarks/data/spoken_words.py in the Speech Commands v0.02 layout "
            "(<word>/<speaker>_nohash_<take>.wav, 16 kHz mono, 1 s; validation_list.txt, testing_list.txt).\n"
            f"words: {' '.join(words)}\n"
            f"speakers: {speakers} (train {counts['train']}, validation {counts['val']}, test {counts['test']}; "
            f"split by speaker), takes per speaker and word: {takes}, seed: {seed}\n"
            f"clips: {len(plan)}\n"
            + (f"command: {command}\n" if command else "")
        ))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.data.spoken_words",
        description="Write a keyword-spotting data set of espeak-ng SYNTHESISED speech in the Speech Commands "
                    "v0.02 layout (a stand-in for Speech Commands, not Speech Commands).",
    )
    parser.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    parser.add_argument("--words", nargs="+", default=list(DEFAULT_WORDS),
                        help=f"keywords, lower-case a-z (default: {' '.join(DEFAULT_WORDS)})")
    parser.add_argument("--speakers", type=int, default=50, help="synthetic speakers (default 50)")
    parser.add_argument("--takes", type=int, default=2, help="clips per speaker and word (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="draws speakers, takes and split (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of speakers for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of speakers for testing")
    parser.add_argument("--jobs", type=int, default=None, help="parallel espeak-ng processes (default: cores)")
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty output folder")
    args = parser.parse_args(argv)
    try:
        out = generate(args.out, args.words, args.speakers, args.takes, args.seed, args.val_fraction,
                       args.test_fraction, args.jobs, args.force,
                       command="python -m benchmarks.data.spoken_words " + " ".join(sys.argv[1:] if argv is None
                                                                                    else argv))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = args.speakers * args.takes * len(args.words)
    print(f"wrote {n} clips of synthesised speech ({len(args.words)} words, {args.speakers} speakers) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
