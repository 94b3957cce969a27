"""Audio reading: wav.scp paths and pipes, resampling, segments, and the errors."""
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from s3prl.data import audio
from s3prl.data.audio import load_audio, load_utterance
from s3prl.errors import UserError


@pytest.fixture(autouse=True)
def _fresh_cache():
    audio.clear_cache()
    audio._NOTIFIED_RATES.clear()
    yield
    audio.clear_cache()


def _signal(n, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 300 * np.arange(n) / sr) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def test_int16_and_float_wav(tmp_path):
    x = _signal(8000)
    q = np.round(x * 32767).astype(np.int16)
    sf.write(tmp_path / "a.wav", q, 16000, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", x, 16000, subtype="FLOAT")
    a = load_audio(str(tmp_path / "a.wav"), utt_id="u1")
    b = load_audio(str(tmp_path / "b.wav"), utt_id="u2")
    assert a.dtype == np.float32 and a.shape == (8000,)
    assert np.array_equal(a, q.astype(np.float32) / 32768)
    assert np.array_equal(b, x)
    a[0] = 5.0  # writable copy


@pytest.mark.skipif(shutil.which("flac") is None, reason="flac binary not installed")
def test_flac_pipe_entry(tmp_path):
    x = _signal(4000)
    q = np.round(x * 32767).astype(np.int16)
    sf.write(tmp_path / "x y.flac", q, 16000, subtype="PCM_16")
    entry = f"flac -c -d -s '{tmp_path}/x y.flac' |"
    y = load_audio(entry, utt_id="u1")
    assert np.array_equal(y, q.astype(np.float32) / 32768)
    with pytest.raises(UserError, match="utterance u9: pipe .* failed"):
        load_audio(f"flac -c -d -s {tmp_path}/missing.flac |", utt_id="u9")


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampled_with_notice(tmp_path, caplog, rate):
    n = rate // 2
    sf.write(tmp_path / "r.wav", _signal(n, sr=rate), rate)
    with caplog.at_level(logging.INFO, logger="s3prl.data.audio"):
        y = load_audio(str(tmp_path / "r.wav"), utt_id="u1")
        audio.clear_cache()
        load_audio(str(tmp_path / "r.wav"), utt_id="u2")
    assert abs(len(y) - 8000) <= 1
    notices = [r for r in caplog.records if f"{rate} Hz" in r.getMessage()]
    assert len(notices) == 1
    # the 300 Hz tone survives resampling
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 300) < 5
    with pytest.raises(UserError, match=f"sample rate {rate}"):
        load_audio(str(tmp_path / "r.wav"), utt_id="u3", resample=False)


def test_stereo_zero_length_corrupt(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros((100, 2), dtype=np.float32), 16000)
    with pytest.raises(UserError, match=r"utterance spk-1: stereo audio .*s\.wav"):
        load_audio(str(tmp_path / "s.wav"), utt_id="spk-1")
    sf.write(tmp_path / "z.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(UserError, match="utterance spk-2: zero-length audio"):
        load_audio(str(tmp_path / "z.wav"), utt_id="spk-2")
    (tmp_path / "c.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(UserError, match=r"utterance spk-3: cannot read audio .*c\.wav"):
        load_audio(str(tmp_path / "c.wav"), utt_id="spk-3")
    with pytest.raises(UserError, match="utterance spk-4.*nothere.wav"):
        load_audio(str(tmp_path / "nothere.wav"), utt_id="spk-4")


def test_segments_exact_to_the_sample(tmp_path):
    x = np.arange(32000, dtype=np.int16)
    sf.write(tmp_path / "rec.wav", x, 16000, subtype="PCM_16")
    p = str(tmp_path / "rec.wav")
    y = load_audio(p, utt_id="u1", segment=(0.10003, 0.25))
    assert len(y) == round(0.25 * 16000) - round(0.10003 * 16000)
    assert y[0] * 32768 == round(0.10003 * 16000) and y[-1] * 32768 == 3999
    assert len(load_audio(p, utt_id="u2", segment=(1.5, -1))) == 8000
    with pytest.raises(UserError, match="u3: segment end 2.5s is past the end"):
        load_audio(p, utt_id="u3", segment=(1.0, 2.5))
    with pytest.raises(UserError, match="u4: bad segment"):
        load_audio(p, utt_id="u4", segment=(0.5, 0.5))


class _Dir:
    def __init__(self, path, wav_scp, segments=None):
        self.path, self.wav_scp, self.segments = path, wav_scp, segments


def test_load_utterance_with_segments(tmp_path):
    sf.write(tmp_path / "rec.wav", np.arange(16000, dtype=np.int16), 16000, subtype="PCM_16")
    d = _Dir(tmp_path, {"rec": str(tmp_path / "rec.wav")}, {"s-a": ("rec", 0.0, 0.5), "s-b": ("rec", 0.5, 1.0)})
    a = load_utterance(d, "s-a")
    b = load_utterance(d, "s-b")
    assert len(a) == len(b) == 8000 and b[0] * 32768 == 8000
    d2 = _Dir(tmp_path, {"u": str(tmp_path / "rec.wav")})
    assert len(load_utterance(d2, "u")) == 16000
    with pytest.raises(UserError, match="no entry for utterance v"):
        load_utterance(d2, "v")
