"""Tests of the synthetic LibriSpeech generator (tools/synth): layout and formats read back
independently, exact label lengths, CPC split, byte-identical reruns (also across --jobs),
seed sensitivity, idempotent reruns and one-line errors."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
SYNTH = REPO / "tools" / "synth"
sys.path.insert(0, str(SYNTH))

import engines  # noqa: E402
import librispeech  # noqa: E402
import phones  # noqa: E402
import text as textlib  # noqa: E402
from s3prl.errors import UserError  # noqa: E402

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny corpus"  # a space in the path on purpose
    assert librispeech.main(["--out", str(out), "--preset", "tiny", "--seed", "7", "--jobs", "2"]) == 0
    return out


def read_labels(out: Path) -> dict[str, np.ndarray]:
    lines = (out / "cpc" / "converted_aligned_phones.txt").read_text().splitlines()
    return {ln.split()[0]: np.array(ln.split()[1:], dtype=np.int64) for ln in lines}


# ---------------------------------------------------------------- unit level
def test_phone_table_is_kaldi_sets_order():
    assert len(phones.PHONES) == 41
    assert phones.PHONES[:4] == ["SIL", "SPN", "AA", "AE"] and phones.PHONES[-1] == "ZH"
    assert phones.PHONES[2:] == sorted(phones.PHONES[2:])


def test_frame_labels_snip_edges_centres():
    assert phones.num_frames(399) == 0 and phones.num_frames(400) == 1 and phones.num_frames(16000) == 98
    # AA covers [360, 520): centres 200, 360, 520 -> frames 0 (SIL), 1 (AA), 2 (SIL: end is exclusive)
    lab = phones.frame_labels([("AA", 360, 520), ("ZH", 520, 700)], 800)
    assert lab.tolist() == [0, 2, 40]


def test_phone_maps():
    assert phones.map_festival("ax") == ["AH"] and phones.map_festival("pau") == ["SIL"]
    assert phones.map_festival("zh") == ["ZH"] and phones.map_festival("qq") == ["SPN"]
    assert phones.map_espeak("A@", "en-us") == ["AA", "R"]
    assert phones.map_espeak("A@", "en-gb-x-rp") == ["AA"]
    assert phones.map_espeak("3", "en-gb-x-rp") == ["AH"] and phones.map_espeak("3", "en-us") == ["ER"]
    parts = phones.split_segment(["AY", "ER"], 0.0, 100.0)
    assert parts == [("AY", 0.0, 60.0), ("ER", 60.0, 100.0)]


def test_transcript_and_sentences():
    assert textlib.transcript("Don't panic, it's well-known!") == "DON'T PANIC IT'S WELL KNOWN"
    sents = textlib.load_sentences()
    assert len(sents) > 7000 and len(set(sents)) == len(sents)
    assert all(re.fullmatch(r"[A-Za-z ,.;'!?-]+", s) for s in sents)
    texts = textlib.make_texts(sents, np.random.default_rng(0), 50)
    assert len(texts) == 50 and all(20 <= len(t) <= 115 + 110 for t in texts)
    assert texts == textlib.make_texts(sents, np.random.default_rng(0), 50)


def test_resample_scale_is_exact():
    y, scale = engines.resample_to_16k(np.zeros(22050, np.float32), 22050)
    assert scale == 320 / 441 and len(y) == 16000


def test_missing_engine_names_apt_package(monkeypatch):
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=r"apt-get install flite"):
        engines.check_engines(["flite"])
    with pytest.raises(UserError, match=r"apt-get install festival"):
        engines.check_engines(["hts"])


# ---------------------------------------------------------------- the tiny corpus
def test_layout_and_audio(tiny):
    ls = tiny / "LibriSpeech"
    man = json.loads((tiny / "manifest.json").read_text())
    assert man["preset"] == "tiny" and man["seed"] == 7
    speakers = {s: sorted(p.name for p in (ls / s).iterdir()) for s in SUBSETS}
    assert [len(speakers[s]) for s in SUBSETS] == [6, 2, 2]
    all_spk = sum(speakers.values(), [])
    assert len(set(all_spk)) == 10  # dev/test speakers differ from train speakers
    n_utts = {s: 0 for s in SUBSETS}
    for subset in SUBSETS:
        for spk in speakers[subset]:
            chapters = sorted((ls / subset / spk).iterdir())
            assert len(chapters) == 2
            for ch in chapters:
                trans = ch / f"{spk}-{ch.name}.trans.txt"
                lines = trans.read_text().splitlines()
                flacs = sorted(p.stem for p in ch.glob("*.flac"))
                assert [ln.split(" ", 1)[0] for ln in lines] == flacs
                for ln in lines:
                    assert re.fullmatch(rf"{spk}-{ch.name}-\d{{4}} [A-Z']+( [A-Z']+)*", ln), ln
                for stem in flacs:
                    info = sf.info(str(ch / f"{stem}.flac"))
                    assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
                    assert 3.0 <= info.frames / 16000 <= 8.0
                n_utts[subset] += len(flacs)
    assert n_utts == {"train-clean-100": 24, "dev-clean": 4, "test-clean": 4}
    assert {k: v["utterances"] for k, v in man["subsets"].items()} == n_utts
    assert set(man["packages"]) >= {"festival", "flite", "htsengine", "libespeak-ng1", "festvox-us-slt-hts"}


def test_speakers_txt(tiny):
    rows = [ln for ln in (tiny / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines()]
    assert rows[0].startswith(";") and any(r.startswith(";ID") for r in rows)
    body = [r for r in rows if not r.startswith(";")]
    assert len(body) == 10
    for r in body:
        spk, sex, subset, minutes, name = [f.strip() for f in r.split("|")]
        assert spk.isdigit() and sex in ("M", "F") and subset in SUBSETS and name
        assert (tiny / "LibriSpeech" / subset / spk).is_dir()
        assert 0.05 < float(minutes) < 1.0
    tsv = (tiny / "speakers.tsv").read_text().splitlines()
    assert len(tsv) == 11 and {ln.split("\t")[2] for ln in tsv[1:]} == {"hts", "flite", "espeak"}
    for ln in tsv[1:]:
        assert "channels" in json.loads(ln.split("\t")[5])


def test_labels_match_audio(tiny):
    labels = read_labels(tiny)
    train = tiny / "LibriSpeech" / "train-clean-100"
    flacs = {p.stem: p for p in train.rglob("*.flac")}
    assert set(labels) == set(flacs)
    seen = set()
    for uid, lab in labels.items():
        n = sf.info(str(flacs[uid])).frames
        assert len(lab) == 1 + (n - 400) // 160
        assert lab.min() >= 0 and lab.max() <= 40
        assert lab[0] == 0 and lab[-1] == 0  # SIL in the padded edges
        assert (lab != 0).mean() > 0.5  # mostly speech
        assert not (lab == 1).any()  # no unknown (SPN) phones
        seen.update(lab.tolist())
    assert len(seen) > 25
    assert (tiny / "cpc" / "phones.txt").read_text().splitlines()[:3] == ["0 SIL", "1 SPN", "2 AA"]


def test_lexicon_covers_every_word_in_the_label_phone_set(tiny):
    import lexicon
    lex = {}
    for ln in (tiny / "lexicon.txt").read_text().splitlines():
        w, *ph = ln.split()
        lex[w] = ph
    assert lex["!SIL"] == ["SIL"] and lex["<UNK>"] == ["SPN"]
    words = {w for f in (tiny / "LibriSpeech").rglob("*.trans.txt") for ln in f.read_text().splitlines()
             for w in ln.split()[1:]}
    assert words == set(lex) - {"!SIL", "<UNK>"}
    assert all(p in phones.PHONE_ID and p not in ("SIL", "SPN") for w in words for p in lex[w])
    assert lexicon.festival_pronunciations(["HELLO", "'ROUND"]) == {"HELLO": ["HH", "AH", "L", "OW"],
                                                                   "'ROUND": ["R", "AW", "N", "D"]}
    assert json.loads((tiny / "manifest.json").read_text())["lexicon"] == len(lex)


def test_split_covers_every_utterance_once(tiny):
    labels = read_labels(tiny)
    train = (tiny / "cpc" / "train_split.txt").read_text().split()
    test = (tiny / "cpc" / "test_split.txt").read_text().split()
    assert sorted(train + test) == sorted(labels) and not set(train) & set(test)
    spk = lambda ids: {u.split("-")[0] for u in ids}  # noqa: E731
    assert spk(train) == spk(test) == spk(labels)
    assert len(test) == 6 and len(train) == 18  # 1 of 4 per speaker


def test_rerun_is_noop_and_other_settings_refused(tiny, capfd):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    assert librispeech.main(["--out", str(tiny), "--preset", "tiny", "--seed", "7"]) == 0
    assert "nothing to do" in capfd.readouterr().err
    cfg = librispeech.PRESETS["tiny"]
    assert librispeech.generate(tiny, librispeech.CorpusConfig(**{**cfg.__dict__, "seed": 7})) is False
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before
    with pytest.raises(UserError, match="seed=7"):
        librispeech.main(["--out", str(tiny), "--preset", "tiny", "--seed", "8"])
    with pytest.raises(UserError, match="preset='tiny'"):
        librispeech.main(["--out", str(tiny), "--preset", "default", "--seed", "7"])


def test_deterministic_across_jobs(tiny, tmp_path):
    again = tmp_path / "again"
    assert librispeech.main(["--out", str(again), "--preset", "tiny", "--seed", "7", "--jobs", "1"]) == 0
    a, b = digests(tiny), digests(again)
    assert len(a) == 60 and a == b  # 32 flac, 20 trans.txt, SPEAKERS.TXT, 4 cpc, tsv, manifest, lexicon
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]  # no temporary leftovers


def test_other_seed_gives_other_audio(tiny, tmp_path):
    other = tmp_path / "other"
    assert librispeech.main(["--out", str(other), "--preset", "tiny", "--seed", "8", "--speakers", "2",
                             "--engines", "espeak,flite"]) == 0
    flac = lambda root: {d for k, d in digests(root).items() if k.endswith(".flac")}  # noqa: E731
    assert flac(tiny).isdisjoint(flac(other))
    assert json.loads((other / "manifest.json").read_text())["engines"] == {"espeak": 3, "flite": 3, "hts": 0}


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken_build(cfg, out, jobs):
        (out / "LibriSpeech").mkdir()
        raise RuntimeError("engine crashed")
    monkeypatch.setattr(librispeech, "build", broken_build)
    with pytest.raises(RuntimeError):
        librispeech.main(["--out", str(tmp_path / "c"), "--preset", "tiny"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "not a corpus"
    bad.mkdir()
    (bad / "x").write_text("x")
    for args in (["--out", str(bad), "--preset", "tiny"],
                 ["--out", str(tmp_path / "n"), "--preset", "tiny", "--engines", "hts,mbrola"],
                 ["--out", str(tmp_path / "n"), "--preset", "tiny", "--utts", "1"]):
        r = subprocess.run([sys.executable, str(SYNTH / "librispeech.py"), *args], capture_output=True, text=True)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "error:" in r.stderr


def test_shell_wrapper(tiny, tmp_path):
    script = REPO / "tools" / "make_synthetic_corpus.sh"
    r = subprocess.run(["bash", str(script), "--preset", "tiny", "--seed", "7", str(tiny)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "nothing to do" in r.stderr, r.stderr
    r = subprocess.run(["bash", str(script), "--speed", "3", str(tiny)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and "unknown option --speed" in r.stderr
