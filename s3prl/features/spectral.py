"""Mockingjay 2020 librosa-style spectral features, in torch (no librosa): mel160 and linear1025.

Follows the 2020 S3PRL preprocessing (github.com/s3prl/s3prl @ b72a2cd9, ``utility/audio.py``),
audio in [-1, 1] at 16 kHz:

- pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]`` (``y[0] = x[0]``);
- STFT as ``librosa.stft``: n_fft 2048, periodic Hann window of 800 samples (50 ms) centred in
  the FFT frame, hop 200 (12.5 ms), ``center=True`` with reflection padding, so
  T = 1 + N // hop;
- `mel_spectrogram`: magnitude through 80 Slaney-normalised Slaney-scale mel filters (librosa's
  default filterbank, fmin 0, fmax Nyquist), ``log(x + 1e-6)``;
- `linear_spectrogram` (the 1025-dim Mockingjay LARGE target):
  ``S = 20 log10(max(1e-5, |X|)) - 20``, then ``clip((S + 100) / 100, 0, 1)``.

Deltas (librosa width 9) and per-utterance CMVN are added by `s3prl.features.compute_features`.
"""
from __future__ import annotations

import torch
import torchaudio.functional as AF

from s3prl.features.config import FeatureConfig

REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0


def preemphasis(wav: torch.Tensor, coef: float) -> torch.Tensor:
    if coef == 0.0 or wav.shape[0] == 0:
        return wav
    out = wav.clone()
    out[1:] = wav[1:] - coef * wav[:-1]
    return out


def stft_magnitude(wav: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """|STFT| as (T, n_fft // 2 + 1), T = 1 + N // hop."""
    win, hop = cfg.window_samples(), cfg.shift_samples()
    x = preemphasis(wav.to(torch.float32), cfg.preemphasis_coefficient)
    pad = cfg.n_fft // 2
    # Reflection needs more samples than the pad; very short input is zero padded instead.
    mode = "reflect" if x.shape[0] > pad else "constant"
    x = torch.nn.functional.pad(x[None, None, :], (pad, pad), mode=mode)[0, 0]
    spec = torch.stft(x, n_fft=cfg.n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win, periodic=True), center=False, return_complex=True)
    return spec.abs().T.contiguous()


def mel_filters(cfg: FeatureConfig) -> torch.Tensor:
    """(n_fft//2+1, num_mel_bins) Slaney mel filterbank, as librosa.filters.mel defaults."""
    high = cfg.sample_rate / 2 + cfg.high_freq if cfg.high_freq <= 0 else cfg.high_freq
    return AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.low_freq, high, cfg.num_mel_bins, cfg.sample_rate,
                              norm="slaney", mel_scale="slaney")


def mel_spectrogram(wav: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(T, num_mel_bins) log mel magnitude."""
    mag = stft_magnitude(wav, cfg)
    return torch.log(mag @ mel_filters(cfg) + 1e-6)


def linear_spectrogram(wav: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """(T, n_fft//2+1) normalised dB magnitude in [0, 1]."""
    mag = stft_magnitude(wav, cfg)
    db = 20.0 * torch.log10(torch.clamp(mag, min=1e-5)) - REF_LEVEL_DB
    return torch.clamp((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB, 0.0, 1.0)
