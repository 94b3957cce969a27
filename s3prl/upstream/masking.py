"""Input alteration for masked reconstruction pre-training (Mockingjay / TERA / AALBERT).

Follows S3PRL's 2020 `transformer/mam.py` (github.com/s3prl/s3prl @ b72a2cd9) and the TERA
paper (arXiv 2007.06028, §3): on the stacked, zero-padded batch

1. time alteration, per utterance: span length C ~ U{min..max}; round(len * p / C) span starts
   drawn without replacement from [0, len - C - 1] (spans may overlap), or from a bucket grid of
   step round(C * bucket_ratio) with a random offset when overlap is off; ONE dice per utterance:
   80 % zero the spans, 10 % replace them with other random spans of the same utterance, 10 % keep
   them; `mask_label` covers every dim of the chosen frames in all three cases;
2. frequency alteration, per utterance: a band of width ~ U{0..mask_frequency} (stacked dims) at a
   uniform start is zeroed on all frames and added to `mask_label` (on the valid frames only: a
   loss on padding frames would be meaningless; the 2020 code also labelled padding);
3. magnitude alteration: with probability `noise_proportion`, decided once per batch, Gaussian
   noise (std `noise_std`, 0.2) is added to every element; it is NOT part of `mask_label`.

Utterances that received no mask are reported in `keep` so the caller can drop them. Every random
draw comes from the `torch.Generator` passed in, so a seeded generator reproduces the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from s3prl.upstream.config import MaskConfig

__all__ = ["MaskConfig", "AlterResult", "alter", "masked_l1"]


@dataclass
class AlterResult:
    inputs: torch.Tensor       # (B, T, D) altered input
    mask_label: torch.Tensor   # (B, T, D) bool: elements the loss is computed on
    keep: torch.Tensor         # (B,) bool: utterances with at least one masked element
    noise_applied: bool        # whether magnitude noise was added to this batch
    time_mask: torch.Tensor    # (B, T) bool: frames chosen by the time alteration


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=g).item())


def _span_starts(length: int, c: int, n: int, cfg: MaskConfig, g: torch.Generator) -> torch.Tensor:
    valid_max = max(length - c - 1, 0)  # starts lie in [0, valid_max]
    if cfg.mask_allow_overlap:
        return torch.randperm(valid_max + 1, generator=g)[:n]
    bucket = max(int(round(c * cfg.mask_bucket_ratio)), 1)
    offset = _randint(0, min(bucket, valid_max), g)
    grid = torch.arange(offset, valid_max + 1, bucket)
    return grid[torch.randperm(len(grid), generator=g)[:n]]


def _intervals(starts: torch.Tensor, c: int) -> torch.Tensor:
    return (starts[:, None] + torch.arange(c)[None, :]).reshape(-1)


def alter(stacked: torch.Tensor, lengths: torch.Tensor, cfg: MaskConfig, generator: torch.Generator) -> AlterResult:
    """Alter a zero-padded stacked batch.

    Args:
        stacked: (B, T, D) clean input (not modified).
        lengths: (B,) valid lengths in stacked frames.
        cfg: the alteration settings.
        generator: a CPU torch.Generator; the only source of randomness.
    Returns: AlterResult (inputs, mask_label, keep, noise_applied, time_mask).
    """
    b, t, d = stacked.shape
    x = stacked.clone()
    label = torch.zeros(b, t, d, dtype=torch.bool, device=stacked.device)
    time_mask = torch.zeros(b, t, dtype=torch.bool, device=stacked.device)
    lens = [int(v) for v in lengths.tolist()]
    for i, length in enumerate(lens):
        length = min(length, t)
        if length <= 0:
            continue
        if cfg.mask_proportion > 0:
            c = _randint(cfg.mask_consecutive_min, cfg.mask_consecutive_max, generator)
            n = int(round(length * cfg.mask_proportion / c))
            if n > 0:
                starts = _span_starts(length, c, n, cfg, generator)
                idx = _intervals(starts, c).clamp(max=length - 1).to(stacked.device)
                dice = float(torch.rand(1, generator=generator).item())
                if dice < 0.8:
                    x[i, idx] = 0
                elif dice < 0.9:
                    rand_starts = torch.randperm(max(length - c - 1, 0) + 1, generator=generator)[: len(starts)]
                    ridx = _intervals(rand_starts, c).clamp(max=length - 1).to(stacked.device)
                    x[i, idx] = stacked[i, ridx]
                time_mask[i, idx] = True
                label[i, idx] = True
        if cfg.mask_frequency > 0:
            width = _randint(0, min(cfg.mask_frequency, d), generator)
            start = _randint(0, d - width, generator)
            if width > 0:
                x[i, :, start:start + width] = 0
                label[i, :length, start:start + width] = True
    noise_applied = False
    if cfg.noise_proportion > 0 and float(torch.rand(1, generator=generator).item()) < cfg.noise_proportion:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * cfg.noise_std
        x = x + noise.to(x.device)
        noise_applied = True
    keep = label.flatten(1).any(dim=1)
    return AlterResult(inputs=x, mask_label=label, keep=keep, noise_applied=noise_applied, time_mask=time_mask)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask_label: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the elements where `mask_label` is True (nn.L1Loss on the selection)."""
    if pred.shape != target.shape or pred.shape != mask_label.shape:
        raise ValueError(f"shape mismatch: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"mask {tuple(mask_label.shape)}")
    if not bool(mask_label.any()):
        raise ValueError("masked_l1: no masked element in the batch")
    return F.l1_loss(pred[mask_label], target[mask_label])
