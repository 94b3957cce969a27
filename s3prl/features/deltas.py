"""Delta features: Kaldi's ``add-deltas`` and librosa's Savitzky-Golay ``feature.delta``.

Kaldi (src/feat/feature-functions.cc, DeltaFeatures): order-i coefficients are the order-(i-1)
regression filter ``sum_j j * x[t+j] / (2 * sum_{j=1..N} j^2)`` (window N, default 2) convolved
into one compound filter applied to the *original* features, with frame indices clamped at the
edges (edge frames replicated). Output = [x, d1, d2, ...] concatenated on the feature axis, so 13
MFCCs with order 2 give 39 dims (kaldi-asr/kaldi, src/featbin/add-deltas.cc).

librosa (used by the 2020 Mockingjay preprocessing for mel160): ``librosa.feature.delta(width=9,
order=1, mode='interp')`` = ``scipy.signal.savgol_filter(deriv=1, polyorder=1)``. Interior frames
equal Kaldi's order-1 delta with window 4; the first and last 4 frames take the slope of a line
fitted to the first/last 9 frames. Utterances shorter than the width fall back to replicated
edges (librosa refuses them).
"""
from __future__ import annotations

import numpy as np
import torch


def kaldi_delta_scales(order: int, window: int) -> list[np.ndarray]:
    """The filters Kaldi uses: scales[i] has length 2*i*window + 1 (scales[0] = [1])."""
    if order < 0 or window < 1:
        raise ValueError(f"delta order must be >= 0 and window >= 1 (got {order}, {window})")
    scales = [np.array([1.0])]
    normalizer = float(sum(j * j for j in range(-window, window + 1)))
    for _ in range(order):
        prev = scales[-1]
        prev_off = (len(prev) - 1) // 2
        cur_off = prev_off + window
        cur = np.zeros(2 * cur_off + 1)
        for j in range(-window, window + 1):
            for k in range(-prev_off, prev_off + 1):
                cur[j + k + cur_off] += j * prev[k + prev_off]
        scales.append(cur / normalizer)
    return scales


def add_deltas(feats: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """Kaldi ``add-deltas --delta-order=ORDER --delta-window=WINDOW``.

    Args:
        feats: (T, D) features.
    Returns:
        (T, D * (order + 1)) in the dtype of `feats`.
    """
    if order == 0:
        return feats
    T, D = feats.shape
    if T == 0:
        return feats.new_zeros((0, D * (order + 1)))
    # one utterance = a batch of one; the filters run in float64 as Kaldi's do in double
    d = add_deltas_batch(feats.to(torch.float64)[None], torch.tensor([T]), order, window)[0, :, D:]
    return torch.cat([feats, d.to(feats.dtype)], dim=1)


def add_deltas_batch(feats: torch.Tensor, lengths: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """`add_deltas` of every utterance of a zero-padded batch at once, differentiable (the
    deltas of an upstream's states computed inside a model, s3prl.downstream.task.StateTransform).

    Args:
        feats: (B, T, D); utterance b's frames are feats[b, :lengths[b]].
        lengths: (B,) valid frames.
    Returns:
        (B, T, D * (order + 1)), equal to `add_deltas` of each utterance on its valid frames (edge
        frames of the utterance, not of the batch, are replicated) and zero on padding.
    """
    if order == 0:
        return feats
    B, T, D = feats.shape
    lengths = lengths.to(feats.device).long()
    if T == 0:
        return feats.new_zeros((B, 0, D * (order + 1)))
    last = (lengths - 1).clamp(min=0)[:, None, None]                    # (B, 1, 1)
    valid = (torch.arange(T, device=feats.device)[None, :] < lengths[:, None]).to(feats.dtype)[..., None]
    scales = kaldi_delta_scales(order, window)
    outs = [feats]
    for i in range(1, order + 1):
        sc = torch.as_tensor(scales[i], dtype=feats.dtype, device=feats.device)
        off = (len(sc) - 1) // 2
        t = torch.arange(T, device=feats.device)[None, :, None] + torch.arange(-off, off + 1, device=feats.device)[None, None, :]
        idx = torch.minimum(t.clamp(min=0), last)                       # (B, T, K) clamped per utterance
        g = torch.gather(feats, 1, idx.reshape(B, -1, 1).expand(-1, -1, D)).reshape(B, T, len(sc), D)
        outs.append((g * sc[None, None, :, None]).sum(dim=2) * valid)
    return torch.cat(outs, dim=2)


def librosa_delta(feats: torch.Tensor, width: int = 9) -> torch.Tensor:
    """First-order delta as ``librosa.feature.delta(width=9, order=1, mode='interp')`` on (T, D)."""
    from scipy.signal import savgol_filter

    T = feats.shape[0]
    if T == 0:
        return feats.clone()
    x = feats.detach().to(torch.float64).numpy()
    if T >= width:
        d = savgol_filter(x, width, polyorder=1, deriv=1, axis=0, mode="interp")
    else:
        d = savgol_filter(x, width, polyorder=1, deriv=1, axis=0, mode="nearest")
    return torch.from_numpy(np.ascontiguousarray(d)).to(feats.dtype)
