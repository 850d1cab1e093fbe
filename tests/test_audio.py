"""Tests of the audio task: front end, harmonic filterbank, data set readers in their official layouts,
metrics, skipping of corrupt files, and a short end-to-end keyword-spotting run that must beat chance.

All data are synthesised here (tones, chirps, noise bursts) and written with soundfile into tmp_path.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks.config.errors import ConfigError
from benchmarks.data import audio as audio_data
from benchmarks.data.audio_frontend import mel_filterbank, power_spectrogram, power_to_db
from benchmarks.models.harmonic_cnn import (
    HarmonicCNN,
    HarmonicFilterbank,
    default_high_midi,
    harmonic_centre_frequencies,
)
from benchmarks.tasks.audio import Audio, f1_at_thresholds, tagging_auc, tune_thresholds
from benchmarks.tasks.base import RunContext

SR = 8000  # tests use 8 kHz and short clips to stay fast


# ----------------------------------------------------------------------------------------------------------
# synthetic sounds
# ----------------------------------------------------------------------------------------------------------
def _sound(kind: str, rng: np.random.Generator, seconds: float = 0.25, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    if kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(380, 460) * t)
    elif kind == "chirp":
        f0, f1 = rng.uniform(200, 300), rng.uniform(2500, 3000)
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    elif kind == "noise":
        x = rng.standard_normal(t.size) * (np.sin(np.pi * t / seconds) ** 2)
    elif kind == "high":
        x = np.sin(2 * np.pi * rng.uniform(1800, 2000) * t)
    else:
        raise ValueError(kind)
    x = 0.3 * x / (np.abs(x).max() + 1e-9) + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _write(path: Path, x: np.ndarray, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr)


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(64)))


def make_speech_commands(root: Path, n_train: int = 12, n_val: int = 4, n_test: int = 4, seed: int = 0) -> None:
    """Speech Commands v0.02 layout with three keywords, one short clip, one 16 kHz clip, one corrupt clip."""
    rng = np.random.default_rng(seed)
    words = {"go": "tone", "up": "chirp", "yes": "noise"}
    val_lines, test_lines = [], []
    for word, kind in words.items():
        for i in range(n_train + n_val + n_test):
            name = f"{word}/spk{i:03d}_nohash_0.wav"
            _write(root / name, _sound(kind, rng))
            if n_train <= i < n_train + n_val:
                val_lines.append(name)
            elif i >= n_train + n_val:
                test_lines.append(name)
    _write(root / "go/short_nohash_0.wav", _sound("tone", rng, seconds=0.1))  # padded to input_length
    up16k = _sound("chirp", rng, sr=16000)
    _write(root / "up/sr16k_nohash_0.wav", up16k, sr=16000)  # resampled to 8 kHz
    _corrupt(root / "yes/broken_nohash_0.wav")  # training clip that cannot be decoded
    _write(root / "_background_noise_/white_noise.wav", rng.standard_normal(SR).astype(np.float32))
    (root / "validation_list.txt").write_text("\n".join(val_lines) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test_lines) + "\n")


def base_config(root: Path, **data: Any) -> dict[str, Any]:
    """A fully resolved config for a tiny audio run (task defaults + the loop keys the task reads)."""
    cfg = copy.deepcopy({k: dict(v) for k, v in Audio.defaults.items()})
    cfg["data"].update({"root": str(root), "sample_rate": SR, "input_length": 2000, **data})
    cfg["model"].update({"n_fft": 256, "n_harmonic": 2, "semitone_scale": 1, "channels": [8, 8, 16],
                         "pooling": [2, 2, 2], "dropout": 0.0})
    cfg["train"].update({"batch_size": 12, "num_workers": 0, "epochs": 1, "seed": 0})
    cfg["task"] = "audio"
    return cfg


def manual_run(task: Audio, epochs: int, lr: float = 3e-3) -> dict[str, float]:
    """Minimal stand-in for the shared loop: Adam, ``epochs`` passes, then one evaluation."""
    torch.manual_seed(task.ctx.seed)
    model = task.build_model()
    optimizer = torch.optim.Adam(task.optimizer_params(model), lr=lr)
    for epoch in range(epochs):
        model.train()
        for batch in task.train_batches(epoch):
            loss, _ = task.loss(model, task.to_device(batch))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return task.evaluate(model)


def _ctx(tmp_path: Path, seed: int = 0) -> RunContext:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return RunContext(run_dir=run_dir, device=torch.device("cpu"), seed=seed, log=lambda _msg: None)


# ----------------------------------------------------------------------------------------------------------
# front end
# ----------------------------------------------------------------------------------------------------------
def test_power_spectrogram_matches_numpy_fft() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1000)
    n_fft, hop = 64, 16
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    n_frames = 1 + (padded.size - n_fft) // hop
    expected = np.stack(
        [np.abs(np.fft.rfft(padded[t * hop:t * hop + n_fft] * window)) ** 2 for t in range(n_frames)], axis=1
    )
    got = power_spectrogram(torch.tensor(x, dtype=torch.float64).unsqueeze(0), n_fft=n_fft, hop_length=hop)[0]
    assert got.shape == expected.shape == (n_fft // 2 + 1, x.size // hop + 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_mel_filterbank_matches_independent_numpy() -> None:
    n_freqs, sr, n_mels, f_min, f_max = 129, 16000, 20, 50.0, 7000.0

    def mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m: float) -> float:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = [hz(mel(f_min) + i * (mel(f_max) - mel(f_min)) / (n_mels + 1)) for i in range(n_mels + 2)]
    expected = np.zeros((n_freqs, n_mels))
    for k in range(n_freqs):
        f = k * (sr // 2) / (n_freqs - 1)
        for m in range(n_mels):
            lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
            if lo < f <= c:
                expected[k, m] = (f - lo) / (c - lo)
            elif c < f < hi:
                expected[k, m] = (hi - f) / (hi - c)
    got = mel_filterbank(n_freqs, sr, n_mels, f_min, f_max).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_mel_filterbank_single_band_hand_computed() -> None:
    # One band over 0..8 kHz: its centre is the mel midpoint, 700 * (sqrt(1 + 8000/700) - 1) = 1767.79 Hz.
    centre = 700.0 * (math.sqrt(1.0 + 8000.0 / 700.0) - 1.0)
    assert centre == pytest.approx(1767.79, abs=0.01)
    fb = mel_filterbank(n_freqs=257, sample_rate=16000, n_mels=1)[:, 0].numpy()
    bins = np.linspace(0, 8000, 257)
    k = 32  # 1000 Hz, on the rising edge: 1000 / 1767.79
    assert bins[k] == 1000.0
    assert fb[k] == pytest.approx(1000.0 / centre, abs=1e-6)
    k = 128  # 4000 Hz, on the falling edge
    assert fb[k] == pytest.approx((8000.0 - 4000.0) / (8000.0 - centre), abs=1e-6)
    assert fb[0] == 0.0 and fb[-1] == pytest.approx(0.0, abs=1e-6)


def test_power_to_db() -> None:
    p = torch.tensor([[[1.0, 10.0], [100.0, 0.0]]])
    db = power_to_db(p)
    np.testing.assert_allclose(db.numpy(), [[[0.0, 10.0], [20.0, -100.0]]], atol=1e-5)
    np.testing.assert_allclose(power_to_db(p, top_db=15.0).numpy(), [[[5.0, 10.0], [20.0, 5.0]]], atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# harmonic filterbank
# ----------------------------------------------------------------------------------------------------------
def test_harmonic_centres_hand_checked() -> None:
    # 16 kHz, 6 harmonics: top fundamental = note nearest 16000 / 12 = 1333 Hz = E6 (MIDI 88);
    # 2 filters per semitone from C1 (MIDI 24): (88 - 24) * 2 = 128 bands.
    assert default_high_midi(16000, 6) == 88
    centres = harmonic_centre_frequencies(16000, 6, 2)
    assert centres.shape == (6, 128)
    assert float(centres[0, 0]) == pytest.approx(32.7032, abs=1e-4)  # C1
    assert float(centres[0, 90]) == pytest.approx(440.0)  # A4 = MIDI 69 = 24 + 90 / 2
    assert float(centres[1, 90]) == pytest.approx(880.0)  # its second harmonic
    assert float(centres[5, 1]) == pytest.approx(6 * 32.7032 * 2 ** (1 / 24), abs=1e-3)  # quarter-tone step


def test_harmonic_filter_weights_hand_checked() -> None:
    fb_module = HarmonicFilterbank(sample_rate=16000, n_fft=512, n_harmonic=6, semitone_scale=2, bw_q=1.0)
    fb = fb_module.filterbank().detach().numpy()  # (257, 6 * 128)
    assert fb.shape == (257, 6 * 128)
    column = 0 * 128 + 90  # first harmonic, 440 Hz; ERB bandwidth 0.1079 * 440 + 24.7 = 72.176 Hz
    # FFT bins are 31.25 Hz apart: 437.5 Hz (bin 14) is 2.5 Hz off-centre, 468.75 Hz is 28.75 Hz off.
    assert fb[14, column] == pytest.approx(1 - 2 * 2.5 / 72.176, abs=1e-4)
    assert fb[15, column] == pytest.approx(1 - 2 * 28.75 / 72.176, abs=1e-4)
    assert fb[13, column] == pytest.approx(1 - 2 * 33.75 / 72.176, abs=1e-4)
    assert fb[12, column] == 0.0 and fb[16, column] == 0.0


def test_harmonic_tensor_shape_and_tone_location() -> None:
    fb = HarmonicFilterbank(sample_rate=16000, n_fft=512, n_harmonic=6, semitone_scale=2)
    t = torch.arange(8000) / 16000
    tone = torch.sin(2 * math.pi * 880.0 * t).unsqueeze(0).repeat(2, 1)
    out = fb(tone)
    assert out.shape == (2, 6, 128, 8000 // 256 + 1)
    energy = out[0].mean(dim=-1)  # (harmonic, band)
    # 880 Hz is MIDI 81: band (81 - 24) * 2 = 114 of the 1st harmonic, and the 2nd harmonic of band 90 (440 Hz).
    assert int(energy[0].argmax()) == 114
    assert int(energy[1].argmax()) == 90


def test_bandwidth_parameter_is_learned() -> None:
    torch.manual_seed(0)
    model = HarmonicCNN(n_classes=3, sample_rate=SR, n_fft=256, n_harmonic=2, channels=[4], pooling=[2])
    names = {n for n, p in model.named_parameters()}
    assert "front_end.bw_q" in names and "front_end.f0" not in names
    # not logits.sum(): batch norm in training mode makes a batch sum independent of its input
    torch.nn.functional.cross_entropy(model(torch.randn(4, 2000)), torch.tensor([0, 1, 2, 0])).backward()
    assert model.front_end.bw_q.grad is not None and float(model.front_end.bw_q.grad.abs()) > 0
    fixed = HarmonicFilterbank(SR, 256, n_harmonic=2, learn_bw="fixed")
    assert not list(fixed.parameters())
    full = HarmonicFilterbank(SR, 256, n_harmonic=2, learn_bw="full", learn_f0=True)
    assert {n for n, _ in full.named_parameters()} == {"f0", "bw_q", "bw_alpha", "bw_beta"}


def test_model_shapes_and_mel_front_end() -> None:
    for front_end in ("harmonic", "mel"):
        model = HarmonicCNN(n_classes=5, sample_rate=SR, front_end=front_end, n_fft=256, n_harmonic=2,
                            n_mels=32, channels=[4, 4, 8, 8], pooling=[2, 2, [2, 3], [2, 3]]).eval()
        for n in (2000, 8000):  # pooling adapts to short inputs
            assert model(torch.randn(3, n)).shape == (3, 5)


# ----------------------------------------------------------------------------------------------------------
# loading and resampling
# ----------------------------------------------------------------------------------------------------------
def test_load_audio_resamples_mixes_and_crops(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 1000 * t)], axis=1) * 0.5
    _write(tmp_path / "a.wav", stereo.astype(np.float32), sr=16000)
    x = audio_data.load_audio(tmp_path / "a.wav", 8000)
    assert x.dtype == np.float32 and x.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) * 8000 / x.size == pytest.approx(1000.0, abs=2.0)
    crop = audio_data.load_audio(tmp_path / "a.wav", 8000, offset=1.0, length=1000)
    np.testing.assert_allclose(crop, x[-1000:], atol=1e-6)
    same_rate = audio_data.load_audio(tmp_path / "a.wav", 16000, offset=0.5, length=100)
    assert same_rate.shape == (100,)
    np.testing.assert_allclose(same_rate, (stereo.mean(axis=1))[7950:8050], atol=1e-4)


def test_load_audio_errors_and_decoded_sibling(tmp_path: Path) -> None:
    with pytest.raises(audio_data.AudioReadError, match="not found"):
        audio_data.load_audio(tmp_path / "missing.wav", SR)
    _corrupt(tmp_path / "bad.wav")
    with pytest.raises(audio_data.AudioReadError, match="bad.wav"):
        audio_data.load_audio(tmp_path / "bad.wav", SR)
    # an undecodable .mp3 with a decoded .wav beside it: the .wav is read
    (tmp_path / "song.mp3").write_bytes(b"not an mp3")
    _write(tmp_path / "song.wav", np.full(100, 0.25, dtype=np.float32))
    np.testing.assert_allclose(audio_data.load_audio(tmp_path / "song.mp3", SR), 0.25, atol=1e-4)


def test_fit_length_and_chunks() -> None:
    x = np.arange(1, 5, dtype=np.float32)
    np.testing.assert_array_equal(audio_data.fit_length(x, 6), [1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(audio_data.fit_length(x, 6, pad_offset=1.0), [0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(audio_data.fit_length(x, 2), [1, 2])
    assert audio_data.chunk_starts(100, 40, 3) == [0, 30, 60]
    assert audio_data.chunk_starts(30, 40, 3) == [0]
    assert audio_data.chunk_starts(41, 40, 16) == [0, 1]


# ----------------------------------------------------------------------------------------------------------
# data set readers
# ----------------------------------------------------------------------------------------------------------
def test_speech_commands_layout(tmp_path: Path) -> None:
    make_speech_commands(tmp_path, n_train=3, n_val=2, n_test=1)
    splits = audio_data.read_speech_commands(tmp_path)
    assert splits.classes == ["go", "up", "yes"] and not splits.multilabel
    assert len(splits.val) == 6 and len(splits.test) == 3
    assert len(splits.train) == 3 * 3 + 3  # plus the short, the 16 kHz and the corrupt clip
    assert all("_background_noise_" not in str(c.path) for c in splits.train + splits.val + splits.test)
    assert {c.target for c in splits.val} == {0, 1, 2}
    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(ConfigError, match="testing_list.txt"):
        audio_data.read_speech_commands(tmp_path)
    with pytest.raises(ConfigError, match="data.root"):
        audio_data.read_speech_commands(None)


def make_magnatagatune(root: Path, per_folder: int = 2, seed: int = 0) -> list[str]:
    """annotations_final.csv (tab-separated, quoted as in the release) + audio in folders 0-f."""
    rng = np.random.default_rng(seed)
    tags = ["guitar", "classical", "slow", "techno", "strings", "drums"]
    kinds = {"guitar": "tone", "classical": "tone", "slow": "tone", "techno": "noise", "strings": "chirp",
             "drums": "noise"}
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *tags, "mp3_path"])]
    clip_id = 0
    for folder in "0123456789abcdef":
        for i in range(per_folder):
            tag = tags[(clip_id + i) % len(tags)]
            row = [1 if t == tag else 0 for t in tags]
            if tag == "guitar":
                row[tags.index("slow")] = 1  # "slow" becomes the 2nd most frequent tag
            rel = f"{folder}/artist-album-{clip_id:03d}-{tag}.mp3"
            # Decoded copies stand in for the mp3s (the reader prefers them when present).
            _write(root / Path(rel).with_suffix(".wav"), _sound(kinds[tag], rng, seconds=0.5))
            lines.append("\t".join(f'"{v}"' for v in [clip_id, *row, rel]))
            clip_id += 1
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    return tags


def test_magnatagatune_layout(tmp_path: Path) -> None:
    make_magnatagatune(tmp_path)
    splits = audio_data.read_magnatagatune(tmp_path, top_k=3)
    assert splits.multilabel and len(splits.classes) == 3
    assert splits.classes[0] in ("guitar", "slow") and "slow" in splits.classes
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 2, 6)
    assert all(c.path.parent.name in "0123456789ab" for c in splits.train)
    assert all(c.path.parent.name == "c" for c in splits.val)
    assert all(c.path.parent.name in "def" for c in splits.test)
    assert splits.train[0].target.shape == (3,)
    # a listed clip without audio is counted as missing, not fatal
    (tmp_path / "d").joinpath(splits.test[0].path.with_suffix(".wav").name).unlink()
    again = audio_data.read_magnatagatune(tmp_path, top_k=3)
    assert len(again.test) == 5 and len(again.missing) == 1
    with pytest.raises(ConfigError, match="top_k_tags"):
        audio_data.read_magnatagatune(tmp_path, top_k=99)


def test_magnatagatune_reads_mp3_when_libsndfile_can(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot encode MP3")
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "x.mp3"), _sound("tone", rng, seconds=0.5, sr=16000), 16000, format="MP3")
    x = audio_data.load_audio(tmp_path / "x.mp3", 16000)
    assert 7000 <= x.size <= 10000 and np.abs(x).max() > 0.1


DCASE_TRAIN = [
    ("aaa_0.000_10.000.wav", "Car"),
    ("aaa_0.000_10.000.wav", "Car passing by"),
    ("bbb_30.000_40.000.wav", "Air horn, truck horn"),
    ("ccc_10.000_20.000.wav", "Train"),
    ("ddd_0.000_10.000.wav", "Screaming"),
    ("eee_5.000_15.000.wav", "Car"),
]


def test_dcase_label_parsing() -> None:
    assert audio_data.parse_dcase_labels("Air horn, truck horn,Car") == ["Air horn, truck horn", "Car"]
    assert audio_data.parse_dcase_labels("Fire engine, fire truck (siren)") == ["Fire engine, fire truck (siren)"]
    with pytest.raises(ConfigError, match="Dog"):
        audio_data.parse_dcase_labels("Dog", "x.csv:3")


def test_dcase_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    audio = tmp_path / "audio" / "unbalanced_train_segments_training_set_audio_formatted_and_segmented_downloads"
    for name, _ in DCASE_TRAIN:
        _write(audio / f"Y{name}", _sound("noise", rng, seconds=0.5))
    (tmp_path / "groundtruth_weak_label_training_set.csv").write_text(
        "".join(f"{n}\t{n.split('_')[1]}\t{n.split('_')[2][:-4]}\t{lab}\n" for n, lab in DCASE_TRAIN)
    )
    # the "YouTube id + onset + offset + comma-separated labels" variant, one row per clip
    (tmp_path / "testing.csv").write_text("fff\t0.000\t10.000\tBus,Air horn, truck horn\n")
    _write(tmp_path / "eval" / "Yfff_0.000_10.000.wav", _sound("tone", rng, seconds=0.5))
    (tmp_path / "evaluation.csv").write_text("ggg_1.000_11.000.wav\t1.000\t11.000\tBus\n"
                                             "fff_0.000_10.000.wav\t0.000\t10.000\tBus\n")
    splits = audio_data.read_dcase2017(
        tmp_path, train_list=["groundtruth_weak_label_training_set.csv"], val_list="testing.csv",
        test_list="evaluation.csv",
    )
    classes = audio_data.DCASE2017_CLASSES
    assert splits.classes == list(classes) and len(classes) == 17
    by_name = {c.path.name: c.target for c in splits.train}
    assert set(by_name) == {f"Y{n}" for n, _ in DCASE_TRAIN}
    car = by_name["Yaaa_0.000_10.000.wav"]
    assert car[classes.index("Car")] == 1 and car[classes.index("Car passing by")] == 1 and car.sum() == 2
    assert by_name["Ybbb_30.000_40.000.wav"][classes.index("Air horn, truck horn")] == 1
    (val,) = splits.val
    assert val.target[classes.index("Bus")] == 1 and val.target[classes.index("Air horn, truck horn")] == 1
    assert len(splits.test) == 1 and len(splits.missing) == 1 and "ggg" in next(iter(splits.missing))
    # default protocol: validation drawn from the training rows, disjoint from training
    drawn = audio_data.read_dcase2017(tmp_path, train_list=["groundtruth_weak_label_training_set.csv"],
                                      test_list="evaluation.csv", val_fraction=0.5)
    names = lambda clips: {c.path.name for c in clips}  # noqa: E731
    assert names(drawn.val) and not names(drawn.val) & names(drawn.train)
    assert names(drawn.val) | names(drawn.train) == names(splits.train)


# ----------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------
def test_tagging_auc_matches_sklearn_on_defined_classes() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) < 0.3).astype(float)
    y[:, 4] = 0  # a tag absent from the split has no AUC and is left out
    s = y * 0.3 + rng.random((40, 5))
    roc, pr = tagging_auc(y, s)
    assert roc == pytest.approx(roc_auc_score(y[:, :4], s[:, :4], average="macro"))
    assert pr == pytest.approx(average_precision_score(y[:, :4], s[:, :4], average="macro"))
    assert roc == pytest.approx(np.mean([roc_auc_score(y[:, c], s[:, c]) for c in range(4)]))


def test_thresholds_maximise_f1_like_brute_force() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y = (rng.random((30, 3)) < 0.4).astype(int)
    s = np.clip(y * 0.35 + rng.random((30, 3)) * 0.8, 0, 1)
    per_class = tune_thresholds(y, s, "per_class")
    for c in range(3):
        best = max(f1_score(y[:, c], s[:, c] >= t, zero_division=0) for t in np.unique(s[:, c]))
        assert f1_score(y[:, c], s[:, c] >= per_class[c], zero_division=0) == pytest.approx(best)
    glob = tune_thresholds(y, s, "global")
    best = max(f1_score(y, s >= t, average="micro", zero_division=0) for t in np.unique(s))
    assert f1_at_thresholds(y, s, glob, "micro") == pytest.approx(best)
    assert np.all(glob == glob[0])
    for average in ("micro", "macro", "samples"):
        expected = f1_score(y, s >= per_class[None, :], average=average, zero_division=0)
        assert f1_at_thresholds(y, s, per_class, average) == pytest.approx(expected)
    # hand-checked F1: 2 TP, 1 FP, 1 FN -> 2*2 / (2*2 + 1 + 1) = 2/3
    yy = np.array([[1], [1], [0], [1]])
    ss = np.array([[0.9], [0.8], [0.7], [0.1]])
    assert f1_at_thresholds(yy, ss, np.array([0.5]), "micro") == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------------------------------------
# task
# ----------------------------------------------------------------------------------------------------------
def test_task_config_errors(tmp_path: Path) -> None:
    cfg = base_config(tmp_path)
    for key, value, match in [
        ("data.name", "librispeech", "data.name"),
        ("data.threshold", "best", "data.threshold"),
        ("model.pooling", [2], "model.pooling"),
        ("data.input_length", 0, "data.input_length"),
    ]:
        bad = copy.deepcopy(cfg)
        section, _, name = key.partition(".")
        bad[section][name] = value
        with pytest.raises(ConfigError, match=match):
            Audio(bad, _ctx(tmp_path))


def test_keyword_run_beats_chance_and_counts_corrupt_file(tmp_path: Path) -> None:
    """Through the real engine: resolve_config -> execute_run (shared loop, AdamP), record.json written."""
    from benchmarks.config.validate import resolve_config
    from benchmarks.engine.spec import RunSpec, execute_run

    root = tmp_path / "speech_commands"
    make_speech_commands(root)
    raw = base_config(root)
    config = resolve_config({
        "task": "audio",
        "data": raw["data"],
        "model": raw["model"],
        "optimizer": {"name": "adamp", "lr": 3e-3, "weight_decay": 1e-4},
        # batch 6: enough steps for the batch-norm running statistics to settle
        "train": {"epochs": 5, "batch_size": 6, "device": "cpu", "num_threads": 1, "num_workers": 0,
                  "eval_every": 5},
    })
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match="broken_nohash_0.wav"):
        status = execute_run(RunSpec(run_id="audio-test", config=config, out_dir=out))
    run_dir = out / "runs" / "audio-test"
    assert status == "done", (run_dir / "traceback.txt").read_text() if (run_dir / "traceback.txt").exists() else ""
    metrics = json.loads((run_dir / "record.json").read_text())["metrics"]
    assert metrics["skipped_files"] == 1.0
    assert "broken_nohash_0.wav" in (run_dir / "skipped_files.txt").read_text()
    assert metrics["val_accuracy"] > 60.0 and metrics["test_accuracy"] > 60.0  # chance: 33 %
    assert metrics["val_score"] == metrics["val_accuracy"]
    assert math.isfinite(metrics["val_loss"])


def test_tagging_runs_report_auc_and_f1(tmp_path: Path) -> None:
    root = tmp_path / "mtat"
    make_magnatagatune(root, per_folder=2)
    _corrupt(root / "d" / "artist-album-999-techno.wav")
    lines = (root / "annotations_final.csv").read_text().splitlines()
    lines.append("\t".join(['"999"', '"0"', '"0"', '"0"', '"1"', '"0"', '"0"', '"d/artist-album-999-techno.mp3"']))
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    cfg = base_config(root, name="magnatagatune", top_k_tags=4, input_length=2000, eval_chunks=3)
    cfg["train"]["batch_size"] = 8
    task = Audio(cfg, _ctx(tmp_path))
    with pytest.warns(RuntimeWarning, match="999"):
        metrics = manual_run(task, epochs=1)
    assert metrics["skipped_files"] == 1.0
    for key in ("val_roc_auc", "val_pr_auc", "test_roc_auc", "test_pr_auc"):
        assert 0.0 <= metrics[key] <= 100.0
    assert metrics["test_score"] == metrics["test_roc_auc"]

    dcase = tmp_path / "dcase"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        label = ["Car", "Train horn"][i % 2]
        name = f"clip{i:02d}_0.000_10.000.wav"
        _write(dcase / "audio" / f"Y{name}", _sound("noise" if label == "Car" else "tone", rng, seconds=0.5))
        rows.append(f"{name}\t0.000\t10.000\t{label}\n")
    (dcase / "groundtruth_weak_label_training_set.csv").write_text("".join(rows[:10]))
    (dcase / "groundtruth_weak_label_testing_set.csv").write_text("".join(rows[10:13]))
    (dcase / "groundtruth_weak_label_evaluation_set.csv").write_text("".join(rows[13:]))
    cfg = base_config(dcase, name="dcase2017", val_list="groundtruth_weak_label_testing_set.csv",
                      train_list=["groundtruth_weak_label_training_set.csv"],
                      test_list="groundtruth_weak_label_evaluation_set.csv")
    cfg["train"]["batch_size"] = 4
    metrics = manual_run(Audio(cfg, _ctx(tmp_path)), epochs=1)
    assert 0.0 <= metrics["test_f1"] <= 100.0 and 0.0 <= metrics["test_f1_macro"] <= 100.0
    assert metrics["test_score"] == metrics["test_f1"] and metrics["skipped_files"] == 0.0


def test_table5_configs_cover_the_paper_cells() -> None:
    import pandas as pd

    from benchmarks.config.grid import expand
    from benchmarks.config.loader import load_config
    from benchmarks.config.validate import apply_smoke, resolve_config

    repo = Path(__file__).resolve().parents[1]
    paper = pd.read_csv(repo / "results" / "paper" / "t05_audio_classification.csv")
    cells = set()
    for path in sorted((repo / "configs" / "paper").glob("table5_*.yaml")):
        for run, _ in expand(load_config(path)):
            tags = run["tags"]
            assert run["task"] == "audio" and tags["table"] == "t05" and tags["model"] == "Harmonic CNN"
            assert {"adam": "Adam", "adamp": "AdamP"}[run["optimizer"]["name"]] == tags["optimizer"]
            cells.add((tags["task"], tags["dataset"], tags["optimizer"]))
            resolved = resolve_config({k: v for k, v in run.items() if k != "tags"})
            assert resolved["data"]["root"] and resolved["model"]["front_end"] == "harmonic"
            assert resolved["optimizer"]["lr"] == 1e-4 and resolved["train"]["batch_size"] == 16
            smoke = resolve_config(apply_smoke({k: v for k, v in run.items() if k != "tags"}))
            assert smoke["data"]["max_clips"] == 16 and smoke["model"]["channels"] == [8, 8]
    assert cells == set(zip(paper["task"], paper["dataset"], paper["optimizer"])) and len(cells) == 6
