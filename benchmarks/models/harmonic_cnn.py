"""Harmonic CNN (Won, Chun, Nieto, Serra: "Data-driven harmonic filters for audio representation
learning", ICASSP 2020), written from the paper's description.

Front end: a power spectrogram is passed through triangular band-pass filters whose centre frequencies are
the harmonics ``h * f_c`` (h = 1..n_harmonic) of a set of fundamental frequencies ``f_c`` spaced
``1 / semitone_scale`` semitones apart from C1 upwards. The bandwidth follows the equivalent rectangular
bandwidth ``BW(f) = (alpha * f + beta) / Q`` with alpha = 0.1079, beta = 24.7; ``Q`` (and optionally alpha,
beta, and the centre frequencies) is learned. The output is stacked as a (harmonic x f_c x time) tensor so
that a 2-D CNN sees the harmonics of one fundamental as channels at the same position.

Back end: conv-BN-ReLU blocks with max pooling, every second block residual, global max pooling, and a
two-layer classifier. The whole front end runs in torch on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.data.audio_frontend import LogMelSpectrogram, PowerSpectrogram, power_to_db

__all__ = [
    "ERB_ALPHA",
    "ERB_BETA",
    "HarmonicCNN",
    "HarmonicFilterbank",
    "default_high_midi",
    "harmonic_centre_frequencies",
    "hz_to_midi",
    "midi_to_hz",
]

#: slope and intercept of the equivalent rectangular bandwidth (Glasberg & Moore), used by the paper
ERB_ALPHA = 0.1079
ERB_BETA = 24.7
#: MIDI number of C1, the paper's lowest fundamental
MIDI_C1 = 24


def hz_to_midi(freq: float) -> float:
    """MIDI note number of ``freq`` Hz (A4 = 440 Hz = 69), not rounded."""
    return 12.0 * math.log2(freq / 440.0) + 69.0


def midi_to_hz(midi: torch.Tensor | float) -> torch.Tensor:
    """Frequency in Hz of a (fractional) MIDI note number."""
    midi = torch.as_tensor(midi, dtype=torch.float64)
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def default_high_midi(sample_rate: int, n_harmonic: int) -> int:
    """Highest fundamental: the note nearest to ``sample_rate / (2 * n_harmonic)``, so that the top
    fundamental's highest harmonic sits at the Nyquist frequency."""
    return int(round(hz_to_midi(sample_rate / (2.0 * n_harmonic))))


def harmonic_centre_frequencies(
    sample_rate: int,
    n_harmonic: int,
    semitone_scale: int,
    low_midi: float = MIDI_C1,
    high_midi: float | None = None,
) -> torch.Tensor:
    """Centre frequencies, shape (n_harmonic, n_bands): row ``h`` is ``(h + 1) * f_c`` with
    ``f_c = midi_to_hz(low_midi + k / semitone_scale)`` for ``k = 0 .. n_bands - 1`` and
    ``n_bands = (high_midi - low_midi) * semitone_scale`` (the top note itself is excluded)."""
    high_midi = default_high_midi(sample_rate, n_harmonic) if high_midi is None else high_midi
    n_bands = int(round((high_midi - low_midi) * semitone_scale))
    if n_bands <= 0:
        raise ValueError(
            f"no harmonic bands: high_midi={high_midi} must exceed low_midi={low_midi} "
            f"(sample_rate={sample_rate}, n_harmonic={n_harmonic})"
        )
    fundamentals = midi_to_hz(low_midi + torch.arange(n_bands, dtype=torch.float64) / semitone_scale)
    harmonics = torch.arange(1, n_harmonic + 1, dtype=torch.float64)
    return harmonics[:, None] * fundamentals[None, :]


class HarmonicFilterbank(nn.Module):
    """Waveform (batch, time) -> harmonic tensor in dB (batch, n_harmonic, n_bands, frames).

    ``learn_bw``: "only_q" learns the quality factor Q (the paper's default), "full" also learns the ERB
    slope and intercept, "fixed" learns nothing. ``learn_f0`` makes the centre frequencies parameters too.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int | None = None,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        low_midi: float = MIDI_C1,
        high_midi: float | None = None,
        bw_q: float = 1.0,
        learn_bw: str = "only_q",
        learn_f0: bool = False,
    ):
        super().__init__()
        if learn_bw not in ("only_q", "full", "fixed"):
            raise ValueError(f"learn_bw must be one of only_q, full, fixed; got {learn_bw!r}")
        if bw_q <= 0:
            raise ValueError(f"bw_q must be positive, got {bw_q}")
        self.sample_rate = int(sample_rate)
        self.n_harmonic = int(n_harmonic)
        self.spectrogram = PowerSpectrogram(n_fft, hop_length)
        centres = harmonic_centre_frequencies(sample_rate, n_harmonic, semitone_scale, low_midi, high_midi)
        self.n_bands = centres.shape[1]
        centres = centres.reshape(-1).to(torch.float32)
        self.f0 = nn.Parameter(centres) if learn_f0 else nn.Buffer(centres)

        def scalar(value: float, learn: bool) -> torch.Tensor:
            t = torch.tensor([float(value)])
            return nn.Parameter(t) if learn else nn.Buffer(t)

        self.bw_q = scalar(bw_q, learn_bw in ("only_q", "full"))
        self.bw_alpha = scalar(ERB_ALPHA, learn_bw == "full")
        self.bw_beta = scalar(ERB_BETA, learn_bw == "full")
        self.register_buffer(
            "bin_freqs",
            torch.linspace(0.0, float(self.sample_rate // 2), self.spectrogram.n_freqs),
            persistent=False,
        )

    def bandwidths(self) -> torch.Tensor:
        """Bandwidth (Hz, full width of the triangle's base) of every filter, flattened like ``f0``."""
        bw = (self.bw_alpha * self.f0 + self.bw_beta) / self.bw_q
        # A learned Q crossing zero would flip every triangle into an all-pass; keep the width positive.
        return bw.clamp(min=1e-3)

    def filterbank(self) -> torch.Tensor:
        """Filter weights, shape (n_freqs, n_harmonic * n_bands): ``max(0, 1 - 2 |f - f_c| / BW(f_c))``."""
        distance = (self.bin_freqs[:, None] - self.f0[None, :]).abs()
        return torch.relu(1.0 - 2.0 * distance / self.bandwidths()[None, :])

    def n_frames(self, n_samples: int) -> int:
        return self.spectrogram.n_frames(n_samples)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = self.spectrogram(waveform)  # (batch, n_freqs, frames), fp32
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            bands = torch.matmul(power.transpose(1, 2), self.filterbank().float()).transpose(1, 2)
            batch, _, frames = bands.shape
            return power_to_db(bands.reshape(batch, self.n_harmonic, self.n_bands, frames))


class _ConvBlock(nn.Module):
    """3x3 conv (no bias: BN follows) -> BN -> ReLU -> max pool."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pool(F.relu(self.bn(self.conv(x))), self.pool)


class _ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity, ReLU, then max pool (channel count unchanged)."""

    def __init__(self, channels: int, pool: tuple[int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return _pool(F.relu(out + x), self.pool)


def _pool(x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    # Shrink the kernel on an axis that is already smaller than it, so one architecture serves 1-s keyword
    # clips and 5-s music excerpts alike (the head max-pools whatever remains).
    kernel = (min(pool[0], x.shape[-2]), min(pool[1], x.shape[-1]))
    return x if kernel == (1, 1) else F.max_pool2d(x, kernel)


def _as_pool(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"a pooling entry must be an int or [freq, time], got {value!r}")
    return pair  # type: ignore[return-value]


class HarmonicCNN(nn.Module):
    """Harmonic filterbank (or log-mel) front end + 2-D CNN; returns logits (batch, n_classes).

    ``channels[i]`` and ``pooling[i]`` describe block ``i``; a block whose index is odd and whose width equals
    the previous one's is residual (the paper's alternation of plain and residual blocks).
    """

    def __init__(
        self,
        n_classes: int,
        sample_rate: int = 16000,
        front_end: str = "harmonic",
        n_fft: int = 512,
        hop_length: int | None = None,
        n_harmonic: int = 6,
        semitone_scale: int = 2,
        low_midi: float = MIDI_C1,
        high_midi: float | None = None,
        bw_q: float = 1.0,
        learn_bw: str = "only_q",
        learn_f0: bool = False,
        n_mels: int = 128,
        channels: Sequence[int] = (128, 128, 256, 256, 256, 256, 256),
        pooling: Sequence[int | Sequence[int]] = (2, 2, 2, 2, 2, (2, 3), (2, 3)),
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(channels) == 0 or len(channels) != len(pooling):
            raise ValueError(
                f"channels ({len(channels)} entries) and pooling ({len(pooling)} entries) must be non-empty "
                "and of equal length"
            )
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        if front_end == "harmonic":
            self.front_end: nn.Module = HarmonicFilterbank(
                sample_rate, n_fft, hop_length, n_harmonic, semitone_scale, low_midi, high_midi, bw_q, learn_bw,
                learn_f0,
            )
            in_channels = n_harmonic
        elif front_end == "mel":
            self.front_end = LogMelSpectrogram(sample_rate, n_fft, hop_length, n_mels)
            in_channels = 1
        else:
            raise ValueError(f"front_end must be 'harmonic' or 'mel', got {front_end!r}")
        self.input_bn = nn.BatchNorm2d(in_channels)
        blocks: list[nn.Module] = []
        for i, (width, pool) in enumerate(zip(channels, pooling)):
            width, pool_pair = int(width), _as_pool(pool)
            if i % 2 == 1 and width == in_channels:
                blocks.append(_ResidualBlock(width, pool_pair))
            else:
                blocks.append(_ConvBlock(in_channels, width, pool_pair))
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(in_channels, in_channels)
        self.fc_bn = nn.BatchNorm1d(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(in_channels, n_classes)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Front-end output as the CNN's input: (batch, channels, freq, frames)."""
        x = self.front_end(waveform)
        return x if x.ndim == 4 else x.unsqueeze(1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.input_bn(self.features(waveform))
        x = self.blocks(x)
        x = x.amax(dim=(-2, -1))
        x = self.dropout(F.relu(self.fc_bn(self.fc1(x))))
        return self.fc2(x)
