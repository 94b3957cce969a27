"""TransformerModel / SpecHead: parameter counts, sharing, SDPA parity, padding, layout."""
import math

import pytest
import torch

from s3prl.upstream.config import TransformerConfig
from s3prl.upstream.transformer import SpecHead, TransformerModel, positional_encoding, stack_frames


def small(**kw):
    base = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return TransformerConfig(**base)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_papers():
    assert nparams(TransformerModel(TransformerConfig(), 160)) == 21_388_800  # Mockingjay BASE 21.39 M
    large = TransformerModel(TransformerConfig(num_hidden_layers=12, frame_stacking=3), 160)
    assert abs(nparams(large) / 1e6 - 85.4) < 0.05
    albert = TransformerModel(TransformerConfig(share_layer=True, frame_stacking=3), 80)
    one_layer = nparams(albert.encoder.layer[0])
    assert one_layer == 7_087_872
    assert nparams(albert) == one_layer + 240 * 768 + 768 + 2 * 768  # 7.27 M
    assert abs(nparams(albert) / 1e6 - 7.27) < 0.01


def test_state_dict_layout():
    sd = TransformerModel(small(), 10).state_dict()
    for k in ["input_representations.spec_transform.weight", "input_representations.LayerNorm.bias",
              "encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.self.key.bias",
              "encoder.layer.1.attention.self.value.weight", "encoder.layer.0.attention.output.dense.weight",
              "encoder.layer.0.attention.output.LayerNorm.weight", "encoder.layer.0.intermediate.dense.weight",
              "encoder.layer.0.output.dense.bias", "encoder.layer.0.output.LayerNorm.bias"]:
        assert k in sd
    assert len(sd) == 4 + 2 * 16
    pre = TransformerModel(small(pre_layer_norm=True), 10).state_dict()
    assert "encoder.LayerNorm.2.weight" in pre and "encoder.LayerNorm.3.weight" not in pre


def test_init_statistics():
    torch.manual_seed(0)
    m = TransformerModel(TransformerConfig(), 160)
    w = m.encoder.layer[0].intermediate.dense.weight
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    assert torch.all(m.encoder.layer[0].intermediate.dense.bias == 0)
    assert torch.all(m.input_representations.LayerNorm.weight == 1)


def test_shared_layer_weights_really_shared():
    m = TransformerModel(small(share_layer=True, num_hidden_layers=3), 10)
    sd = m.state_dict()
    assert [k for k in sd if k.startswith("encoder.layer.2.")]
    q = [m.encoder.layer[i].attention.self.query.weight for i in range(3)]
    assert q[0].data_ptr() == q[1].data_ptr() == q[2].data_ptr()
    x, lens = torch.randn(2, 9, 10), torch.tensor([9, 6])
    out = m(x, lens).hidden_states[-1].sum()
    out.backward()
    g_shared = q[0].grad.clone()
    # The gradient accumulates contributions of all three uses: compare with an unshared copy.
    m2 = TransformerModel(small(num_hidden_layers=3), 10)
    m2.load_state_dict(sd)
    m2(x, lens).hidden_states[-1].sum().backward()
    total = sum(m2.encoder.layer[i].attention.self.query.weight.grad for i in range(3))
    assert torch.allclose(g_shared, total, atol=1e-5)


@pytest.mark.parametrize("pre_ln", [False, True])
def test_sdpa_equals_explicit_attention(pre_ln):
    torch.manual_seed(1)
    m = TransformerModel(small(pre_layer_norm=pre_ln), 10).eval()
    x, lens = torch.randn(3, 17, 10), torch.tensor([17, 11, 4])
    fast = m(x, lens)
    slow = m(x, lens, output_attentions=True)
    assert len(fast.hidden_states) == 3 and fast.attentions is None
    assert len(slow.attentions) == 2 and slow.attentions[0].shape == (3, 4, 17, 17)
    for a, b in zip(fast.hidden_states, slow.hidden_states):
        assert (a - b).abs().max().item() < 1e-5
    # padded keys get (numerically) zero attention
    assert slow.attentions[0][2, :, :, 4:].abs().max().item() < 1e-30


def test_padding_invariance():
    torch.manual_seed(2)
    m = TransformerModel(small(sequence_length=0), 10).eval()
    short = torch.randn(1, 8, 10)
    alone = m(short, torch.tensor([8])).hidden_states
    batch = torch.zeros(2, 20, 10)
    batch[0, :8] = short[0]
    batch[1] = torch.randn(20, 10)
    batch[0, 8:] = 5.0  # garbage in the padding must not matter either
    together = m(batch, torch.tensor([8, 20])).hidden_states
    for a, b in zip(alone, together):
        assert (a[0] - b[0, :8]).abs().max().item() < 1e-5


def test_stacking_and_lengths():
    x = torch.arange(2 * 7 * 2, dtype=torch.float).view(2, 7, 2)
    s, l = stack_frames(x, torch.tensor([7, 5]), 3)
    assert s.shape == (2, 2, 6) and l.tolist() == [2, 1]
    assert s[0, 1].tolist() == x[0, 3:6].reshape(-1).tolist()
    m = TransformerModel(small(frame_stacking=3), 2)
    out = m(x, torch.tensor([7, 5]))
    assert out.hidden_states[0].shape == (2, 2, 32) and out.lengths.tolist() == [2, 1]


def test_positional_encoding_formula_and_long_inputs():
    pe = positional_encoding(6000, 8)  # longer than S3PRL 2020's 5000 cap
    assert pe.shape == (6000, 8)
    p, j = 5999, 3
    assert math.isclose(pe[p, j].item(), math.cos(p / 10000 ** (2 * (j // 2) / 8)), abs_tol=1e-6)
    assert math.isclose(pe[7, 2].item(), math.sin(7 / 10000 ** (2 / 8)), abs_tol=1e-6)


def test_chunking_matches_separate_pieces():
    torch.manual_seed(3)
    m = TransformerModel(small(sequence_length=5), 10).eval()
    x = torch.randn(1, 12, 10)
    out = m(x, torch.tensor([12])).hidden_states[-1]
    # torch.chunk(12, ceil(12/5)=3) -> pieces of 4 frames, positions restarting at 0
    pieces = [m(x[:, i:i + 4], torch.tensor([4])).hidden_states[-1] for i in (0, 4, 8)]
    assert torch.allclose(out, torch.cat(pieces, 1), atol=1e-5)


def test_spec_head_shapes():
    cfg = small(frame_stacking=3)
    head = SpecHead(cfg, 5)
    pred, hid = head(torch.randn(2, 4, 32))
    assert pred.shape == (2, 4, 15) and hid.shape == (2, 4, 32)
    assert set(head.state_dict()) == {"dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias",
                                      "output.weight", "output.bias"}


def test_bad_config():
    with pytest.raises(ValueError):
        TransformerConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError):
        TransformerModel(small(), 10)(torch.randn(1, 3, 11), torch.tensor([3]))


def test_cpu_training_attention_dropout_path():
    # CPU training with attention dropout takes SelfAttention._cpu_dropout_attention: it must equal
    # softmax(q k^T / sqrt(d) + mask) -> where(keep) * scale -> @ v with dropout_keep_mask's mask
    # drawn from the same seed, with and without padded keys, and keep gradients flowing.
    from s3prl.upstream.transformer import SelfAttention, dropout_keep_mask

    cfg = TransformerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                            attention_probs_dropout_prob=0.25)
    torch.manual_seed(0)
    att = SelfAttention(cfg).train()
    x = torch.randn(2, 30, 32, requires_grad=True)
    for padded in (False, True):
        bias = torch.zeros(2, 1, 1, 30)
        if padded:
            bias[1, ..., 21:] = -10000.0
        torch.manual_seed(5)
        out, probs = att(x, bias, explicit=False)
        assert probs is None and out.shape == (2, 30, 32)
        q, k, v = att._heads(att.query(x)), att._heads(att.key(x)), att._heads(att.value(x))
        torch.manual_seed(5)
        keep, scale = dropout_keep_mask((8, 30, 30), 0.25, "cpu")
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8) + bias, dim=-1)
        ref = (torch.where(keep.view(2, 4, 30, 30), p, 0.0) * scale) @ v
        torch.testing.assert_close(out, ref.transpose(1, 2).reshape(2, 30, 32), atol=1e-5, rtol=1e-5)
        if padded:   # padded keys get no weight, dropped or not
            assert float(p.detach()[1, ..., 21:].abs().max()) < 1e-6
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # eval mode and p = 0 keep the fused SDPA path (no dropout)
    att.eval()
    a, _ = att(x, bias, explicit=False)
    b, _ = att(x, bias, explicit=True)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_dropout_keep_mask_rate_and_scale():
    from s3prl.upstream.transformer import dropout_keep_mask

    torch.manual_seed(0)
    keep, scale = dropout_keep_mask((400, 1000), 0.1, "cpu")
    rate = 1.0 - keep.float().mean().item()
    assert abs(rate - 0.1) < 0.003 and scale == pytest.approx(65536 / (65536 - 6554))
    torch.manual_seed(0)
    again, _ = dropout_keep_mask((400, 1000), 0.1, "cpu")
    assert torch.equal(keep, again)
    keep, scale = dropout_keep_mask((7,), 0.5, "cpu")     # odd sizes: the tail of the last int64
    assert keep.shape == (7,) and scale == pytest.approx(2.0)


def test_chunk_context_is_a_config_field_validated_once():
    with pytest.raises(ValueError, match=r"chunk context 10 must be >= 0 and leave frames of its 20-frame"):
        TransformerConfig(sequence_length=20, chunk_context=10)
    with pytest.raises(ValueError, match="chunk context -1 must be >= 0"):
        TransformerConfig(chunk_context=-1)
    assert TransformerConfig(sequence_length=0, chunk_context=5).chunk_context == 5
    # the encoder reads it from its config: overlapping windows change the states of a long input
    cfg = TransformerConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                            sequence_length=10)
    torch.manual_seed(0)
    model = TransformerModel(cfg, 4).eval()
    x, n = torch.randn(1, 30, 4), torch.tensor([30])
    plain = model(x, n).hidden_states[-1]
    model.config = TransformerConfig(**{**cfg.__dict__, "chunk_context": 2})
    assert not torch.allclose(model(x, n).hidden_states[-1], plain, atol=1e-4)


def test_hidden_dropout_mask_and_fused_pieces():
    """The transformer's Dropout is an nn.Dropout (code that sets `.p` finds it) whose CPU training
    mask is dropout_keep_mask's from the same seed (not torch's per-element Bernoulli draws); eval
    and p = 0 are the identity. GELU is the exact erf form; the fused Q/K/V projection equals the
    three Linear layers."""
    from s3prl.upstream.transformer import Dropout, SelfAttention, dropout_keep_mask, gelu

    d = Dropout(0.3).train()
    assert isinstance(d, torch.nn.Dropout)
    x = torch.randn(6, 50, 16, requires_grad=True)
    torch.manual_seed(3)
    y = d(x)
    torch.manual_seed(3)
    keep, scale = dropout_keep_mask(x.shape, 0.3, "cpu")
    assert torch.equal(y, torch.where(keep, x, 0.0) * scale)
    torch.manual_seed(3)
    assert torch.equal(d(x), y)                                  # same seed, same mask
    y.sum().backward()
    assert torch.equal(x.grad, keep.float() * scale)
    torch.manual_seed(0)
    rate = 1.0 - (d(torch.ones(400, 1000)) != 0).float().mean().item()
    assert abs(rate - 0.3) < 0.003
    assert torch.equal(d.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)
    z = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    torch.testing.assert_close(gelu(z), z * 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0))), atol=1e-12, rtol=0)
    cfg = TransformerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    att = SelfAttention(cfg)
    h = torch.randn(2, 9, 32)
    for got, lin in zip(att._qkv(h), (att.query, att.key, att.value)):
        torch.testing.assert_close(got, att._heads(lin(h)), atol=1e-6, rtol=1e-6)
