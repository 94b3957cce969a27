"""Tests of the synthetic CMU-MOSEI generator (tools/synth/mosei.py) and its sentence scores:
layout read back independently, segments inside their videos, polarity balanced in every video,
byte-identical reruns across --jobs, seed sensitivity, idempotent reruns and one-line errors."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "synth"))

import mosei  # noqa: E402
import sentiment_text as st  # noqa: E402
from s3prl.errors import UserError  # noqa: E402

SMALL = mosei.MoseiConfig(preset="tiny", seed=5, speakers=2, videos=2, opinions=4, engines=["espeak"])


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mosei") / "small corpus"   # a space in the path on purpose
    assert mosei.generate(out, SMALL, jobs=2)
    return out


def test_sentences_scores_follow_the_words():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pos = bool(rng.random() < 0.5)
        s = st.opinion_sentence(rng, pos)
        assert s.word in s.text and (s.score > 0) == pos
        strength = abs(st.ADJECTIVES[s.word]) + any(f"{i} {s.word}" in s.text for i in st.INTENSIFIERS)
        assert abs(abs(s.score) - strength) <= 1 / 3 + 1e-4
        assert 1 / 3 - 1e-4 <= abs(s.score) <= 3 and abs(round(abs(s.score) * 3) - abs(s.score) * 3) < 1e-3
    script = st.video_script(np.random.default_rng(1), 7, 1, 1)
    kinds = [s.kind for s in script]
    assert len(script) == 9 and kinds.count("neutral") == kinds.count("filler") == 1
    assert abs(kinds.count("positive") - kinds.count("negative")) == 1
    again = st.video_script(np.random.default_rng(1), 7, 1, 1)
    assert again == script


def test_layout_and_labels(corpus):
    man = json.loads((corpus / "manifest.json").read_text())
    assert man["videos"] == 4 and man["segments"] == 4 * 6
    assert man["segment_kinds"] == {"positive": 8, "negative": 8, "neutral": 4, "filler": 4}
    with open(corpus / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["key", "filename", "start", "end", "sentiment"]
    rows = rows[1:]
    assert len(rows) == 24
    by_video: dict[str, list] = {}
    for key, vid, start, end, score in rows:
        assert key.startswith(vid + "_") and len(vid) == 11
        by_video.setdefault(vid, []).append((float(start), float(end), float(score)))
    assert len(by_video) == 4
    for vid, segs in by_video.items():
        info = sf.info(str(corpus / "Audio" / "Full" / "WAV_16000" / f"{vid}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        segs.sort()
        for (s0, e0, _), (s1, _, _) in zip(segs, segs[1:]):
            assert e0 < s1                                     # segments never overlap
        assert 0 <= segs[0][0] and segs[-1][1] <= info.frames / 16000
        scores = [sc for _, _, sc in segs]
        assert sum(sc > 0 for sc in scores) == sum(sc < 0 for sc in scores) == 2   # balanced in every video
        assert sum(sc == 0 for sc in scores) == 2
    transcript = (corpus / "Transcript" / "Segmented" / "Combined" / f"{rows[0][1]}.txt").read_text().splitlines()
    assert len(transcript) == 6 and transcript[0].startswith(f"{rows[0][1]}___0___")
    # fillers are short, opinions long enough for the 1 s filter
    tsv = (corpus / "speakers.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[:3] == ["speaker", "engine", "sex"] and len(tsv) == 3


def test_segments_hold_speech(corpus):
    """Every labelled span is louder than the pauses between spans (the cut follows the speech)."""
    with open(corpus / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    vid = rows[0]["filename"]
    y, sr = sf.read(str(corpus / "Audio" / "Full" / "WAV_16000" / f"{vid}.wav"))
    spans = sorted((float(r["start"]), float(r["end"])) for r in rows if r["filename"] == vid)
    inside = np.concatenate([y[int(s * sr):int(e * sr)] for s, e in spans])
    gaps = np.concatenate([y[int(e * sr) + 800:int(s * sr) - 800] for (_, e), (s, _) in zip(spans, spans[1:])])
    assert np.sqrt(np.mean(inside ** 2)) > 3 * np.sqrt(np.mean(gaps ** 2))


def test_reproducible_across_jobs_and_seed(corpus, tmp_path):
    again = tmp_path / "again"
    assert mosei.generate(again, SMALL, jobs=1)
    assert digests(again) == digests(corpus)
    other = tmp_path / "other"
    assert mosei.generate(other, dataclasses.replace(SMALL, seed=6, speakers=1, videos=3), jobs=1)
    assert (other / "labels.csv").read_text() != (corpus / "labels.csv").read_text()


def test_idempotent_and_conflicts(corpus, tmp_path):
    before = digests(corpus)
    assert mosei.generate(corpus, SMALL, jobs=1) is False
    assert digests(corpus) == before
    with pytest.raises(UserError, match=r"already holds a corpus built with seed=5 \(asked 9\)"):
        mosei.generate(corpus, dataclasses.replace(SMALL, seed=9))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x").write_text("x")
    with pytest.raises(UserError, match="not a complete synthetic MOSEI corpus"):
        mosei.generate(junk, SMALL)
    with pytest.raises(UserError, match="--opinions must be >= 2"):
        mosei.generate(tmp_path / "bad", dataclasses.replace(SMALL, opinions=1))
    with pytest.raises(UserError, match="unknown engine 'tts'"):
        mosei.generate(tmp_path / "bad", dataclasses.replace(SMALL, engines=["tts"]))
    assert not (tmp_path / "bad").exists()


def test_prepare_reads_the_synthetic_corpus(corpus, tmp_path):
    from s3prl.data.mosei import prepare_mosei, read_sentiment_labels

    c = prepare_mosei(corpus, tmp_path / "data", tmp_path / "labels")
    assert c["segments"] == 24 and c["kept"] == 16 and c["videos"] == 4     # neutral + fillers dropped
    scores, splits = read_sentiment_labels(tmp_path / "labels")
    assert all(abs(s) >= 1 / 3 - 1e-3 for s in scores.values())
    assert sorted(len(v) for v in splits.values()) == [4, 4, 8]
