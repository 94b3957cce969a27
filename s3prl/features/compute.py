"""The feature pipeline: base features, deltas, optional per-utterance CMVN (see s3prl.features)."""
from __future__ import annotations

import numpy as np
import torch

from s3prl.features.cmvn import utterance_cmvn
from s3prl.features.config import FeatureConfig, feature_dim
from s3prl.features.deltas import add_deltas, librosa_delta


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
            if cfg.feat_type in ("fbank", "mfcc"):
                # Kaldi-style `audio` sections are read by today's S3PRL extracter, whose CMVN is
                # (x - mean) / (1e-10 + unbiased std): match it so s3prl 0.4.x's *_local hub
                # entries see the same features from our checkpoints (bench/README.md).
                feats = utterance_cmvn(feats, eps=1e-10, unbiased=True)
            else:
                feats = utterance_cmvn(feats)
    return feats.to(torch.float32).contiguous()
