"""Tests of s3prl.upstream.hub and s3prl.upstream.featurizer on tiny random checkpoints."""
from __future__ import annotations

import math

import pytest
import torch

from s3prl.errors import UserError
from s3prl.features import compute_features
from s3prl.features.config import FeatureConfig
from s3prl.upstream.checkpoint import load_checkpoint, save_upstream_checkpoint
from s3prl.upstream.config import APCConfig, TransformerConfig, UpstreamConfig
from s3prl.upstream.featurizer import Featurizer
from s3prl.upstream.hub import load_upstream, pad_features, upsample_frames
from s3prl.upstream.objectives import APCObjective, MaskedReconstruction


def make_ckpt(path, model="tera", dr=1, audio=None, seq=1500, input_dim=80, **transformer):
    """A tiny random checkpoint (hidden 32, 2 layers) written by our own checkpoint code;
    `transformer` overrides TransformerConfig fields (share_layer, pre_layer_norm, ...)."""
    torch.manual_seed(0)
    if model == "apc":
        cfg = UpstreamConfig(model="apc", apc=APCConfig(hidden_size=32, num_layers=3))
        obj = APCObjective(cfg, input_dim)
        audio = FeatureConfig().to_apc_audio() if audio is None else audio
    else:
        tcfg = TransformerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, frame_stacking=dr, sequence_length=seq,
                                 **transformer)
        cfg = UpstreamConfig(model=model, transformer=tcfg)
        obj = MaskedReconstruction(cfg, input_dim)
        audio = FeatureConfig().to_s3prl_audio() if audio is None else audio
    save_upstream_checkpoint(path, objective=obj, optimizer_state=None, scheduler_state=None, step=7,
                             runner_config={}, upstream_cfg=cfg, audio=audio)
    return str(path)


def kaldi_frames(n):
    return 1 + (n - 400) // 160


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {"dr1": make_ckpt(d / "dr1.ckpt"), "dr3": make_ckpt(d / "dr3.ckpt", model="mockingjay", dr=3),
            "apc": make_ckpt(d / "apc.ckpt", model="apc"), "dir": d}


def wavs(lengths=(16000, 8123, 4321), seed=1):
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=g) for n in lengths]


@pytest.mark.parametrize("key,dr", [("dr1", 1), ("dr3", 3)])
def test_frame_counts_and_contract(ckpts, key, dr):
    up = load_upstream(ckpts[key])
    assert up.hop_samples == 160 and up.frame_stacking == dr
    assert up.num_hidden_states == 3 and up.hidden_size == 32
    ws = wavs()
    out = up(ws)
    assert out["hidden_states"] is out.hidden_states and len(out.hidden_states) == 3
    assert torch.equal(out.last_hidden_state, out.hidden_states[-1])
    assert out.lengths.tolist() == [kaldi_frames(len(w)) for w in ws] == [98, 49, 25]
    for h in out.hidden_states:
        assert h.shape == (3, 98, 32)
        assert torch.all(h[1, 49:] == 0) and torch.all(h[2, 25:] == 0)
    # Padded (B, N) + lengths input gives the same result.
    padded = torch.zeros(3, 16000)
    for i, w in enumerate(ws):
        padded[i, : len(w)] = w
    out2 = up(padded, torch.tensor([len(w) for w in ws]))
    for a, b in zip(out.hidden_states, out2.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_equals_direct_model_forward_and_upsampling(ckpts):
    """Output = the checkpoint model's forward on the same features, each stacked vector repeated
    dr times and the leftover frames replicating the last one."""
    up = load_upstream(ckpts["dr3"])
    w = wavs((8123,))[0]
    feats = compute_features(w, up.feature_config)[:48]  # (48, 80)
    feats = torch.cat([feats, feats[:2]])  # 50 frames: 16 stacked + 2 leftover
    out = up.forward_features(feats[None], torch.tensor([50]))
    with torch.no_grad():
        ref = up.model(feats[None], torch.tensor([50]))
    assert ref.hidden_states[0].shape[1] == 16
    for h, r in zip(out.hidden_states, ref.hidden_states):
        assert h.shape == (1, 50, 32)
        for t in range(50):
            torch.testing.assert_close(h[0, t], r[0, min(t // 3, 15)], atol=1e-5, rtol=0)


def test_upsample_frames_numbers():
    h = torch.arange(2 * 3 * 1, dtype=torch.float32).view(2, 3, 1)  # utt0: 0,1,2  utt1: 3,4,(5 pad)
    out = upsample_frames(h, torch.tensor([3, 2]), torch.tensor([8, 7]), 2, 8)
    assert out[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    assert out[1, :, 0].tolist() == [3, 3, 4, 4, 4, 4, 4, 0]


def test_batch_equals_single(ckpts):
    up = load_upstream(ckpts["dr1"])
    ws = wavs()
    out = up(ws)
    for i, w in enumerate(ws):
        single = up([w])
        n = int(single.lengths[0])
        for a, b in zip(out.hidden_states, single.hidden_states):
            torch.testing.assert_close(a[i, :n], b[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dr", [1, 3])
def test_chunking(ckpts, dr):
    up = load_upstream(ckpts["dr1" if dr == 1 else "dr3"])
    w = wavs((32000,))[0]
    feats = compute_features(w, up.feature_config)[None]  # 198 frames
    T = feats.shape[1]
    lens = torch.tensor([T])
    one = up.forward_features(feats, lens)
    # A chunk size >= the length takes the one-pass path: identical.
    up.sequence_length = T // dr
    same = up.forward_features(feats, lens)
    for a, b in zip(one.hidden_states, same.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # Shorter chunks: exact frame count, and each piece equals a one-pass run of that piece.
    up.sequence_length = 20
    chunked = up.forward_features(feats, lens)
    assert chunked.lengths.tolist() == [T] and all(h.shape == (1, T, 32) for h in chunked.hidden_states)
    n_stacked = T // dr
    sizes = [p.shape[0] for p in torch.chunk(torch.arange(n_stacked), math.ceil(n_stacked / 20))]
    up.sequence_length = 0
    start = 0
    for s in sizes:
        piece = feats[:, start * dr:(start + s) * dr]
        ref = up.forward_features(piece, torch.tensor([piece.shape[1]]))
        for a, b in zip(chunked.hidden_states, ref.hidden_states):
            torch.testing.assert_close(a[:, start * dr:(start + s) * dr], b, atol=1e-5, rtol=0)
        start += s
    # Leftover frames (T mod dr) replicate the last vector.
    for h in chunked.hidden_states:
        for t in range(n_stacked * dr, T):
            torch.testing.assert_close(h[0, t], h[0, n_stacked * dr - 1])
    # Chunking stays away from anything one pass can do: the max length is the config's.
    assert load_upstream(ckpts["dr1"]).sequence_length == 1500


@pytest.mark.parametrize("dr", [1, 3])
def test_chunk_context_windows(ckpts, dr):
    # Overlapping windows: every output frame equals a one-pass run of the window of
    # sequence_length frames that holds it with `ctx` frames each side (clamped at the edges), so
    # no frame sits at a cut; padded batch members equal their own runs.
    up = load_upstream(ckpts["dr1" if dr == 1 else "dr3"])
    ws = wavs((32000, 21000))
    feats, lens = pad_features([compute_features(w, up.feature_config) for w in ws])
    seq, ctx = 20, 4
    up.sequence_length, up.chunk_context = seq, ctx
    assert up.chunk_context == ctx
    out = up.forward_features(feats, lens)
    cut = up.model.config.chunk_context
    up.chunk_context = 0
    plain = up.forward_features(feats, lens)
    up.sequence_length = 0
    hop = seq - 2 * ctx
    for b in range(2):
        n = int(lens[b]) // dr                      # stacked frames of this utterance
        assert out.lengths[b] == lens[b]
        for a in range(0, n, hop):
            w = min(max(a - ctx, 0), n - seq)
            piece = feats[b:b + 1, w * dr:(w + seq) * dr]
            ref = up.forward_features(piece, torch.tensor([piece.shape[1]]))
            e = min(a + hop, n)
            for h, r in zip(out.hidden_states, ref.hidden_states):
                torch.testing.assert_close(h[b, a * dr:e * dr], r[0, (a - w) * dr:(e - w) * dr], atol=1e-5, rtol=0)
    assert cut == ctx and not torch.allclose(out.last_hidden_state, plain.last_hidden_state, atol=1e-3)
    with pytest.raises(UserError, match="chunk context 10 must be >= 0 and leave frames of its 20-frame"):
        up.sequence_length = 20
        up.chunk_context = 10
    with pytest.raises(UserError, match="not chunked"):
        load_upstream(ckpts["apc"]).chunk_context = 4


# Every family and layout: plain post-LN TERA, frame-stacking Mockingjay, AALBERT's shared layer,
# pre-LN, and APC's GRUs. The transformers get a 20-frame chunk, so 1-2 s inputs need several.
FAMILIES = {"tera": dict(model="tera"), "mockingjay_dr3": dict(model="mockingjay", dr=3),
            "aalbert": dict(model="aalbert", share_layer=True), "pre_ln": dict(model="tera", pre_layer_norm=True),
            "apc": dict(model="apc")}


@pytest.mark.parametrize("chunk_context", [0, 4])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("fine_tune", [False, True])
def test_states_do_not_depend_on_batch_mates(tmp_path, family, chunk_context, fine_tune):
    """An utterance's states are a function of that utterance alone: in a mixed-length batch
    (members needing 1, 2, 3 and 6 chunks or windows; two of similar length, so they share a
    length group; odd sizes) each equals its own run (<= 1e-5). Fine-tuning runs the whole batch
    in one padded pass, the frozen hub in length groups; both must hold."""
    if family == "apc" and chunk_context:
        pytest.skip("APC is a GRU: no chunks, no chunk context")
    ckpt = make_ckpt(tmp_path / f"{family}.ckpt", seq=20, **FAMILIES[family])
    up = load_upstream(ckpt, fine_tune=fine_tune).eval()
    if chunk_context:
        up.chunk_context = chunk_context
    ws = wavs((37000, 35000, 4321, 16000, 8123, 9999))
    out = up(ws)
    assert out.lengths.tolist() == [kaldi_frames(len(w)) for w in ws]
    worst = 0.0
    for i, w in enumerate(ws):
        single = up([w])
        n = int(single.lengths[0])
        for a, b in zip(out.hidden_states, single.hidden_states):
            worst = max(worst, float((a[i, :n] - b[0]).detach().abs().max()))
            assert torch.all(a[i, n:] == 0)
    assert worst <= 1e-5, f"batch vs alone differ by {worst}"


def test_utterance_windows_follow_each_utterance():
    """Cuts come from the utterance's own length: torch.chunk's split without context, windows of
    sequence_length frames (shifted inside at the edges) with it; one pass when it fits."""
    from s3prl.upstream.transformer import Window, utterance_windows

    assert utterance_windows(20, 20) == [Window(0, 20, 0, 20)]
    assert utterance_windows(7, 0) == [Window(0, 7, 0, 7)]
    cuts = [(w.start, w.start + w.length) for w in utterance_windows(45, 20)]
    assert cuts == [(0, 15), (15, 30), (30, 45)]
    assert [p.shape[0] for p in torch.chunk(torch.arange(45), 3)] == [15, 15, 15]
    assert [(w.start, w.length) for w in utterance_windows(41, 20)] == [(0, 14), (14, 14), (28, 13)]
    win = utterance_windows(45, 20, 4)
    assert [(w.start, w.core_start, w.core_end) for w in win] == [(0, 0, 12), (8, 12, 24), (20, 24, 36), (25, 36, 45)]
    assert all(w.length == 20 for w in win)
    with pytest.raises(ValueError, match="leaves no frames"):
        utterance_windows(45, 20, 10)


def test_featurizer_weighted_sum_and_selection(ckpts):
    up = load_upstream(ckpts["dr1"])
    out = up(wavs((8000, 6000)))
    fz = Featurizer(up)
    assert fz.out_dim == 32 and torch.equal(fz.weights.data, torch.zeros(3))
    mixed = fz(out)
    torch.testing.assert_close(mixed, sum(out.hidden_states) / 3, atol=1e-6, rtol=0)
    mixed.pow(2).mean().backward()  # frozen upstream output is usable under autograd
    assert fz.weights.grad is not None and fz.weights.grad.abs().sum() > 0
    with torch.no_grad():
        fz.weights.copy_(torch.tensor([0.0, math.log(3.0), 0.0]))
    torch.testing.assert_close(fz(out), 0.2 * out.hidden_states[0] + 0.6 * out.hidden_states[1]
                               + 0.2 * out.hidden_states[2], atol=1e-6, rtol=0)
    assert torch.equal(Featurizer(up, layer=1)(out), out.hidden_states[1])
    assert torch.equal(Featurizer(up, layer="last")(out.hidden_states), out.hidden_states[2])
    normed = Featurizer(up, layer=2, normalize=True)(out)
    torch.testing.assert_close(normed[0, :10].mean(-1), torch.zeros(10), atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="layer 3 is out of range"):
        Featurizer(up, layer=3)


def test_frozen_vs_fine_tune(ckpts):
    ws = wavs((8000,))
    frozen = load_upstream(ckpts["dr1"])
    frozen.train()
    assert not frozen.training and not frozen.model.training
    assert not any(p.requires_grad for p in frozen.parameters())
    out = frozen(ws)
    assert not out.last_hidden_state.requires_grad
    tuned = load_upstream(ckpts["dr1"], fine_tune=True)
    tuned.train()
    assert tuned.model.training and all(p.requires_grad for p in tuned.parameters())
    tuned.eval()
    out2 = tuned(ws)
    assert out2.last_hidden_state.requires_grad
    out2.last_hidden_state.sum().backward()
    grads = [p.grad for p in tuned.model.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    torch.testing.assert_close(out.last_hidden_state, out2.last_hidden_state.detach(), atol=1e-5, rtol=0)


def test_apc(ckpts):
    up = load_upstream(ckpts["apc"])
    ws = wavs((8000, 5000))
    out = up(ws)
    assert up.num_hidden_states == 3 and out.lengths.tolist() == [kaldi_frames(8000), kaldi_frames(5000)]
    feats, lens = pad_features([compute_features(w, up.feature_config) for w in ws])
    with torch.no_grad():
        _, ref = up.model(feats, lens)
    for h, r in zip(out.hidden_states, ref):
        torch.testing.assert_close(h, r, atol=1e-5, rtol=0)


def test_baselines():
    ws = wavs((8000, 5000))
    for name, dim, shift in (("fbank", 80, 160), ("mfcc", 39, 160), ("mel160", 160, 200)):
        up = load_upstream(name)
        out = up(ws)
        assert up.num_hidden_states == 1 and up.hidden_size == dim and up.hop_samples == shift
        ref = compute_features(ws[1], FeatureConfig(feat_type=name))
        torch.testing.assert_close(out.last_hidden_state[1, : ref.shape[0]], ref)
        assert int(out.lengths[1]) == ref.shape[0]
    assert load_upstream("fbank")(ws).lengths.tolist() == [kaldi_frames(8000), kaldi_frames(5000)]


def test_2020_layout_external_features(ckpts, tmp_path):
    """A 2020 checkpoint (Settings/Config, no audio section) takes external features; a wrong
    feature dim names both dims."""
    ours = load_checkpoint(ckpts["dr1"])
    sec = dict(ours["Upstream_Config"]["transformer"])
    sec["input_dim"] = 80
    old = {"Transformer": ours["Transformer"], "SpecHead": ours["SpecHead"], "Global_step": 7,
           "Settings": {"Config": {"transformer": sec}, "Paras": None}}
    path = tmp_path / "states-7.ckpt"
    torch.save(old, path)
    up = load_upstream(path)
    assert up.external_features and up.input_dim == 80 and up.step == 7
    ref = load_upstream(ckpts["dr1"])
    feats = compute_features(wavs((8000,))[0], ref.feature_config)[None]
    a = up.forward_features(feats, torch.tensor([feats.shape[1]]))
    b = ref.forward_features(feats, torch.tensor([feats.shape[1]]))
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="feature dim 40 does not match the upstream's input dim 80"):
        up.forward_features(torch.zeros(1, 10, 40), torch.tensor([10]))
    with pytest.raises(UserError, match="external features"):
        up(wavs((8000,)))


def test_bad_inputs(ckpts, tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        load_upstream(tmp_path / "missing.ckpt")
    up = load_upstream(ckpts["dr3"])
    with pytest.raises(UserError, match="shorter than one analysis window"):
        up([torch.zeros(100)])
    with pytest.raises(UserError, match="utterance u1 has 2 feature frames"):
        up.forward_features(torch.zeros(1, 2, 80), torch.tensor([2]), utt_ids=["u1"])


def test_compute_features_batch_equals_single(ckpts):
    up = load_upstream(ckpts["dr1"])
    ws = wavs()
    batch = up.compute_features_batch(ws)
    for w, b in zip(ws, batch):
        assert torch.equal(b, up.compute_features(w))
    with pytest.raises(UserError, match="utterance u2 has 10 samples"):
        up.compute_features_batch([ws[0], torch.zeros(10)], utt_ids=["u1", "u2"])


def test_length_groups_numbers():
    from s3prl.upstream.hub import length_groups

    g = length_groups(torch.tensor([100, 1000, 950, 300, 1000, 980]))
    assert [x.tolist() for x in g] == [[1, 4, 5, 2], [3], [0]]
    # little padding: one group, in batch order
    assert [x.tolist() for x in length_groups(torch.tensor([95, 100, 99]))] == [[0, 1, 2]]
    assert [x.tolist() for x in length_groups(torch.tensor([7]))] == [[0]]


def test_mixed_length_batch_runs_in_groups_with_same_output(ckpts, monkeypatch):
    up = load_upstream(ckpts["dr3"])
    ws = wavs((32000, 6000, 20000, 31000))
    feats = [up.compute_features(w) for w in ws]
    padded, lens = pad_features(feats)
    calls = []
    run = up._run
    monkeypatch.setattr(up, "_run", lambda f, l, **k: (calls.append(tuple(f.shape[:2])), run(f, l, **k))[1])
    out = up.forward_features(padded, lens)
    assert len(calls) == 3 and calls[0] == (2, int(lens.max()))    # 32000 + 31000 samples together
    assert sum(c[0] for c in calls) == 4
    for i, f in enumerate(feats):
        single = up.forward_features(f[None], torch.tensor([f.shape[0]]))
        n = f.shape[0]
        for a, b in zip(out.hidden_states, single.hidden_states):
            assert a.shape[1] == padded.shape[1]
            torch.testing.assert_close(a[i, :n], b[0], atol=1e-5, rtol=0)
            assert torch.all(a[i, n:] == 0)


def test_bfloat16_compute_dtype(ckpts, monkeypatch, caplog):
    """dtype bfloat16: the model runs under bf16 autocast (the states move by bf16 rounding, not
    more), the states come back float32; float32 stays the default and exact; a CPU without
    bf16 units falls back to float32 with one notice; anything else is refused."""
    import s3prl.precision as P

    up = load_upstream(ckpts["dr3"])
    assert up.dtype == torch.float32
    ws = wavs()
    ref = up(ws)
    if P.cpu_supports_bf16():
        up.dtype = "bfloat16"
        assert up.dtype == torch.bfloat16
        out = up(ws)
        for a, b in zip(out.hidden_states, ref.hidden_states):
            assert a.dtype == torch.float32 and a.shape == b.shape
            diff = float((a - b).abs().max())
            assert 1e-4 < diff < 0.1 * float(b.abs().max()), diff
        assert torch.all(out.hidden_states[-1][2, 25:] == 0)
    up.dtype = torch.float32
    assert torch.equal(up(ws).last_hidden_state, ref.last_hidden_state)
    monkeypatch.setattr(P, "cpu_supports_bf16", lambda: False)
    with caplog.at_level("WARNING"):
        up.dtype = "bfloat16"
    assert up.dtype == torch.float32 and "no bf16 matrix units" in caplog.text
    with pytest.raises(UserError, match="dtype must be float32 or bfloat16"):
        up.dtype = "float16"


@pytest.mark.parametrize("key", ["dr3", "apc"])
def test_bfloat16_weights_cast_once(ckpts, key):
    """Frozen bf16 inference runs a copy whose Linear weights are bf16 already (cast once, not in
    every autocast region): bitwise the states of plain autocast over the float32 model, on a
    mixed-length batch (several length groups); the copy is kept between calls, rebuilt when
    the weights change, and is not part of the state dict."""
    import s3prl.precision as P

    if not P.cpu_supports_bf16():
        pytest.skip("this CPU has no bf16 units: the dtype falls back to float32 (test_bfloat16_compute_dtype)")
    up = load_upstream(ckpts[key])
    keys = set(up.state_dict())
    ws = wavs((32000, 6000, 20000, 31000))
    up.dtype = "bfloat16"
    out = up(ws)
    lp = up._compute_model()
    assert lp is not up.model and lp is up._compute_model()   # built once
    linears = [m for m in lp.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert all(p.dtype == torch.float32 for p in up.model.parameters())
    assert set(up.state_dict()) == keys
    up._compute_model = lambda: up.model     # autocast over the float32 model, as before the copy
    try:
        ref = up(ws)
    finally:
        del up._compute_model
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    with torch.no_grad():   # new weights: a new copy, new states
        next(up.model.parameters()).mul_(1.5)
    assert up._compute_model() is not lp
    assert not torch.equal(up(ws).last_hidden_state, out.last_hidden_state)
    up.dtype = "float32"
    assert up._compute_model() is up.model
