"""Downstream heads: output shapes, parameter counts, edge replication, padding invariance."""
from __future__ import annotations

import pytest
import torch

from s3prl.downstream.heads import HeadConfig, build_head, context_window, count_parameters, masked_mean

H, C = 10, 41


def _x(B=3, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, H, generator=g), torch.tensor([12, 7, 3])


@pytest.mark.parametrize("name,params,frame", [
    ("linear", C * (H + 1), True),
    ("frame", C * (H + 1), True),
    ("1hidden", H * 768 + 768 + 768 * C + C, True),
    ("concat", 9 * H * C + C, True),
    ("utterance", H * C + C, False),
    ("rnn", 3 * (32 * H + 32 * 32 + 2 * 32) + (32 * 32 + 32) + (32 * C + C), False),
])
def test_shapes_and_parameter_counts(name, params, frame):
    head = build_head(HeadConfig(name=name), H, C)
    assert count_parameters(head) == params
    assert head.frame_level is frame
    x, lengths = _x()
    out = head.eval()(x, lengths)
    assert out.shape == ((3, 12, C) if frame else (3, C))


def test_concat_replicates_each_utterance_edges():
    x, lengths = _x()
    w = context_window(x, lengths, 4)
    assert w.shape == (3, 12, 9 * H)
    # utterance 1 has 7 valid frames: frame 0's left context is frame 0, frame 6's right is frame 6.
    b = 1
    for t in range(7):
        expect = torch.cat([x[b, min(max(t + k, 0), 6)] for k in range(-4, 5)])
        assert torch.equal(w[b, t], expect)


@pytest.mark.parametrize("name", ["linear", "1hidden", "concat", "utterance", "rnn"])
def test_padding_content_never_reaches_valid_outputs(name):
    head = build_head(HeadConfig(name=name), H, C).eval()
    x, lengths = _x()
    y = x.clone()
    for b, n in enumerate(lengths.tolist()):
        y[b, n:] = 1e3  # garbage in the padding
    a, c = head(x, lengths), head(y, lengths)
    if head.frame_level:
        for b, n in enumerate(lengths.tolist()):
            assert torch.allclose(a[b, :n], c[b, :n], atol=1e-5)
    else:
        assert torch.allclose(a, c, atol=1e-5)


def test_masked_mean_and_rnn_subsampling():
    x, lengths = _x()
    m = masked_mean(x, lengths)
    assert torch.allclose(m[2], x[2, :3].mean(0))
    head = build_head(HeadConfig(name="rnn"), H, C).eval()
    # Only frames 0, 5, 10 of an utterance reach the GRU: changing frame 1 changes nothing.
    y = x.clone()
    y[0, 1] += 5.0
    assert torch.allclose(head(x, lengths), head(y, lengths))
    y[0, 5] += 5.0
    assert not torch.allclose(head(x, lengths)[0], head(y, lengths)[0])


def test_head_config_rejects_unknown():
    with pytest.raises(ValueError, match="not one of"):
        HeadConfig(name="lstm")
