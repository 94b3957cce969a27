"""utils/compute_feats.sh and the compute_feats / compute_cmvn_stats verbs on a small generated data dir."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3prl.data.ark import read_scp_stats
from s3prl.features import FeatureConfig, compute_features, num_frames
from tests.kaldi_binary import read_scp

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "utils" / "compute_feats.sh"


def _make_data(root: Path, lengths: dict) -> Path:
    """A data dir with 3 speakers; one recording split by segments, one FLAC pipe, the rest wavs."""
    rng = np.random.default_rng(7)
    wav_dir = root / "wav dir"
    wav_dir.mkdir(parents=True)
    data = root / "data set" / "train"
    data.mkdir(parents=True)
    wav_scp, utt2spk, text = [], [], []
    for utt, n in sorted(lengths.items()):
        x = np.round(rng.standard_normal(n) * 3000).astype(np.int16)
        if utt.endswith("3"):
            sf.write(wav_dir / f"{utt}.flac", x, 16000, subtype="PCM_16")
            wav_scp.append(f"{utt} flac -c -d -s '{wav_dir}/{utt}.flac' |")
        else:
            sf.write(wav_dir / f"{utt}.wav", x, 16000, subtype="PCM_16")
            wav_scp.append(f"{utt} {wav_dir}/{utt}.wav")
        utt2spk.append(f"{utt} {utt.split('-')[0]}")
        text.append(f"{utt} HELLO")
    (data / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (data / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    spk2utt = {}
    for line in utt2spk:
        u, s = line.split()
        spk2utt.setdefault(s, []).append(u)
    (data / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    return data


def _run(*args, cwd=None):
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("flac") is None, reason="flac binary not installed")
def test_compute_feats_sh(tmp_path):
    lengths = {"a-1": 8000, "a-2": 4321, "a-3": 6000, "b-1": 5000, "b-2": 3000, "c-1": 7777}
    data = _make_data(tmp_path, lengths)
    conf = ROOT / "egs" / "librispeech" / "conf" / "fbank.yaml"
    # run from an unrelated directory, with spaces in every path
    r = _run("--nj", 2, "--config", conf, data, tmp_path / "exp log", tmp_path / "feat dir", cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    feats = read_scp(data / "feats.scp")
    assert list(feats) == sorted(lengths)
    cfg = FeatureConfig()
    from s3prl.data import audio

    for utt, n in lengths.items():
        assert feats[utt].shape == (num_frames(n, cfg), 80) == (1 + (n - 400) // 160, 80)
        ent = [l for l in (data / "wav.scp").read_text().splitlines() if l.startswith(utt + " ")][0]
        wav = audio.load_audio(ent.split(" ", 1)[1], utt_id=utt)
        assert np.abs(feats[utt] - compute_features(wav, cfg).numpy()).max() < 1e-5
    scp_paths = [l.split(" ", 1)[1] for l in (data / "feats.scp").read_text().splitlines()]
    assert all(p.startswith(str(tmp_path / "feat dir") + "/raw_fbank_train.") for p in scp_paths)
    assert (data / "utt2num_frames").read_text().splitlines()[0] == f"a-1 {1 + (8000 - 400) // 160}"
    assert (data / "feats_dim").read_text().strip() == "80"
    assert (data / "frame_shift").read_text().strip() == "0.01"
    # per-speaker CMVN stats, checked by hand
    cmvn = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in (data / "cmvn.scp").read_text().splitlines()}
    assert sorted(cmvn) == ["a", "b", "c"]
    st = read_scp_stats(cmvn["b"])
    both = np.concatenate([feats["b-1"], feats["b-2"]]).astype(np.float64)
    assert st[0, -1] == len(both) and np.allclose(st[0, :-1], both.sum(0)) and np.allclose(st[1, :-1], (both ** 2).sum(0))
    assert (data / "conf" / "feats.yaml").is_file()

    # rerun: nothing to do
    mtime = (data / "feats.scp").stat().st_mtime_ns
    r2 = _run("--nj", 2, "--config", conf, data, tmp_path / "exp log", tmp_path / "feat dir")
    assert r2.returncode == 0 and "skip" in r2.stdout
    assert (data / "feats.scp").stat().st_mtime_ns == mtime

    # a different config is not "done": the script would redo the work
    from s3prl.bin.compute_feats import features_done

    assert features_done(data, FeatureConfig())
    assert not features_done(data, FeatureConfig(feat_type="mfcc"))
    assert not features_done(data, FeatureConfig(num_mel_bins=40))


def test_nj_more_than_speakers_is_an_error(tmp_path):
    data = _make_data(tmp_path, {"a-1": 4000, "b-1": 4000})
    r = _run("--nj", 3, data, tmp_path / "log", tmp_path / "feats")
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--nj 3 is more than the number of speakers (2)" in err[0]
    assert not (data / "feats.scp").exists()


def test_unreadable_utterance_names_it(tmp_path):
    from s3prl.bin.compute_feats import main

    data = _make_data(tmp_path, {"a-1": 4000, "a-2": 4000})
    (tmp_path / "wav dir" / "a-2.wav").write_bytes(b"not a wav at all")
    from s3prl.errors import UserError

    with pytest.raises(UserError, match=r"utterance a-2: cannot read audio"):
        main([str(data), str(tmp_path / "out" / "raw")])
    assert not (tmp_path / "out" / "raw.scp").exists()
    # a too short utterance
    (tmp_path / "wav dir" / "a-2.wav").unlink()
    sf.write(tmp_path / "wav dir" / "a-2.wav", np.zeros(100, dtype=np.int16), 16000, subtype="PCM_16")
    from s3prl.data import audio

    audio.clear_cache()
    with pytest.raises(UserError, match=r"utterance a-2: 100 samples is shorter than one 25 ms frame"):
        main([str(data), str(tmp_path / "out" / "raw")])
