"""Acoustic features: Kaldi fbank/MFCC, Mockingjay mel160/linear1025, deltas and CMVN.

`compute_features(wav, cfg)` turns (N,) float samples in [-1, 1] into (T, D) float32 features:
base features (s3prl.features.kaldi or s3prl.features.spectral), then deltas (Kaldi add-deltas
for fbank/mfcc, librosa's delta for mel160), then the optional per-utterance CMVN.
`num_frames(N, cfg)` predicts T without computing anything and `feature_dim(cfg)` gives D.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from s3prl.features.cmvn import accumulate, apply_cmvn, cmvn_stats, init_stats, utterance_cmvn
from s3prl.features.config import FeatureConfig
from s3prl.features.deltas import add_deltas, librosa_delta
from s3prl.features.kaldi import compute_fbank_batch

__all__ = [
    "FeatureConfig", "compute_features", "compute_fbank_batch", "feature_dim", "num_frames",
    "frame_shift_seconds", "cmvn_stats", "accumulate", "apply_cmvn", "init_stats", "utterance_cmvn",
    "add_deltas", "utterance_seed",
]


def base_dim(cfg: FeatureConfig) -> int:
    """Dimension before deltas."""
    if cfg.feat_type == "fbank":
        return cfg.num_mel_bins + int(cfg.use_energy)
    if cfg.feat_type == "mfcc":
        return cfg.num_ceps
    if cfg.feat_type == "mel160":
        return cfg.num_mel_bins
    return cfg.n_fft // 2 + 1


def feature_dim(cfg: FeatureConfig) -> int:
    """D of `compute_features` (fbank 80, mfcc 39, mel160 160, linear1025 1025 by default)."""
    return base_dim(cfg) * (cfg.delta_order + 1)


def num_frames(num_samples: int, cfg: FeatureConfig) -> int:
    """T of `compute_features` for `num_samples` samples.

    Kaldi types: 0 if shorter than a window, else 1 + (N - L) // S with snip-edges and
    (N + S // 2) // S without. mel160/linear1025 (centred STFT): 1 + N // hop.
    """
    if num_samples <= 0:
        return 0
    L, S = cfg.window_samples(), cfg.shift_samples()
    if cfg.feat_type in ("mel160", "linear1025"):
        return 1 + num_samples // S
    if num_samples < L:
        return 0
    if cfg.snip_edges:
        return 1 + (num_samples - L) // S
    return (num_samples + S // 2) // S


def frame_shift_seconds(cfg: FeatureConfig) -> float:
    return cfg.frame_shift / 1000.0


def utterance_seed(cfg: FeatureConfig, utt_id: str) -> int:
    """Seed for an utterance's dither noise: the config seed mixed with a hash of the id."""
    return (cfg.seed * 1000003 + zlib.crc32(utt_id.encode())) % (2**63)


def compute_features(wav, cfg: FeatureConfig, seed: int | None = None) -> torch.Tensor:
    """(N,) samples in [-1, 1] (torch or numpy) -> (T, feature_dim(cfg)) float32.

    `seed` seeds the dither noise (default `cfg.seed`); it is ignored when dither is 0.
    """
    from s3prl.features import kaldi, spectral

    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    wav = wav.to(torch.float32)
    if wav.dim() != 1:
        raise ValueError(f"compute_features expects a 1-D waveform, got shape {tuple(wav.shape)}")
    if wav.shape[0] == 0:
        return torch.zeros((0, feature_dim(cfg)))
    with torch.no_grad():
        if cfg.feat_type in ("fbank", "mfcc"):
            fn = kaldi.fbank if cfg.feat_type == "fbank" else kaldi.mfcc
            if cfg.dither != 0.0:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(cfg.seed if seed is None else seed)
                    feats = fn(wav, cfg)
            else:
                feats = fn(wav, cfg)
            feats = add_deltas(feats, cfg.delta_order, cfg.delta_window)
        elif cfg.feat_type == "mel160":
            feats = spectral.mel_spectrogram(wav, cfg)
            parts = [feats]
            for _ in range(cfg.delta_order):
                parts.append(librosa_delta(parts[-1], width=2 * cfg.delta_window + 1))
            feats = torch.cat(parts, dim=1)
        else:
            feats = spectral.linear_spectrogram(wav, cfg)
            feats = add_deltas(feats, cfg.delta_order, cfg.delta_window)
        if cfg.per_utt_cmvn:
            feats = utterance_cmvn(feats)
    return feats.to(torch.float32).contiguous()
