"""blocked_dropout_attention against the unblocked definition, softmax(q k^T + bias) -> dropout
with dropout_keep_mask's mask from the same seed -> @ v, differentiated by autograd: values and
all three gradients, on several blocks of heads and query rows with odd sizes and padded keys."""
from __future__ import annotations

import pytest
import torch

from s3prl.upstream import dropout_attention as da


def _reference(q, k, v, bias, p):
    keep, scale = da.dropout_keep_mask((q.shape[0], q.shape[1], k.shape[1]), p, "cpu")
    scores = q @ k.transpose(1, 2) + (0 if bias is None else bias)
    return (torch.where(keep, torch.softmax(scores, dim=-1), 0.0) * scale) @ v


def _inputs(n, t, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, t, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("padded", [False, True])
def test_values_and_gradients_equal_the_unblocked_definition(monkeypatch, padded):
    # 7 rows x 2 heads per block over 6 heads x 37 rows: 3 head groups x 6 row blocks, a short last one
    monkeypatch.setattr(da, "BLOCK_ROWS", 7)
    monkeypatch.setattr(da, "BLOCK_ELEMENTS", 7 * 37 * 2)
    assert len(list(da._blocks(6, 37))) == 18
    q, k, v = _inputs(6, 37, 5, torch.float64)
    bias = None
    if padded:
        bias = torch.zeros(6, 1, 37, dtype=torch.float64)
        bias[3:, :, 29:] = -10000.0
    torch.manual_seed(11)
    out = da.blocked_dropout_attention(q, k, v, bias, 0.3)
    torch.manual_seed(11)
    ref = _reference(q, k, v, bias, 0.3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), g)
    want = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11)


def test_same_random_draws_as_the_mask_so_the_generator_advances_the_same():
    q, k, v = _inputs(4, 20, 8, torch.float32)
    torch.manual_seed(3)
    da.blocked_dropout_attention(q, k, v, None, 0.1)
    after_blocked = torch.rand(3)
    torch.manual_seed(3)
    da.dropout_keep_mask((4, 20, 20), 0.1, "cpu")
    assert torch.equal(after_blocked, torch.rand(3))


def test_bfloat16_close_to_float32_and_gradients_finite(monkeypatch):
    monkeypatch.setattr(da, "BLOCK_ROWS", 16)
    q, k, v = _inputs(8, 50, 16, torch.float32, seed=1)
    qb, kb, vb = (x.detach().bfloat16().requires_grad_() for x in (q, k, v))
    torch.manual_seed(5)
    ref = da.blocked_dropout_attention(q, k, v, None, 0.1)
    torch.manual_seed(5)
    out = da.blocked_dropout_attention(qb, kb, vb, None, 0.1)
    assert out.dtype == torch.bfloat16
    assert float((out.float() - ref).detach().abs().max()) < 0.05 * float(ref.detach().abs().max())
    out.float().pow(2).sum().backward()
    assert all(x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all() for x in (qb, kb, vb))


def test_rejects_p_outside_the_open_interval():
    q, k, v = _inputs(1, 4, 2, torch.float32)
    for p in (0.0, 1.0):
        with pytest.raises(ValueError, match="p must be in"):
            da.blocked_dropout_attention(q, k, v, None, p)


def test_keeps_no_float_scores_for_the_backward_pass():
    # what autograd keeps: q, k, v, the output and a 2-byte 0/1 mask; never a float32 (N, T, T)
    from s3prl.bench.pretrain_flops import autograd_saved_mib

    q, k, v = _inputs(4, 256, 8, torch.float32)
    probs_mib = 4 * 256 * 256 * 4 / 2 ** 20
    saved = autograd_saved_mib(lambda: da.blocked_dropout_attention(q, k, v, None, 0.1).sum())
    assert saved < 0.75 * probs_mib, saved
    unblocked = autograd_saved_mib(lambda: _reference(q, k, v, None, 0.1).sum())
    assert unblocked > 2 * saved, (unblocked, saved)
