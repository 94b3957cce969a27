"""The feature pipeline: base features, deltas, optional per-utterance CMVN (see s3prl.features).

`compute_features` does one utterance; `compute_features_batch` does a list of them, taking the
base Kaldi fbank of the whole list from `s3prl.features.kaldi.compute_fbank_batch` (FFTs over
groups of utterances) when the config allows it (fbank, dither 0, no energy) and otherwise calling
`compute_features` per utterance. Its output is bit-identical to the per-utterance path's: the
batch shares the framing, FFT and elementwise steps, which are row-wise, and runs the mel matmul
per utterance with the per-utterance path's own shapes (see `compute_fbank_batch`).
"""
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
            eps, unbiased = utterance_cmvn_definition(cfg)
            feats = utterance_cmvn(feats, eps=eps, unbiased=unbiased)
    return feats.to(torch.float32).contiguous()


def utterance_cmvn_definition(cfg: FeatureConfig) -> tuple[float, bool]:
    """(eps, unbiased) of the per-utterance CMVN `compute_features` applies for `cfg`:
    ``(x - mean) / (std + eps)`` over the utterance's frames, per dimension."""
    if cfg.feat_type in ("fbank", "mfcc"):
        # Kaldi-style `audio` sections are read by today's S3PRL extracter, whose CMVN is
        # (x - mean) / (1e-10 + unbiased std): match it so s3prl 0.4.x's *_local hub
        # entries see the same features from our checkpoints (bench/README.md).
        return 1e-10, True
    return 1e-16, False   # Mockingjay 2020 (population std)


def _fbank_batchable(cfg: FeatureConfig) -> bool:
    return cfg.feat_type == "fbank" and cfg.dither == 0.0 and not cfg.use_energy


def _finish(feats: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Deltas and per-utterance CMVN of Kaldi base features, as in `compute_features`."""
    feats = add_deltas(feats, cfg.delta_order, cfg.delta_window)
    if cfg.per_utt_cmvn:
        eps, unbiased = utterance_cmvn_definition(cfg)
        feats = utterance_cmvn(feats, eps=eps, unbiased=unbiased)
    return feats.to(torch.float32).contiguous()


def compute_features_batch(wavs, cfg: FeatureConfig, seeds=None) -> list[torch.Tensor]:
    """A list of (N_i,) waveforms in [-1, 1] -> list of (T_i, feature_dim(cfg)) float32.

    Equal to ``[compute_features(w, cfg, seed=s) for w, s in zip(wavs, seeds)]``; Kaldi fbank
    without dither or energy is computed for the whole list at once (`compute_fbank_batch`).
    `seeds` (one per utterance, default `cfg.seed`) only matter for dither, which takes the
    per-utterance path. Callers bound the list's size (memory grows with its total length).
    """
    from s3prl.features.kaldi import compute_fbank_batch

    if seeds is None:
        seeds = [None] * len(wavs)
    if len(seeds) != len(wavs):
        raise ValueError(f"compute_features_batch: {len(wavs)} waveforms but {len(seeds)} seeds")
    if not _fbank_batchable(cfg):
        return [compute_features(w, cfg, seed=s) for w, s in zip(wavs, seeds)]
    tensors = []
    for w in wavs:
        if isinstance(w, np.ndarray):
            w = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        w = w.to(torch.float32)
        if w.dim() != 1:
            raise ValueError(f"compute_features_batch expects 1-D waveforms, got shape {tuple(w.shape)}")
        tensors.append(w)
    out = [None] * len(tensors)
    with torch.no_grad():
        for i, b in enumerate(compute_fbank_batch(tensors, cfg)):
            if b.shape[0]:
                out[i] = _finish(b, cfg)
    for i, w in enumerate(tensors):
        if out[i] is None:  # shorter than one window: compute_features' empty matrix
            out[i] = compute_features(w, cfg, seed=seeds[i])
    return out
