"""Acoustic features: Kaldi fbank/MFCC, Mockingjay mel160/linear1025, deltas and CMVN.

`compute_features(wav, cfg)` turns (N,) float samples in [-1, 1] into (T, D) float32 features:
base features (s3prl.features.kaldi or s3prl.features.spectral), then deltas (Kaldi add-deltas
for fbank/mfcc, librosa's delta for mel160), then the optional per-utterance CMVN.
`compute_features_batch(wavs, cfg)` does a list of utterances (batched fbank when the config
allows it, same output). `num_frames(N, cfg)` predicts T without computing anything and `feature_dim(cfg)` gives D.

Names are imported lazily, so `FeatureConfig`, `feature_dim` and `num_frames` do not import torch
(shell verbs that only read configs start fast).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FeatureConfig": "config", "feature_dim": "config", "num_frames": "config", "base_dim": "config",
    "frame_shift_seconds": "config", "utterance_seed": "config",
    "compute_features": "compute", "compute_features_batch": "compute",
    "compute_fbank_batch": "kaldi",
    "cmvn_stats": "cmvn", "accumulate": "cmvn", "apply_cmvn": "cmvn", "init_stats": "cmvn",
    "utterance_cmvn": "cmvn",
    "add_deltas": "deltas", "librosa_delta": "deltas",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"s3prl.features.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 's3prl.features' has no attribute '{name}'")


def __dir__():
    return __all__
