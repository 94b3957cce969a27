"""TIMIT data prep (s3prl.data.timit) on a tiny fake corpus written here: NIST SPHERE audio with a
minimal header + int16 samples, .PHN/.WRD/.TXT transcriptions, upper- and lower-case layouts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s3prl.data.audio import load_audio
from s3prl.data.kaldi_dir import DataDir, validate_data_dir
from s3prl.data.timit import (CORE_TEST_SPEAKERS, DEV_SPEAKERS, map_phones, prepare_timit,
                              read_sphere_header)
from s3prl.errors import UserError

RATE = 16000


def write_sphere(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    """A minimal NIST SPHERE file: 1024-byte ASCII header, then little-endian int16 PCM."""
    fields = [f"sample_rate -i {rate}", f"sample_count -i {len(samples)}", "channel_count -i 1",
              "sample_n_bytes -i 2", "sample_coding -s3 pcm", "sample_byte_format -s2 01",
              "database_id -s5 TIMIT"]
    head = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\nend_head\n").encode("ascii")
    path.write_bytes(head + b" " * (1024 - len(head)) + samples.astype("<i2").tobytes())


PHN = [("h#", 0, 2000), ("sh", 2000, 3000), ("q", 3000, 3200), ("ix", 3200, 4000),
       ("hv", 4000, 5000), ("eh", 5000, 6000), ("dcl", 6000, 6400), ("axr", 6400, 7000),
       ("h#", 7000, 8000)]


def make_fake_timit(root: Path, lower: bool = False) -> dict[str, np.ndarray]:
    """3 speakers: fcjf0 (TRAIN), faks0 (TEST, dev list), mdab0 (TEST, core test), plus fdaw1
    (TEST, in neither list). Each reads SA1, SI<n>, SX<n>. Returns {uid: int16 samples}."""
    c = (lambda s: s.lower()) if lower else (lambda s: s.upper())
    speakers = [("TRAIN", "DR1", "FCJF0"), ("TEST", "DR1", "FAKS0"), ("TEST", "DR1", "MDAB0"),
                ("TEST", "DR2", "FDAW1")]
    rng = np.random.default_rng(0)
    audio = {}
    for part, dr, spk in speakers:
        d = root / c("TIMIT") / c(part) / c(dr) / c(spk)
        d.mkdir(parents=True)
        for k, utt in enumerate(("SA1", "SI943", "SX47")):
            n = 8000 + 160 * k
            x = (rng.standard_normal(n) * 3000).astype(np.int16)
            write_sphere(d / c(f"{utt}.WAV"), x)
            (d / c(f"{utt}.PHN")).write_text("".join(f"{b} {e} {p}\n" for p, b, e in PHN))
            (d / c(f"{utt}.WRD")).write_text("2000 5000 she\n5000 7000 had\n")
            (d / c(f"{utt}.TXT")).write_text(f"0 {n} She had.\n")
            audio[f"{spk.lower()}-{utt.lower()}"] = x
    return audio


def test_speaker_lists_and_phone_map_facts():
    assert len(DEV_SPEAKERS) == 50 and len(CORE_TEST_SPEAKERS) == 24
    assert not DEV_SPEAKERS & CORE_TEST_SPEAKERS
    assert {"faks0", "mrws1"} <= DEV_SPEAKERS and {"mdab0", "fmld0"} <= CORE_TEST_SPEAKERS
    phones = ["h#", "q", "ax-h", "axr", "bcl", "kcl", "zh", "ux", "ao"]
    assert map_phones(phones, 48) == ["sil", "ax", "er", "vcl", "cl", "zh", "uw", "ao"]
    assert map_phones(phones, 39) == ["sil", "ah", "er", "sil", "sil", "sh", "uw", "aa"]
    assert map_phones(phones, 60) == ["h#", "ax-h", "axr", "bcl", "kcl", "zh", "ux", "ao"]
    with pytest.raises(UserError, match="unknown TIMIT phone 'xx'"):
        map_phones(["xx"], 48, "f.PHN")


@pytest.mark.parametrize("lower", [False, True])
def test_prepare_timit_fake_corpus(tmp_path, lower):
    audio = make_fake_timit(tmp_path / "corpus", lower=lower)
    out = prepare_timit(tmp_path / "corpus", tmp_path / "data")
    for name in ("train", "dev", "test"):
        validate_data_dir(out[name], no_feats=True)
    tr, dv, te = (DataDir(out[s]) for s in ("train", "dev", "test"))
    # SA removed; speaker-prefixed ids with '-'; fdaw1 is in neither dev nor core test.
    assert tr.utts == ["fcjf0-si943", "fcjf0-sx47"]
    assert dv.utts == ["faks0-si943", "faks0-sx47"]
    assert te.utts == ["mdab0-si943", "mdab0-sx47"]
    assert te.utt2spk == {"mdab0-si943": "mdab0", "mdab0-sx47": "mdab0"}
    assert tr.spk2gender == {"fcjf0": "f"} and te.spk2gender == {"mdab0": "m"}
    # 61 -> 48 phones, q deleted.
    assert tr.text["fcjf0-si943"] == "sil sh ix hh eh vcl er sil"
    # Durations from the SPHERE header, audio readable by our loader and bit-exact.
    assert tr.utt2dur["fcjf0-si943"] == pytest.approx((8000 + 160) / RATE, abs=1e-3)
    entry = tr.wav_scp["fcjf0-sx47"]
    assert Path(entry).is_absolute()
    x = load_audio(entry, utt_id="fcjf0-sx47")
    np.testing.assert_array_equal(np.round(x * 32768).astype(np.int16), audio["fcjf0-sx47"])
    # The sclite reference of PyTorch-Kaldi's TIMIT scorer, in Kaldi's timit_data_prep.sh layout:
    # label header, then `utt 1 spk 0.0 dur <O,gender> 48-phone transcription`.
    stm = (out["test"] / "stm").read_text().splitlines()
    assert stm[:3] == [';; LABEL "O" "Overall" "Overall"', ';; LABEL "F" "Female" "Female speakers"',
                       ';; LABEL "M" "Male" "Male speakers"']
    assert stm[3:] == [f"mdab0-{u} 1 mdab0 0.0 {(8000 + 160 * k) / RATE:f} <O,M> sil sh ix hh eh vcl er sil"
                       for k, u in ((1, "si943"), (2, "sx47"))]
    assert (out["dev"] / "stm").read_text().splitlines()[3].split()[:6] == \
        ["faks0-si943", "1", "faks0", "0.0", f"{8160 / RATE:f}", "<O,F>"]
    glm = (out["train"] / "glm").read_text().splitlines()
    assert glm[0] == ";; empty.glm"
    assert glm[1].split() == "[FAKE] => %HESITATION / [ ] __ [ ] ;; hesitation token".split()
    # A second run is a no-op (complete sets are not rewritten); a set without stm is redone.
    mtime = (out["train"] / "text").stat().st_mtime_ns
    prepare_timit(tmp_path / "corpus", tmp_path / "data")
    assert (out["train"] / "text").stat().st_mtime_ns == mtime
    (out["dev"] / "stm").unlink()
    prepare_timit(tmp_path / "corpus", tmp_path / "data")
    assert (out["dev"] / "stm").read_text().splitlines()[3].startswith("faks0-si943 1 faks0 0.0 ")


def test_sphere_header_and_pipes(tmp_path):
    make_fake_timit(tmp_path / "c")
    wav = tmp_path / "c/TIMIT/TRAIN/DR1/FCJF0/SI943.WAV"
    h = read_sphere_header(wav)
    assert h["sample_rate"] == 16000 and h["sample_count"] == 8160 and h["header_bytes"] == 1024
    out = prepare_timit(tmp_path / "c", tmp_path / "d", wav_format="sox", phones=39)
    d = DataDir(out["train"])
    assert d.wav_scp["fcjf0-si943"] == f"sox {wav.resolve()} -t wav - |"
    assert d.text["fcjf0-si943"] == "sil sh ih hh eh sil er sil"
    # The stm stays in the 48-phone set the scorer maps from, whatever `phones` the text uses.
    assert (out["train"] / "stm").read_text().splitlines()[3].endswith("<O,F> sil sh ix hh eh vcl er sil")


@pytest.mark.parametrize("fmt,argv", [("sox", ["sox", None, "-t", "wav", "-", "|"]),
                                      ("sph2pipe", ["sph2pipe", "-f", "wav", None, "|"])])
def test_pipes_quote_paths_with_spaces(tmp_path, fmt, argv):
    import shlex

    make_fake_timit(tmp_path / "my corpus")
    wav = (tmp_path / "my corpus/TIMIT/TRAIN/DR1/FCJF0/SI943.WAV").resolve()
    out = prepare_timit(tmp_path / "my corpus", tmp_path / "d", wav_format=fmt)
    entry = DataDir(out["train"]).wav_scp["fcjf0-si943"]
    assert shlex.split(entry) == [str(wav) if a is None else a for a in argv]


def test_prepare_timit_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare_timit(tmp_path / "nope", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no TIMIT layout"):
        prepare_timit(tmp_path / "empty", tmp_path / "data")
    make_fake_timit(tmp_path / "c")
    phn = tmp_path / "c/TIMIT/TEST/DR1/MDAB0/SX47.PHN"
    phn.write_text("0 100 h#\n100 oops\n")
    with pytest.raises(UserError, match=r"SX47.PHN:2: expected 'BEGIN END PHONE'"):
        prepare_timit(tmp_path / "c", tmp_path / "data")
    # The CLI turns it into one line and exit 1.
    r = subprocess.run([sys.executable, "-m", "s3prl.bin.prepare_timit", str(tmp_path / "c"),
                        str(tmp_path / "data")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("prepare_timit: error:") or "error:" in r.stderr
    assert "SX47.PHN:2" in r.stderr
