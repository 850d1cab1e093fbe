"""Spectral front ends computed in torch, so they run on the training device inside the model.

torchaudio is deliberately not used (it pins an old torch); these functions reproduce its
``Spectrogram`` / ``MelSpectrogram`` / ``AmplitudeToDB`` defaults: periodic Hann window, centred frames
with reflect padding, one-sided power spectrum (power 2), HTK mel scale, triangular filters without
area normalisation, and ``10 * log10(max(x, 1e-10))`` for decibels.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "LogMelSpectrogram",
    "PowerSpectrogram",
    "hz_to_mel_htk",
    "mel_filterbank",
    "mel_to_hz_htk",
    "power_spectrogram",
    "power_to_db",
]


def power_spectrogram(
    waveform: torch.Tensor,
    n_fft: int = 512,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """Power spectrogram ``|STFT|^2`` of ``waveform`` (..., time) -> (..., n_fft // 2 + 1, frames).

    Frames are centred (reflect padding of ``n_fft // 2`` on both sides) so frame ``t`` is centred on sample
    ``t * hop_length``; the window is a periodic Hann window of ``win_length`` samples (default ``n_fft``),
    zero-padded to ``n_fft``. ``hop_length`` defaults to ``win_length // 2``.
    """
    win_length = n_fft if win_length is None else win_length
    hop_length = win_length // 2 if hop_length is None else hop_length
    if window is None:
        window = torch.hann_window(win_length, periodic=True, device=waveform.device, dtype=waveform.dtype)
    lead = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*lead, power.shape[-2], power.shape[-1])


def power_to_db(power: torch.Tensor, amin: float = 1e-10, top_db: float | None = None) -> torch.Tensor:
    """``10 * log10(max(power, amin))``; with ``top_db`` values more than ``top_db`` below each
    example's maximum are clipped (the per-example maximum is taken over the last two dimensions)."""
    db = 10.0 * torch.log10(torch.clamp(power, min=amin))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def hz_to_mel_htk(freq: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def mel_to_hz_htk(mel: torch.Tensor | float) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel_htk`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int,
    sample_rate: int,
    n_mels: int = 128,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular HTK mel filterbank, shape (n_freqs, n_mels), unnormalised (peak 1).

    The STFT bins are taken at ``linspace(0, sample_rate // 2, n_freqs)`` (torchaudio's convention); the
    ``n_mels + 2`` band edges are equally spaced on the HTK mel scale between ``f_min`` and ``f_max``
    (default Nyquist). Filter ``m`` rises linearly from edge ``m`` to edge ``m + 1`` and falls to edge ``m + 2``.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max:
        raise ValueError(f"mel_filterbank: need 0 <= f_min < f_max, got f_min={f_min}, f_max={f_max}")
    # float64 for the edges: at 128+ bands the float32 rounding of the mel inversion visibly moves edges.
    bins = torch.linspace(0.0, float(sample_rate // 2), n_freqs, dtype=torch.float64)
    edges = mel_to_hz_htk(torch.linspace(float(hz_to_mel_htk(f_min)), float(hz_to_mel_htk(f_max)), n_mels + 2,
                                         dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins[:, None]) / (upper - centre)[None, :]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class PowerSpectrogram(nn.Module):
    """Module wrapper of :func:`power_spectrogram`; the window is a buffer so it follows ``.to(device)``."""

    def __init__(self, n_fft: int = 512, hop_length: int | None = None, win_length: int | None = None):
        super().__init__()
        self.n_fft = int(n_fft)
        self.win_length = self.n_fft if win_length is None else int(win_length)
        self.hop_length = self.win_length // 2 if hop_length is None else int(hop_length)
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length must be in [1, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length <= 0:
            raise ValueError(f"hop_length must be positive, got {self.hop_length}")
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True), persistent=False)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Number of frames produced for an input of ``n_samples`` samples (centred framing)."""
        return n_samples // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        # Always fp32: under bf16/fp16 autocast the power spectrum's dynamic range would be destroyed.
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return power_spectrogram(waveform.float(), self.n_fft, self.hop_length, self.win_length,
                                     self.window.float())


class LogMelSpectrogram(nn.Module):
    """Log-mel spectrogram in dB: (batch, time) -> (batch, n_mels, frames)."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop_length: int | None = None,
        n_mels: int = 128,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = None,
    ):
        super().__init__()
        self.spectrogram = PowerSpectrogram(n_fft, hop_length)
        self.top_db = top_db
        self.register_buffer(
            "fbank", mel_filterbank(self.spectrogram.n_freqs, sample_rate, n_mels, f_min, f_max), persistent=False
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = self.spectrogram(waveform)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            mel = torch.matmul(power.transpose(-2, -1), self.fbank.float()).transpose(-2, -1)
            return power_to_db(mel, top_db=self.top_db)
