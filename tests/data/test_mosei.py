"""CMU-MOSEI data prep: label modes, filters, the video-level split, bad label tables, and
segment slicing exact to the sample through compute_feats."""
from __future__ import annotations

import random
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from s3prl.data.kaldi_dir import read_kv, validate_data_dir
from s3prl.data.mosei import (PrepSettings, Segment, keep_segment, prepare_mosei, read_label_table,
                              read_sentiment_labels, sentiment_label, split_videos, utterance_id)
from s3prl.errors import UserError

SR = 16000


def test_label_modes_boundaries():
    scores = [-3.0, -2.5, -2.0, -1.0, -0.1, 0.1, 0.99, 1.0, 2.9, 3.0]
    assert [sentiment_label(s, "2class") for s in scores] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    # trunc toward zero, +3: (-1, 1) is the two-unit middle class; +-3 only at the ends
    assert [sentiment_label(s, "7class") for s in scores] == [0, 1, 1, 2, 3, 3, 3, 4, 5, 6]
    assert sentiment_label(-0.1, "regression") == pytest.approx(-0.1)
    assert sentiment_label(0.0, "2class") == 0
    with pytest.raises(UserError, match="label mode 'five'"):
        sentiment_label(1.0, "five")


@pytest.mark.parametrize("start,end,score,kept", [
    (0.0, 1.0, 1.0, True), (0.0, 0.999, 1.0, False), (2.0, 22.0, -2.0, True), (2.0, 22.001, -2.0, False),
    (0.0, 5.0, 0.1, True), (0.0, 5.0, -0.1, True), (0.0, 5.0, 0.09, False), (0.0, 5.0, 0.0, False),
])
def test_filter(start, end, score, kept):
    assert keep_segment(Segment("k", "v", start, end, score, 2), PrepSettings()) is kept


def test_split_by_video_reproducible_and_disjoint():
    videos = [f"v{i:03d}" for i in range(50)]
    a = split_videos(videos, seed=29)
    b = split_videos(list(reversed(videos)), seed=29)
    assert a == b
    assert [len(a[k]) for k in ("train", "dev", "test")] == [41, 4, 5]  # test round(5.0) = 5, dev round(4.5) = 4 (half to even)
    sides = [set(a[k]) for k in ("train", "dev", "test")]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert set().union(*sides) == set(videos)
    # the documented procedure: C-order list shuffled by random.Random(29); first 10 % = test
    order = sorted(videos)
    rng = random.Random(29)
    rng.shuffle(order)
    assert a["test"] == sorted(order[:5])
    assert split_videos(videos, seed=30) != a
    small = split_videos(["a", "b", "c"], seed=29)
    assert all(len(small[k]) == 1 for k in small)
    with pytest.raises(UserError, match="only 2 video"):
        split_videos(["a", "b"])


def test_utterance_id_sorts_with_video():
    assert utterance_id("-3g_yACwYnA", 1.5, 12.25) == "-3g_yACwYnA-00001500-00012250"


# ------------------------------------------------------------------------------ small corpus
def _corpus(root: Path, n_videos=6, seconds=30.0, rows=None, header="key,filename,start,end,sentiment"):
    """Videos of noise at 16 kHz and a label table; each video gets 4 segments of 1.5-3 s with
    scores alternating in sign, one too short and one neutral; `rows` are appended (line 38 on)."""
    audio = root / "Audio" / "Full" / "WAV_16000"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [header]
    for v in range(n_videos):
        vid = f"vid{v:02d}"
        sf.write(audio / f"{vid}.wav", (rng.standard_normal(int(seconds * SR)) * 0.1).astype(np.float32), SR,
                 subtype="PCM_16")
        segs = [(0.5, 2.5, 1.5), (3.0, 5.5, -2.0), (6.0, 8.123, 0.6667), (9.0, 12.0, -0.3333),
                (13.0, 13.5, 2.0), (14.0, 16.0, 0.0)]
        lines += [f"{vid}_{i},{vid},{s},{e},{sc}" for i, (s, e, sc) in enumerate(segs)]
    lines += rows or []
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_prepare_mosei_layout(tmp_path):
    corpus = _corpus(tmp_path / "c")
    c = prepare_mosei(corpus, tmp_path / "data", tmp_path / "labels")
    assert c["segments"] == 36 and c["kept"] == 24 and c["videos"] == 6 and not c["skipped"]
    assert (c["train_videos"], c["dev_videos"], c["test_videos"]) == (4, 1, 1)
    validate_data_dir(tmp_path / "data", no_feats=True, no_text=True)
    segs = read_kv(tmp_path / "data" / "segments")
    assert segs["vid00-00006000-00008123"] == "vid00 6.000 8.123"
    assert read_kv(tmp_path / "data" / "wav.scp")["vid03"] == str((corpus / "Audio/Full/WAV_16000/vid03.wav").resolve())
    assert read_kv(tmp_path / "data" / "utt2dur")["vid00-00000500-00002500"] == "2.000"
    scores, splits = read_sentiment_labels(tmp_path / "labels")
    assert scores["vid00-00003000-00005500"] == pytest.approx(-2.0)
    assert read_kv(tmp_path / "labels" / "utt2key")["vid00-00003000-00005500"] == "vid00_1"
    utt2spk = read_kv(tmp_path / "data" / "utt2spk")
    vids = {name: {utt2spk[u] for u in utts} for name, utts in splits.items()}
    assert not (vids["train"] & vids["test"]) and not (vids["train"] & vids["dev"]) and not (vids["dev"] & vids["test"])
    assert sum(len(u) for u in splits.values()) == 24
    # rerun: complete, nothing done; a different seed rebuilds
    assert prepare_mosei(corpus, tmp_path / "data", tmp_path / "labels")["skipped"]
    assert not prepare_mosei(corpus, tmp_path / "data", tmp_path / "labels", settings=PrepSettings(seed=3))["skipped"]


@pytest.mark.parametrize("row,message", [
    ("vid00_9,vid00,28.0,31.0,1.0", r"labels.csv:38: segment 'vid00_9' ends at 31 s, past the end"),
    ("vid00_9,vid00,5.0,5.0,1.0", r"labels.csv:38: segment 'vid00_9' has start 5 >= end 5"),
    ("vid00_9,vid00,6.0,5.0,1.0", r"labels.csv:38: segment 'vid00_9' has start 6 >= end 5"),
    ("vid00_9,vid00,1.0,3.0,", r"labels.csv:38: missing sentiment score"),
    ("vid00_9,vid00,1.0,3.0,positive", r"labels.csv:38: sentiment score 'positive' is not a number"),
    ("vid00_9,vid00,1.0,3.0,nan", r"labels.csv:38: sentiment score 'nan' is not a number"),
    ("vid00_9,vid00,1.0,3.0,3.5", r"labels.csv:38: sentiment score 3.5 is outside \[-3, 3\]"),
    ("vid00_9,vid00,x,3.0,1", r"labels.csv:38: start time 'x' is not a number"),
    ("vid00_1,vid00,1.0,3.0,1", r"labels.csv:38: segment id 'vid00_1' already on line 3"),
    ("vid99_0,vid99,1.0,3.0,1", r"labels.csv:38: no audio for video 'vid99'"),
    ("vid00_9,vid00,1.0", r"labels.csv:38: 3 fields"),
])
def test_bad_label_table(tmp_path, row, message):
    corpus = _corpus(tmp_path / "c", rows=[row])
    with pytest.raises(UserError, match=message):
        prepare_mosei(corpus, tmp_path / "data", tmp_path / "labels")
    assert not (tmp_path / "data").exists() and not (tmp_path / "labels").exists()


def test_label_table_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("Segment_ID,Start,End,Score\nabc_def_3,1,2.5,-1.25\n")
    (seg,) = read_label_table(p)
    assert (seg.key, seg.video, seg.start, seg.end, seg.score, seg.line) == ("abc_def_3", "abc_def", 1.0, 2.5, -1.25, 2)
    p.write_text("key,filename,begin,end,sentiment\n")
    with pytest.raises(UserError, match=r"t.csv:1: no start column"):
        read_label_table(p)


def test_skip_missing_audio(tmp_path):
    corpus = _corpus(tmp_path / "c", rows=["vid99_0,vid99,1.0,3.0,1"])
    c = prepare_mosei(corpus, tmp_path / "data", tmp_path / "labels", skip_missing_audio=True)
    assert c["kept"] == 24 and c["videos"] == 6


def test_prepare_mosei_cli_error(tmp_path, capsys):
    from s3prl.bin.prepare_mosei import main
    from s3prl.errors import cli_main

    corpus = _corpus(tmp_path / "c", rows=["vid00_9,vid00,1.0,3.0,"])
    with pytest.raises(SystemExit) as e:
        cli_main(main, [str(corpus), str(tmp_path / "d"), str(tmp_path / "l")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels.csv:38: missing sentiment score" in err[0]


# ------------------------------------------------------------------------------ segments exact
def test_segment_features_exact_to_the_sample(tmp_path):
    """compute_feats on a segments data dir == the same features of the audio sliced by hand
    (Kaldi rounding: samples round(start * 16000) .. round(end * 16000))."""
    from s3prl.bin.compute_feats import main as compute_main
    from s3prl.config import load_config
    from s3prl.features import compute_features
    from s3prl.features.config import FeatureConfig

    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(5 * SR) * 0.2).astype(np.float32)
    wav = tmp_path / "rec.wav"
    sf.write(wav, audio, SR, subtype="PCM_16")
    pcm = sf.read(wav, dtype="float32")[0]
    d = tmp_path / "data"
    d.mkdir()
    segs = {"rec-a": ("rec", 0.123456, 1.987654), "rec-b": ("rec", 2.00003, 3.5), "rec-c": ("rec", 0.0, 5.0)}
    (d / "wav.scp").write_text(f"rec {wav}\n")
    (d / "segments").write_text("".join(f"{u} {r} {s} {e}\n" for u, (r, s, e) in sorted(segs.items())))
    (d / "utt2spk").write_text("".join(f"{u} rec\n" for u in sorted(segs)))
    (d / "spk2utt").write_text("rec " + " ".join(sorted(segs)) + "\n")
    conf = Path(__file__).resolve().parents[2] / "egs" / "mosei" / "conf" / "fbank.yaml"
    compute_main(["--config", str(conf), str(d), str(tmp_path / "out" / "raw")])
    cfg = load_config(FeatureConfig, conf)
    got = {k: np.array(v) for k, v in kaldiio.load_scp(str(tmp_path / "out" / "raw.scp")).items()}
    for u, (_, s, e) in segs.items():
        piece = pcm[int(round(s * SR)):int(round(e * SR))]
        want = compute_features(piece, cfg).numpy()
        assert got[u].shape == want.shape == (1 + (len(piece) - 400) // 160, 80)
        np.testing.assert_array_equal(got[u], want)
    assert got["rec-a"].shape[0] == 1 + (int(round(1.987654 * SR)) - int(round(0.123456 * SR)) - 400) // 160
