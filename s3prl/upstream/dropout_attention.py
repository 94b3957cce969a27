"""Dropout masks and attention with dropout for CPU training, computed block by block.

`dropout_keep_mask` draws an inverted-dropout mask from 16-bit slices of 64-bit random integers:
one generator call per 4 elements instead of torch's one Bernoulli draw per element (on CPU a
single thread draws them all).

`blocked_dropout_attention` is softmax(q k^T + bias) -> dropout(p) -> @ v (BERT's attention,
Devlin et al. 2019; the dropout on the probabilities as in Vaswani et al. 2017 section 5.4 and
S3PRL's `transformer/model.py`) for training on the CPU, where torch's fused
`scaled_dot_product_attention` kernel refuses dropout and the math path materialises the
(B x heads, T, T) scores, probabilities, mask and their gradients: at T = 1500 each of those is
hundreds of MB, and a dozen memory-bound passes over them dominate a bf16 step. Here the T x T
work runs over blocks of (heads, 128 query rows) that stay in the core's L2 cache, the way
FlashAttention tiles it (Dao et al. 2022, arXiv 2205.14135, Algorithms 1 and 2): the backward pass
recomputes each block's probabilities from q and k instead of keeping them, and takes the row sums
it needs from the output (`delta = rowsum(dO * O)`, ibid. eq. in Appendix B.2). What autograd keeps
is q, k, v, the output and the mask as 0/1 bfloat16 (2 bytes per probability instead of the
4 + 1 of the float32 probabilities and the boolean mask: at the base recipe's 12 x 1500-frame
batches that is 1 GB less per layer).

The mask is exactly `dropout_keep_mask`'s for the same generator state (the same single
`randint` call, the same threshold), so a step draws the same random numbers as an unblocked
implementation, and same seed gives same result. Scores and products run in the dtype of q, k, v
(bfloat16 under `runner.amp: bf16`, where they reach the matrix units); the softmax and every
gradient sum run in float32 (float64 for float64 input, which the gradient test uses).
"""
from __future__ import annotations

import math

import torch

__all__ = ["DROPOUT_LEVELS", "dropout_keep_mask", "blocked_dropout_attention"]

DROPOUT_LEVELS = 65536   # dropout_keep_mask's resolution: p is rounded to a multiple of 1/65536
BLOCK_ROWS = 128         # query rows per block
BLOCK_ELEMENTS = 1 << 19 # probabilities per block: 2 MB of float32, one core's L2 on the Xeons we use


def _level(p: float) -> int:
    return min(max(int(round(p * DROPOUT_LEVELS)), 1), DROPOUT_LEVELS - 1)


def _random16(n: int, device) -> torch.Tensor:
    """n int16 draws: the 16-bit slices of (n + 3) // 4 random int64 from torch's generator."""
    r = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return r.view(torch.int16)[:n]


def dropout_keep_mask(shape, p: float, device) -> tuple[torch.Tensor, float]:
    """(keep (bool, `shape`), scale) of an inverted dropout whose mask comes from 16-bit slices of
    64-bit random integers.

    An element is dropped with probability round(p * 65536) / 65536 (within 7.7e-6 of p); `scale`
    = 1 / (1 - that probability), so `where(keep, x, 0) * scale` has the expectation of x. Draws
    from torch's global generator: the same seed gives the same mask.
    """
    level = _level(p)
    keep = _random16(math.prod(shape), device).view(shape) >= (-32768 + level)
    return keep, DROPOUT_LEVELS / (DROPOUT_LEVELS - level)


def _blocks(n: int, t: int):
    """(head slice, query-row slice) pairs covering (n, t) rows of a (n, t, t) score tensor."""
    rows = min(t, BLOCK_ROWS)
    heads = max(1, min(n, BLOCK_ELEMENTS // (rows * t)))
    for h in range(0, n, heads):
        for i in range(0, t, rows):
            yield slice(h, min(n, h + heads)), slice(i, min(t, i + rows))


def _scores(q, kt, bias, hs, rs):
    if bias is None:
        return torch.bmm(q[hs, rs], kt[hs])
    return torch.baddbmm(bias[hs], q[hs, rs], kt[hs])


def _softmax(scores: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    # softmax(x.to(acc)) rather than softmax(x, dtype=acc): torch's CPU kernel converts bfloat16
    # input element by element (4.6x slower on a 128 x 1500 block than cast + float32 softmax)
    return torch.softmax(scores.to(acc), dim=-1)


class _BlockedDropoutAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, p):
        n, t, _ = q.shape
        level = _level(p)
        threshold = -32768 + level   # dropout_keep_mask's: keep where r >= threshold
        scale = DROPOUT_LEVELS / (DROPOUT_LEVELS - level)
        r = _random16(n * t * t, q.device).view(n, t, t)
        acc = torch.promote_types(q.dtype, torch.float32)
        # the mask as 0/1 multipliers (exact in bfloat16; the scale goes on the (T, d) output),
        # 2 bytes each for float32 and bfloat16 input: a multiply is 6x faster than masked_fill on
        # CPU, and the backward pass reads the mask twice per block
        mask_dtype = torch.bfloat16 if q.dtype in (torch.float32, torch.bfloat16) else q.dtype
        keep = torch.empty(n, t, t, dtype=mask_dtype, device=q.device)
        kt = k.transpose(1, 2)
        out = torch.empty_like(q)
        for hs, rs in _blocks(n, t):
            # keep = r >= threshold as 0/1 without a boolean (int16 compares and bool -> float
            # copies are scalar loops on CPU: 5x slower): clamp to [threshold - 1, threshold] and shift
            block = keep[hs, rs]
            block.copy_(r[hs, rs].clamp(threshold - 1, threshold).sub_(threshold - 1))
            probs = _softmax(_scores(q, kt, bias, hs, rs), acc).to(q.dtype).mul_(block)
            out[hs, rs] = torch.bmm(probs, v[hs])
        del r
        out.mul_(scale)
        ctx.save_for_backward(q, k, v, bias, keep, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, bias, keep, out = ctx.saved_tensors
        scale = ctx.scale
        n, t, d = q.shape
        acc = torch.promote_types(q.dtype, torch.float32)
        dout = dout.to(q.dtype)
        delta = (dout.to(acc) * out.to(acc)).sum(-1, keepdim=True)   # rowsum(dO * O) = rowsum(dP * P)
        dout_scaled = dout * scale
        kt, vt = k.transpose(1, 2), v.transpose(1, 2)
        dq = torch.empty_like(q)
        dk = torch.zeros(n, t, d, dtype=acc, device=q.device)
        dv = torch.zeros(n, t, d, dtype=acc, device=q.device)
        for hs, rs in _blocks(n, t):
            probs = _softmax(_scores(q, kt, bias, hs, rs), acc)
            block = keep[hs, rs]
            kept = probs * block if acc == q.dtype else probs.to(q.dtype).mul_(block)
            dv[hs] += torch.bmm(kept.transpose(1, 2), dout[hs, rs])
            dprobs = torch.bmm(dout_scaled[hs, rs], vt[hs]).mul_(block).to(acc)
            dscores = dprobs.sub_(delta[hs, rs]).mul_(probs).to(q.dtype)
            dq[hs, rs] = torch.bmm(dscores, k[hs])
            dk[hs] += torch.bmm(dscores.transpose(1, 2), q[hs, rs])
        return dq, dk.to(k.dtype), dv.mul_(scale).to(v.dtype), None, None


def blocked_dropout_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                              p: float) -> torch.Tensor:
    """softmax(q @ k^T + bias) -> inverted dropout(p) -> @ v, block by block (module docstring).

    q (already scaled by 1/sqrt(d)), k, v: (N, T, d) in one dtype; bias: None or (N, 1, T)
    additive key mask in that dtype (no gradient flows to it); 0 < p < 1. Returns (N, T, d).
    Autocast is off inside: the caller passes q, k, v in the dtype the products should run in.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"blocked_dropout_attention: p must be in (0, 1), got {p}")
    if bias is not None:
        bias = bias.to(q.dtype)
    with torch.autocast(q.device.type, enabled=False):
        return _BlockedDropoutAttention.apply(q, k, v, bias, p)
