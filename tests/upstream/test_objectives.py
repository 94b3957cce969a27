"""APC shift/loss by hand, presets/validation, and that tiny models learn."""
import pytest
import torch

from s3prl.config import ConfigError, from_dict
from s3prl.upstream.apc import APC, apc_l1_loss
from s3prl.upstream.config import APCConfig, MaskConfig, TransformerConfig, UpstreamConfig
from s3prl.upstream.families import build_objective
from s3prl.upstream.objectives import APCObjective, MaskedReconstruction

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def test_apc_loss_by_hand_excludes_padding():
    feats = torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]],
                          [[1.0], [1.0], [1.0], [0.0], [0.0]]])
    pred = torch.zeros(2, 5, 1)
    loss, n = apc_l1_loss(pred, feats, torch.tensor([5, 3]), shift=1)
    # utt 0: pred[0..3] vs x[1..4] = 2+3+4+5; utt 1: pred[0..1] vs x[1..2] = 1+1 (x[3] is padding)
    assert n == 6 and loss.item() == pytest.approx((14 + 2) / 6)


def test_apc_layout_and_hidden_states():
    m = APC(4, APCConfig(hidden_size=6, num_layers=3, dropout=0.0)).eval()
    keys = set(m.state_dict())
    assert "rnn_layers.0.weight_ih_l0" in keys and "rnn_layers.2.bias_hh_l0" in keys and "postnet.weight" in keys
    assert m.state_dict()["rnn_layers.0.weight_ih_l0"].shape == (18, 4)
    x = torch.randn(2, 7, 4)
    x[1, 5:] = 0
    pred, hs = m(x, torch.tensor([7, 5]))
    assert pred.shape == (2, 7, 4) and len(hs) == 3 and hs[0].shape == (2, 7, 6)
    assert all(h[1, 5:].abs().sum() == 0 for h in hs)  # padded frames are zero in every state
    # causal: changing a future frame does not change earlier states
    x2 = x.clone()
    x2[0, 6] += 1
    _, hs2 = m(x2, torch.tensor([7, 5]))
    assert torch.allclose(hs[2][0, :6], hs2[2][0, :6])
    # padding invariance: utterance 1 alone gives the same states
    _, alone = m(x[1:, :5], torch.tensor([5]))
    assert torch.allclose(alone[2][0], hs[2][1, :5], atol=1e-6)
    # residual from the second layer on: layer-1 output - layer-0 output is a GRU output (|.| < 1)
    assert (hs[1] - hs[0]).abs().max() < 1


def _apc_packed_reference(m: APC, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """The hidden states of `m` computed on packed sequences, layer by layer (dropout 0)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    hidden, h_in = [], x
    for i, rnn in enumerate(m.rnn_layers):
        out, _ = rnn(pack_padded_sequence(h_in, lengths, batch_first=True, enforce_sorted=False))
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        h = h + h_in if i > 0 else h
        hidden.append(h)
        h_in = h
    return hidden


@pytest.mark.parametrize("equal", [True, False])
def test_apc_training_runs_the_padded_batch_like_packed_sequences(equal):
    """Training runs the padded batch through the fused GRU and zeroes the padding: equal lengths
    (the presets' crops) give bitwise the packed-sequence states and gradients; mixed lengths with
    garbage padding give them to float rounding, with padded frames exactly zero."""
    torch.manual_seed(3)
    m = APC(5, APCConfig(hidden_size=16, num_layers=3, dropout=0.0)).train()
    lengths = torch.tensor([37, 37, 37]) if equal else torch.tensor([37, 20, 1])
    x = torch.randn(3, 37, 5)   # frames past a length are random (not zero): they must not matter
    weights = torch.linspace(-1, 1, 37)[None, :, None]

    def grads(states):
        m.zero_grad()
        (states[-1] * weights).sum().backward()
        return [p.grad.clone() for p in m.rnn_layers.parameters()]

    _, ours = m(x, lengths)
    g_ours = grads(ours)
    ref = _apc_packed_reference(m, x, lengths)
    g_ref = grads(ref)
    for a, b in zip(ours, ref):
        if equal:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            assert a[1, 20:].abs().sum() == 0 and a[2, 1:].abs().sum() == 0
    for a, b in zip(g_ours, g_ref):
        if equal:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # eval mode with mixed lengths takes the packed path itself: bitwise the reference
    m.eval()
    with torch.no_grad():
        _, ev = m(x, lengths)
        for a, b in zip(ev, _apc_packed_reference(m, x, lengths)):
            assert torch.equal(a, b)


def test_presets_validation():
    with pytest.raises(ValueError):
        UpstreamConfig(model="aalbert")
    with pytest.raises(ValueError):
        UpstreamConfig(model="mockingjay", mask=MaskConfig(mask_frequency=8))
    with pytest.raises(ConfigError, match="share_layer"):
        from_dict(UpstreamConfig, {"model": "aalbert"}, "x.yaml")
    cfg = from_dict(UpstreamConfig, {"model": "aalbert", "transformer": {"share_layer": True}})
    assert cfg.transformer.share_layer


@pytest.mark.parametrize("model", ["mockingjay", "tera", "aalbert", "apc"])
def test_loss_decreases(model):
    torch.manual_seed(0)
    t = TransformerConfig(**TINY, share_layer=model == "aalbert", hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    mask = MaskConfig(mask_consecutive_min=2, mask_consecutive_max=3,
                      mask_frequency=2 if model == "tera" else 0, noise_proportion=0.2 if model == "tera" else 0.0)
    cfg = UpstreamConfig(model=model, transformer=t, mask=mask, apc=APCConfig(hidden_size=16, dropout=0.0))
    obj = build_objective(cfg, 6)
    assert isinstance(obj, APCObjective if model == "apc" else MaskedReconstruction)
    # smooth, predictable features (sinusoids with per-dim phase and rate)
    t_ax = torch.arange(30, dtype=torch.float)[None, :, None]
    feats = torch.sin(0.25 * t_ax * (1 + torch.arange(6)[None, None, :] / 6) + torch.randn(4, 1, 6))
    lens = torch.tensor([30, 28, 25, 20])
    for i, n in enumerate(lens):
        feats[i, n:] = 0
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for step in range(50):
        out = obj(feats, lens, g)
        assert out.num_elements > 0
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    ex = out.extras
    assert ex["prediction"].shape == ex["target"].shape and ex["masked_input"].dim() == 2


def test_separate_target_stream():
    cfg = UpstreamConfig(model="mockingjay", transformer=TransformerConfig(**TINY, frame_stacking=2),
                         mask=MaskConfig(mask_consecutive_min=1, mask_consecutive_max=1), target="linear1025")
    obj = build_objective(cfg, 6)
    assert obj.target_dim == 1025 and obj.spec_head.output.out_features == 2050
    feats, target = torch.randn(2, 40, 6), torch.randn(2, 40, 1025)
    out = obj(feats, torch.tensor([40, 36]), torch.Generator().manual_seed(0), target=target)
    assert out.num_elements % 2050 == 0 and out.loss.item() > 0
    with pytest.raises(ValueError):
        obj(feats, torch.tensor([40, 36]), torch.Generator().manual_seed(0))


def test_unmasked_batch_is_skipped():
    cfg = UpstreamConfig(model="mockingjay", transformer=TransformerConfig(**TINY),
                         mask=MaskConfig(mask_proportion=0.01, mask_consecutive_min=7, mask_consecutive_max=7))
    obj = build_objective(cfg, 3)
    out = obj(torch.randn(2, 10, 3), torch.tensor([10, 10]), torch.Generator().manual_seed(0))
    assert out.num_elements == 0
    out.loss.backward()  # harmless
