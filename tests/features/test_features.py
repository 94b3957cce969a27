"""Features: parity with torchaudio.compliance.kaldi, frame counts, dims, deltas, config conversions."""
import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as K
import torchaudio.functional as AF

from s3prl.errors import UserError
from s3prl.features import (FeatureConfig, add_deltas, compute_fbank_batch, compute_features, feature_dim,
                            frame_shift_seconds, num_frames)
from s3prl.features.deltas import kaldi_delta_scales, librosa_delta


def _wav(n, seed=0, amp=0.3):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return (amp * torch.sin(2 * np.pi * 440 * t) + 0.05 * torch.randn(n, generator=g)).float()


def test_fbank_equals_torchaudio_kaldi():
    w = _wav(16000 + 123)
    for opts in [{}, {"snip_edges": False}, {"num_mel_bins": 40, "use_energy": True, "window_type": "hamming"}]:
        cfg = FeatureConfig(feat_type="fbank", **opts)
        ours = compute_features(w, cfg)
        ref = K.fbank(w[None] * 32768, sample_frequency=16000, dither=0.0, energy_floor=0.0,
                      num_mel_bins=cfg.num_mel_bins, **{k: v for k, v in opts.items() if k != "num_mel_bins"})
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max().item() < 1e-4


def test_fbank_default_framing_is_cpc_framing():
    cfg = FeatureConfig()
    assert (cfg.num_mel_bins, cfg.frame_length, cfg.frame_shift, cfg.dither) == (80, 25.0, 10.0, 0.0)
    for n in (400, 401, 559, 560, 16000, 33333):
        assert num_frames(n, cfg) == 1 + (n - 400) // 160
    assert frame_shift_seconds(cfg) == 0.01


def test_mfcc_equals_torchaudio_kaldi_plus_deltas():
    w = _wav(12345, seed=1)
    cfg = FeatureConfig(feat_type="mfcc")
    ours = compute_features(w, cfg)
    assert ours.shape[1] == 39 == feature_dim(cfg)
    base = K.mfcc(w[None] * 32768, sample_frequency=16000, dither=0.0, energy_floor=0.0, num_ceps=13,
                  num_mel_bins=23, use_energy=False)
    assert (ours[:, :13] - base).abs().max().item() < 1e-4
    # order-1 deltas = torchaudio's compute_deltas (window 2, replicated edges)
    d1 = AF.compute_deltas(base.T[None], win_length=5)[0].T
    assert (ours[:, 13:26] - d1).abs().max().item() < 1e-4


@pytest.mark.parametrize("ft", ["fbank", "mfcc", "mel160", "linear1025"])
def test_num_frames_matches_output(ft):
    cfg = FeatureConfig(feat_type=ft)
    for n in [1, 100, 399, 400, 401, 559, 560, 799, 800, 1024, 1025, 1999, 4000, 16001]:
        f = compute_features(_wav(n, seed=n), cfg)
        assert f.shape == (num_frames(n, cfg), feature_dim(cfg)), (ft, n)
        assert f.dtype == torch.float32
    if ft in ("fbank", "mfcc"):
        cfg2 = FeatureConfig(feat_type=ft, snip_edges=False)
        for n in [400, 401, 479, 480, 16000]:
            assert compute_features(_wav(n), cfg2).shape[0] == num_frames(n, cfg2) == (n + 80) // 160


def test_mel160_and_linear1025():
    cfg = FeatureConfig(feat_type="mel160")
    assert (cfg.frame_length, cfg.frame_shift, cfg.delta_order, cfg.per_utt_cmvn) == (50.0, 12.5, 1, True)
    assert feature_dim(cfg) == 160
    f = compute_features(_wav(16000), cfg)
    assert f.shape == (1 + 16000 // 200, 160)
    # per-utterance CMVN: zero mean, unit (population) std per dimension
    assert f.mean(0).abs().max() < 1e-4
    assert (f.std(0, unbiased=False) - 1).abs().max() < 1e-3
    lin = compute_features(_wav(16000), FeatureConfig(feat_type="linear1025"))
    assert lin.shape == (81, 1025)
    assert lin.min() >= 0 and lin.max() <= 1
    # a 440 Hz tone peaks in FFT bin 440 / (16000 / 2048) = 56
    tone = 0.001 * torch.sin(2 * np.pi * 440 * torch.arange(16000) / 16000).float()
    lin = compute_features(tone, FeatureConfig(feat_type="linear1025", preemphasis_coefficient=0.0))
    assert int(lin[40].argmax()) in (56, 57)


def test_kaldi_delta_scales_and_edges():
    s = kaldi_delta_scales(2, 2)
    assert np.allclose(s[1], np.array([-2, -1, 0, 1, 2]) / 10)
    assert len(s[2]) == 9 and np.isclose(s[2].sum(), 0) and np.isclose(s[2][4], -10 / 100)
    x = torch.arange(12, dtype=torch.float32)[:, None] ** 2
    d = add_deltas(x, order=2, window=2)
    assert d.shape == (12, 3)
    # interior: slope of t^2 is 2t, second derivative 2
    assert torch.allclose(d[6, 1], torch.tensor(12.0)) and torch.allclose(d[6, 2], torch.tensor(2.0))
    # librosa style: interior equals the regression slope, edges fit a line to the first 9 frames
    ld = librosa_delta(torch.arange(20, dtype=torch.float32)[:, None] * 3.0)
    assert torch.allclose(ld, torch.full((20, 1), 3.0), atol=1e-5)


def test_batched_fbank_equals_single():
    cfg = FeatureConfig()
    wavs = [_wav(n, seed=n) for n in (16000, 300, 8000, 401, 1234)]
    batch = compute_fbank_batch(wavs, cfg)
    for w, b in zip(wavs, batch):
        single = compute_features(w, cfg)
        assert b.shape == single.shape
        assert torch.equal(b, single)


def test_dither_is_seeded():
    cfg = FeatureConfig(dither=1.0, seed=3)
    w = _wav(4000)
    a, b = compute_features(w, cfg), compute_features(w, cfg)
    assert torch.equal(a, b)
    assert not torch.equal(a, compute_features(w, cfg, seed=4))


def test_s3prl_audio_round_trip():
    cfg = FeatureConfig()
    d = cfg.to_s3prl_audio()
    assert d["kaldi"]["feat_type"] == "fbank"
    assert d["kaldi"]["fbank"]["num_mel_bins"] == 80 and d["kaldi"]["fbank"]["use_log_fbank"] is True
    assert d["delta"] == {"order": 0, "win_length": 5} and d["cmvn"] == {"use_cmvn": False}
    assert FeatureConfig.from_s3prl_audio(d) == cfg
    mf = FeatureConfig(feat_type="mfcc")
    assert FeatureConfig.from_s3prl_audio(mf.to_s3prl_audio()) == mf
    mel = FeatureConfig(feat_type="mel160")
    dm = mel.to_s3prl_audio()
    assert dm["input"]["feat_type"] == "mel" and dm["n_mels"] == 80 and dm["hop_ms"] == 12.5
    assert FeatureConfig.from_s3prl_audio(dm) == mel
    with pytest.raises(UserError, match="htk_compat"):
        FeatureConfig.from_s3prl_audio({"kaldi": {"feat_type": "fbank", "fbank": {"htk_compat": True}}})
    with pytest.raises(UserError, match="spectrogram"):
        FeatureConfig.from_s3prl_audio({"kaldi": {"feat_type": "spectrogram"}})
    apc = cfg.to_apc_audio()
    assert apc["feat_type"] == "fbank" and apc["feat_dim"] == 80
    assert FeatureConfig.from_apc_audio(apc) == cfg
    with pytest.raises(UserError, match="feat_dim"):
        FeatureConfig.from_apc_audio({"feat_type": "fbank"})


def test_label_rate_check():
    FeatureConfig().check_label_rate(10.0)
    with pytest.raises(UserError, match="mel160.*12.5 ms"):
        FeatureConfig(feat_type="mel160").check_label_rate(10.0)


def test_shipped_feature_configs_load():
    from pathlib import Path

    from s3prl.config import load_config

    conf = Path(__file__).resolve().parents[2] / "egs" / "librispeech" / "conf"
    dims = {"fbank": 80, "mfcc": 39, "mel160": 160, "linear1025": 1025}
    for name, dim in dims.items():
        cfg = load_config(FeatureConfig, conf / f"{name}.yaml")
        assert cfg.feat_type == name and feature_dim(cfg) == dim
        assert cfg == FeatureConfig(feat_type=name)  # the YAMLs spell out the defaults


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def torch_threads(request):
    """Run under 1 and 2 intra-op threads: BLAS splits a product's rows between threads, so a row
    of a large product can round differently from the same row in a small one."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(num_mel_bins=40, snip_edges=False),
                                 FeatureConfig(delta_order=2, per_utt_cmvn=True),
                                 FeatureConfig(feat_type="mfcc"), FeatureConfig(dither=1.0, seed=5)])
def test_compute_features_batch_is_bit_identical(cfg, torch_threads):
    from s3prl.features import compute_features_batch

    # 0, 1, 2, 3, ~50 and ~1000-frame utterances (the short ones hit BLAS's few-row kernels), and
    # the batch sizes compute_feats and the hub use (1, a few, 32)
    lens = [300, 400, 560, 720, 8000, 160000, 1234]
    wavs = [_wav(n, seed=n) for n in lens] + [_wav(1600 + 37 * i, seed=i) for i in range(25)]
    seeds = list(range(len(wavs)))
    singles = [compute_features(w, cfg, seed=s) for w, s in zip(wavs, seeds)]
    for lo, hi in [(0, len(wavs)), (4, 5), (4, 7), (7, 12)]:
        batch = compute_features_batch(wavs[lo:hi], cfg, seeds=seeds[lo:hi])
        for single, b in zip(singles[lo:hi], batch):
            assert b.shape == single.shape and b.dtype == torch.float32
            assert torch.equal(b, single)
    assert singles[0].shape == (0, feature_dim(cfg))
