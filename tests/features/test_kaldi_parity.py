"""Our Kaldi features against an independent implementation of Kaldi's feature code: k2-fsa's
kaldi-native-fbank (a C++ port of Kaldi's `feat/feature-fbank.cc`, `feature-mfcc.cc` and
`feature-window.cc`), on speech from espeak-ng and on noise, with Kaldi's int16 sample scale.

The README says our fbank / MFCC are Kaldi's: this is the test that backs it. Differences are
float rounding (log-mel values around 16; <= 1e-3 absolute)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl.features import compute_features
from s3prl.features.config import FeatureConfig

knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank (pip install '.[test]') is the reference")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 3 s of espeak-ng speech at 16 kHz (odd length), or noise where espeak-ng is missing."""
    import torchaudio.functional as F

    if shutil.which("espeak-ng") is None:
        return (0.1 * np.random.default_rng(0).standard_normal(47123)).astype(np.float32)
    path = tmp_path_factory.mktemp("speech") / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "the quick brown fox jumps over the lazy dog"], check=True,
                   capture_output=True)
    x, sr = sf.read(path, dtype="float32")
    return F.resample(torch.from_numpy(x), sr, 16000).numpy()[:-7]


def reference(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    if cfg.feat_type == "fbank":
        opts = knf.FbankOptions()
        opts.mel_opts.num_bins = cfg.num_mel_bins
        opts.energy_floor = cfg.energy_floor
        opts.use_energy = cfg.use_energy
        comp = knf.OnlineFbank
    else:
        opts = knf.MfccOptions()
        opts.mel_opts.num_bins = cfg.num_mel_bins
        opts.num_ceps = cfg.num_ceps
        opts.cepstral_lifter = cfg.cepstral_lifter
        opts.energy_floor = cfg.energy_floor
        opts.use_energy = cfg.use_energy
        opts.raw_energy = cfg.raw_energy
        comp = knf.OnlineMfcc
    fo = opts.frame_opts
    fo.samp_freq, fo.dither, fo.snip_edges = 16000, 0.0, cfg.snip_edges
    fo.frame_length_ms, fo.frame_shift_ms = cfg.frame_length, cfg.frame_shift
    fo.preemph_coeff, fo.remove_dc_offset, fo.window_type = (cfg.preemphasis_coefficient, cfg.remove_dc_offset,
                                                             cfg.window_type)
    opts.mel_opts.low_freq, opts.mel_opts.high_freq = cfg.low_freq, cfg.high_freq
    f = comp(opts)
    f.accept_waveform(16000, (x * 32768.0).tolist())
    f.input_finished()
    return np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])


@pytest.mark.parametrize("kw", [
    dict(feat_type="fbank"),
    dict(feat_type="fbank", num_mel_bins=40, snip_edges=False),
    dict(feat_type="fbank", window_type="hamming"),
    dict(feat_type="mfcc", delta_order=0),
    dict(feat_type="mfcc", delta_order=0, use_energy=True, num_mel_bins=40, num_ceps=20),
])
def test_features_match_kaldi_native_fbank(speech, kw):
    cfg = FeatureConfig(**kw)
    ours = compute_features(speech, cfg).numpy()
    ref = reference(speech, cfg)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=1e-4)
    # the check can fail: another window is far off
    other = FeatureConfig(**{**kw, "window_type": "rectangular"})
    assert np.abs(compute_features(speech, other).numpy() - ref).max() > 0.05
