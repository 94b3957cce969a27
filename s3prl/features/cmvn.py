"""Cepstral mean and variance normalisation in Kaldi's layout (src/transform/cmvn.cc).

Stats are a float64 matrix of shape (2, D+1): row 0 holds the per-dimension sums with the frame
count in the last column, row 1 the sums of squares with 0 in the last column (kaldi-asr/kaldi,
src/transform/cmvn.cc). `apply_cmvn` follows ``apply-cmvn``: means are normalised by default,
variances only on request (floored at 1e-20), and a count below 1 is an error. `utterance_cmvn` is
the Mockingjay 2020 per-utterance standardisation ``(x - mean) / (std + 1e-16)``
(population std); with ``unbiased=True, eps=1e-10`` it is today's S3PRL Kaldi-style extracter
(`upstream/baseline/extracter.py` CMVN: ``x.std()`` is the unbiased estimate).
"""
from __future__ import annotations

from typing import Iterable

import sys

import numpy as np

from s3prl.errors import UserError


def _is_tensor(x) -> bool:
    # torch is imported lazily: without it in sys.modules nothing can be a tensor.
    return "torch" in sys.modules and isinstance(x, sys.modules["torch"].Tensor)


def _as_numpy(feats) -> np.ndarray:
    if _is_tensor(feats):
        return feats.detach().cpu().numpy()
    return np.asarray(feats)


def init_stats(dim: int) -> np.ndarray:
    """Empty (2, dim+1) float64 stats."""
    return np.zeros((2, dim + 1), dtype=np.float64)


def accumulate(stats: np.ndarray, feats, weight: float = 1.0) -> np.ndarray:
    """Add (T, D) `feats` to `stats` (2, D+1) in place and return it."""
    x = _as_numpy(feats).astype(np.float64, copy=False)
    if x.ndim != 2 or x.shape[1] + 1 != stats.shape[1]:
        raise UserError(f"CMVN: features of shape {tuple(x.shape)} do not match stats of dim {stats.shape[1] - 1}")
    stats[0, :-1] += weight * x.sum(axis=0)
    stats[1, :-1] += weight * (x * x).sum(axis=0)
    stats[0, -1] += weight * x.shape[0]
    return stats


def cmvn_stats(feats_iter: Iterable) -> np.ndarray:
    """Kaldi ``compute-cmvn-stats`` over an iterable of (T, D) matrices -> (2, D+1) float64."""
    stats = None
    for feats in feats_iter:
        x = _as_numpy(feats)
        if stats is None:
            stats = init_stats(x.shape[1])
        accumulate(stats, x)
    if stats is None:
        raise UserError("CMVN: no features to accumulate")
    return stats


def apply_cmvn(feats, stats: np.ndarray, norm_vars: bool = False, norm_means: bool = True):
    """Kaldi ``apply-cmvn``: (T, D) features normalised with (2, D+1) stats.

    Returns the same type as `feats` (torch.Tensor or np.ndarray), float32 for float32 input.
    """
    stats = np.asarray(stats, dtype=np.float64)
    dim = stats.shape[1] - 1
    count = stats[0, dim]
    if count < 1.0:
        raise UserError(f"CMVN: insufficient sample count {count} in stats")
    is_torch = _is_tensor(feats)
    x = _as_numpy(feats)
    if x.shape[1] != dim:
        raise UserError(f"CMVN: feature dim {x.shape[1]} does not match stats dim {dim}")
    mean = stats[0, :dim] / count
    if norm_vars:
        var = stats[1, :dim] / count - mean * mean
        var = np.maximum(var, 1e-20)
        scale = 1.0 / np.sqrt(var)
    else:
        scale = np.ones(dim)
    if norm_vars and not norm_means:
        raise UserError("CMVN: cannot normalise variances without means (as apply-cmvn)")
    if x.dtype == np.float32:
        # As Kaldi's ApplyCmvn: offsets and scales from the double stats, applied to the float
        # features in float (x * scale + (-mean * scale)); 13x faster than a float64 round trip,
        # which made reading dumped features the downstream bottleneck (bench/README.md §6).
        out = x.copy()
        if norm_vars:
            out *= scale.astype(np.float32)
        if norm_means:
            out += (-mean * scale).astype(np.float32)
        return sys.modules["torch"].from_numpy(out) if is_torch else out
    out = (x.astype(np.float64) - mean) * scale if norm_means else x.copy()
    out = out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    return sys.modules["torch"].from_numpy(out) if is_torch else out


def utterance_cmvn(feats, eps: float = 1e-16, unbiased: bool = False):
    """Mockingjay 2020 per-utterance CMVN on (T, D): each dim minus its mean over time, divided
    by its (population, or with `unbiased` the T-1) std + eps."""
    if feats.shape[0] == 0:
        return feats
    mean = feats.mean(dim=0, keepdim=True)
    std = feats.std(dim=0, unbiased=unbiased and feats.shape[0] > 1, keepdim=True)
    return (feats - mean) / (std + eps)


def utterance_cmvn_batch(feats, lengths, eps: float = 1e-16):
    """`utterance_cmvn` (population std) of every utterance of a zero-padded (B, T, D) tensor
    batch, each over its own valid frames (lengths (B,)); differentiable, zero on padding (the
    per-utterance CMVN of an upstream's states inside a model, s3prl.downstream.task.StateTransform)."""
    import torch

    lengths = torch.as_tensor(lengths).to(feats.device)
    valid = (torch.arange(feats.shape[1], device=feats.device)[None, :] < lengths[:, None]).to(feats.dtype)[..., None]
    n = lengths.clamp(min=1).to(feats.dtype)[:, None, None]
    mean = (feats * valid).sum(dim=1, keepdim=True) / n
    centred = (feats - mean) * valid
    # clamped: a constant dim (std 0) must not give an infinite gradient through sqrt
    std = ((centred * centred).sum(dim=1, keepdim=True) / n).clamp_min(1e-20).sqrt()
    return centred / (std + eps)
