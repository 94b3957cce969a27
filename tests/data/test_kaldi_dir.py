"""Tests of s3prl.data.kaldi_dir: table I/O, DataDir, validation, fix, split and subset."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from s3prl.data import kaldi_dir as kd
from s3prl.errors import UserError


def _dir(tmp_path, make_data_dir, **kw) -> Path:
    return make_data_dir(tmp_path / "data" / "train", **kw)


# ----------------------------------------------------------------------------- table I/O

def test_sorted_c_is_byte_order():
    assert kd.sorted_c(["b", "B", "a-1", "a_1", "a1", "é", "z"]) == ["B", "a-1", "a1", "a_1", "b", "z", "é"]
    # the espnet#5264 case: '_' sorts after digits, '-' before them
    assert kd.sorted_c(["13_x", "1_x"]) == ["13_x", "1_x"]
    assert kd.sorted_c(["13-x", "1-x"]) == ["1-x", "13-x"]


def test_read_kv_order_and_errors(tmp_path):
    p = tmp_path / "t"
    p.write_text("b  two words\na\tone\n")
    assert list(kd.read_kv(p).items()) == [("b", "two words"), ("a", "one")]
    p.write_text("a 1\nb 2")  # missing final newline tolerated on read
    assert kd.read_kv(p) == {"a": "1", "b": "2"}
    p.write_text("a 1\nb 2\na 3\n")
    with pytest.raises(UserError, match=rf"^{p}:3: duplicate key 'a'"):
        kd.read_kv(p)
    p.write_text("a 1\nb\n")
    with pytest.raises(UserError, match=rf"^{p}:2: key 'b' has no value"):
        kd.read_kv(p)
    assert kd.read_kv(p, allow_empty_value=True) == {"a": "1", "b": ""}
    p.write_text("a 1\n\nb 2\n")
    with pytest.raises(UserError, match=rf"^{p}:2: empty line"):
        kd.read_kv(p)
    assert kd.read_kv_list(tmp_path / "t2" if False else _w(tmp_path / "l", "s1 u1 u2\ns2 u3\n")) == {
        "s1": ["u1", "u2"], "s2": ["u3"]}


def _w(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_write_kv_sorted_atomic(tmp_path):
    p = tmp_path / "sub" / "x.scp"
    kd.write_kv(p, {"b": "2", "B": "1", "a": ["x", "y"]})
    assert p.read_text() == "B 1\na x y\nb 2\n"
    assert [f.name for f in p.parent.iterdir()] == ["x.scp"]  # no temporary left behind
    with pytest.raises(UserError, match="invalid key"):
        kd.write_kv(p, {"a b": "1"})


def test_utt2spk_spk2utt_roundtrip():
    u2s = {"s2-b": "s2", "s1-b": "s1", "s1-a": "s1"}
    s2u = kd.utt2spk_to_spk2utt(u2s)
    assert s2u == {"s1": ["s1-a", "s1-b"], "s2": ["s2-b"]} and list(s2u) == ["s1", "s2"]
    assert kd.spk2utt_to_utt2spk(s2u) == {"s1-a": "s1", "s1-b": "s1", "s2-b": "s2"}


# ----------------------------------------------------------------------------- DataDir

def test_data_dir_properties(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir, speakers=("1001", "1002"), utts_per_speaker=2)
    (d / "utt2num_frames").write_text("".join(f"{u} 48\n" for u in kd.read_kv(d / "utt2spk")))
    dd = kd.DataDir(d)
    assert dd.utts == ["1001-100-0000", "1001-100-0001", "1002-101-0000", "1002-101-0001"]
    assert dd.speakers == ["1001", "1002"]
    assert dd.spk2utt == {"1001": ["1001-100-0000", "1001-100-0001"], "1002": ["1002-101-0000", "1002-101-0001"]}
    assert dd.segments is None and dd.feats_scp is None and dd.cmvn_scp is None and dd.spk2gender is None
    assert dd.utt2num_frames["1002-101-0001"] == 48
    assert dd.utt2dur["1001-100-0000"] == pytest.approx(0.5)
    assert Path(dd.wav_scp["1001-100-0001"]).is_file() and os.path.isabs(dd.wav_scp["1001-100-0001"])
    assert dd.text["1001-100-0000"] == "HELLO WORLD SPEECH"
    assert dd.has("text") and not dd.has("feats.scp")
    (d / "segments").write_text("1001-100-0000 r1 0 1.5\n")
    assert kd.DataDir(d).segments == {"1001-100-0000": ("r1", 0.0, 1.5)}
    with pytest.raises(UserError, match="not a data directory"):
        kd.DataDir(tmp_path / "nope")


# ----------------------------------------------------------------------------- validation

def test_validate_good_dir(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir)
    assert kd.validate_data_dir(d, no_feats=True) is None
    with pytest.raises(UserError, match=r"feats.scp: no such file"):
        kd.validate_data_dir(d)
    (d / "text").unlink()
    with pytest.raises(UserError, match=r"text: no such file"):
        kd.validate_data_dir(d, no_feats=True)
    kd.validate_data_dir(d, no_feats=True, no_text=True)


def _rewrite(p: Path, old: str, new: str) -> None:
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))


@pytest.mark.parametrize("case, pattern", [
    ("unsorted", r"utt2spk:2: key '1001-100-0000' is not sorted \(C locale\) after '1001-100-0001'"),
    ("duplicate", r"text:2: duplicate key '1001-100-0000'"),
    ("no_final_newline", r"wav.scp: the last line has no final newline"),
    ("utt2spk_missing_utt", r"text:2: utterance '1001-100-0001' is not in utt2spk"),
    ("text_extra_utt", r"text:5: utterance '1002-101-0002' is not in utt2spk"),
    ("text_missing_utt", r"text: utterance '1002-101-0001' of utt2spk is missing"),
    ("segments_end_before_start", r"segments:1: segment '1001-100-0000' needs 0 <= start < end"),
    ("segments_bad_reco", r"segments:2: recording 'recX' is not in wav.scp"),
    ("segments_three_fields", r"segments:1: expected 4 fields"),
    ("cmvn_keyed_by_utt", r"cmvn.scp:1: speaker '1001-100-0000' is not in spk2utt"),
    ("spk_sort", r"utt2spk:2: not sorted by speaker as well as by utterance"),
    ("spk2utt_inconsistent", r"spk2utt:1: utterance '1002-101-0000' of speaker '1001' disagrees with utt2spk"),
    ("forbidden_word", r"text:1: the word '<s>' is not allowed"),
    ("non_printable", r"text:1: non-printable character U\+0007"),
    ("tilde_path", r"wav.scp:1: paths starting with '~' are not allowed"),
    ("bad_utt2num_frames", r"utt2num_frames:2: '1001-100-0001' needs a positive integer, got '0'"),
    ("bad_frame_shift", r"frame_shift:1: expected a single number, got 'ten'"),
    ("bad_gender", r"spk2gender:2: gender must be 'm' or 'f', got 'x'"),
    ("utt2spk_one_field", r"utt2spk:1: expected 2 fields '<utt> <spk>', got 1"),
    ("feats_no_value", r"feats.scp:2: key '1001-100-0001' has no value"),
    ("spk2utt_twice", r"spk2utt:2: utterance '1001-100-0000' is listed twice"),
])
def test_validate_broken_dirs(tmp_path, make_data_dir, case, pattern):
    d = _dir(tmp_path, make_data_dir)
    u2s = d / "utt2spk"
    if case == "unsorted":
        lines = u2s.read_text().splitlines(keepends=True)
        u2s.write_text("".join([lines[1], lines[0]] + lines[2:]))
    elif case == "duplicate":
        lines = (d / "text").read_text().splitlines(keepends=True)
        (d / "text").write_text("".join([lines[0], lines[0]] + lines[1:]))
    elif case == "no_final_newline":
        (d / "wav.scp").write_text((d / "wav.scp").read_text().rstrip("\n"))
    elif case == "utt2spk_missing_utt":
        _rewrite(u2s, "1001-100-0001 1001\n", "")
        _rewrite(d / "spk2utt", "1001 1001-100-0000 1001-100-0001", "1001 1001-100-0000")
    elif case == "text_extra_utt":
        (d / "text").write_text((d / "text").read_text() + "1002-101-0002 EXTRA\n")
    elif case == "text_missing_utt":
        _rewrite(d / "text", (d / "text").read_text().splitlines(keepends=True)[-1], "")
    elif case.startswith("segments"):
        utts = list(kd.read_kv(u2s))
        (d / "wav.scp").write_text("rec1 /x/rec1.wav\nrec2 /x/rec2.wav\n")
        segs = [f"{u} rec{1 + i // 2} {i}.0 {i}.5" for i, u in enumerate(utts)]
        if case == "segments_end_before_start":
            segs[0] = f"{utts[0]} rec1 1.0 0.5"
        elif case == "segments_bad_reco":
            segs[1] = f"{utts[1]} recX 0 1"
        else:
            segs[0] = f"{utts[0]} rec1 0.5"
        (d / "segments").write_text("\n".join(segs) + "\n")
    elif case == "cmvn_keyed_by_utt":
        (d / "cmvn.scp").write_text("".join(f"{u} /x/cmvn.ark:{i}\n" for i, u in enumerate(kd.read_kv(u2s))))
    elif case == "spk_sort":
        # the espnet#5264 trap: C order of utts disagrees with the order of speakers
        u2s.write_text("13_a 13\n1_a 1\n")
        (d / "spk2utt").write_text("1 1_a\n13 13_a\n")
    elif case == "spk2utt_inconsistent":
        _rewrite(d / "spk2utt", "1001 1001-100-0000 1001-100-0001", "1001 1001-100-0000 1001-100-0001 1002-101-0000")
    elif case == "forbidden_word":
        _rewrite(d / "text", "1001-100-0000 HELLO", "1001-100-0000 <s> HELLO")
    elif case == "non_printable":
        _rewrite(d / "text", "1001-100-0000 HELLO", "1001-100-0000 HEL\x07LO")
    elif case == "tilde_path":
        first = (d / "wav.scp").read_text().splitlines()[0].split()[0]
        _rewrite(d / "wav.scp", f"{first} /", f"{first} ~/")
    elif case == "bad_utt2num_frames":
        (d / "utt2num_frames").write_text("".join(f"{u} {0 if i == 1 else 50}\n" for i, u in enumerate(kd.read_kv(u2s))))
    elif case == "bad_frame_shift":
        (d / "frame_shift").write_text("ten\n")
    elif case == "bad_gender":
        (d / "spk2gender").write_text("1001 m\n1002 x\n")
    elif case == "utt2spk_one_field":
        _rewrite(u2s, "1001-100-0000 1001\n", "1001-100-0000\n")
    elif case == "feats_no_value":
        (d / "feats.scp").write_text("".join(f"{u} {'' if i == 1 else '/f.ark:9'}\n"
                                             for i, u in enumerate(kd.read_kv(u2s))))
    elif case == "spk2utt_twice":
        _rewrite(d / "spk2utt", "1002 1002-101-0000", "1002 1001-100-0000 1002-101-0000")
    with pytest.raises(UserError, match=pattern):
        kd.validate_data_dir(d, no_feats=True)


def test_validate_non_print_and_no_spk_sort_options(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir)
    _rewrite(d / "text", "1001-100-0000 HELLO", "1001-100-0000 HEL\x07LO")
    kd.validate_data_dir(d, no_feats=True, non_print=True)


def test_validate_segments_ok_and_feats_cmvn(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir)
    utts = list(kd.read_kv(d / "utt2spk"))
    (d / "wav.scp").write_text("rec1 /x/rec1.wav\nrec2 flac -c -d -s /x/rec2.flac |\n")
    (d / "segments").write_text("".join(f"{u} rec{1 + i // 2} {i}.0 {i}.5\n" for i, u in enumerate(utts)))
    (d / "feats.scp").write_text("".join(f"{u} /abs/raw.ark:{10 * i + 5}\n" for i, u in enumerate(utts)))
    (d / "cmvn.scp").write_text("1001 /abs/cmvn.ark:5\n1002 /abs/cmvn.ark:99\n")
    (d / "frame_shift").write_text("0.01\n")
    (d / "feats_dim").write_text("80\n")
    kd.validate_data_dir(d)
    # a recording in wav.scp that no segment uses
    (d / "wav.scp").write_text("rec1 /x/rec1.wav\nrec2 /x/rec2.wav\nrec3 /x/rec3.wav\n")
    with pytest.raises(UserError, match=r"wav.scp:3: recording 'rec3' is not in segments"):
        kd.validate_data_dir(d)


# ----------------------------------------------------------------------------- fix

def test_fix_data_dir(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir, speakers=("1001", "1002", "1003"), utts_per_speaker=2)
    orig_text = (d / "text").read_text()
    lines = orig_text.splitlines(keepends=True)
    # text: unsorted, a duplicate, drops 1003's two utterances, adds an utterance unknown to utt2spk
    (d / "text").write_text("".join([lines[3], lines[0], lines[0], lines[2], lines[1]]) + "9999-1-0000 X\n")
    (d / "cmvn.scp").write_text("1003 /a:1\n1001 /a:2\n1002 /a:3\n")
    (d / "spk2utt").write_text("garbage u\n")
    stats = kd.fix_data_dir(d)
    assert stats == {"utts_before": 6, "utts_after": 4}
    assert (d / ".backup" / "text").read_text().startswith(lines[3])
    assert (d / "utt2spk").read_text() == "1001-100-0000 1001\n1001-100-0001 1001\n1002-101-0000 1002\n1002-101-0001 1002\n"
    assert (d / "spk2utt").read_text() == "1001 1001-100-0000 1001-100-0001\n1002 1002-101-0000 1002-101-0001\n"
    assert (d / "cmvn.scp").read_text() == "1001 /a:2\n1002 /a:3\n"
    assert (d / "text").read_text() == "".join(lines[:4])
    assert len(kd.read_kv(d / "wav.scp")) == 4 and len(kd.read_kv(d / "utt2dur")) == 4
    kd.validate_data_dir(d, no_feats=True)


def test_fix_data_dir_segments_and_errors(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir)
    utts = list(kd.read_kv(d / "utt2spk"))
    (d / "wav.scp").write_text("rec1 /x/1.wav\nrec3 /x/3.wav\n")
    (d / "segments").write_text(f"{utts[0]} rec1 0 1\n{utts[1]} rec1 1 2\n{utts[2]} rec2 0 1\n{utts[3]} rec2 1 2\n")
    kd.fix_data_dir(d)
    assert list(kd.read_kv(d / "utt2spk")) == utts[:2]
    assert kd.read_kv(d / "wav.scp") == {"rec1": "/x/1.wav"}  # rec3 unused, rec2 missing
    kd.validate_data_dir(d, no_feats=True)
    (d / "text").write_text("nobody X\n")
    with pytest.raises(UserError, match="no utterance is left"):
        kd.fix_data_dir(d)


def test_fix_refuses_speaker_order_problem(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "utt2spk").write_text("13_a 13\n1_a 1\n")
    with pytest.raises(UserError, match="fix this yourself"):
        kd.fix_data_dir(d)


# ----------------------------------------------------------------------------- split

def test_split_per_speaker(tmp_path, make_data_dir):
    spks = ("1001", "1002", "1003", "1004", "1005")
    d = _dir(tmp_path, make_data_dir, speakers=spks, utts_per_speaker=2)
    # uneven speakers: give 1001 four more utterances
    u2s = kd.read_kv(d / "utt2spk")
    extra = {f"1001-100-{k:04d}": "1001" for k in range(2, 6)}
    for name, val in (("utt2spk", "1001"), ("text", "X"), ("wav.scp", "/x.wav"), ("utt2dur", "0.5")):
        table = kd.read_kv(d / name)
        table.update({u: val for u in extra})
        kd.write_kv(d / name, table)
    u2s.update(extra)
    kd.write_kv(d / "spk2utt", kd.utt2spk_to_spk2utt(u2s))
    (d / "cmvn.scp").write_text("".join(f"{s} /c.ark:{i}\n" for i, s in enumerate(spks)))
    (d / "frame_shift").write_text("0.01\n")
    parts = kd.split_data(d, 3)
    assert parts == [d / "split3" / str(i) for i in (1, 2, 3)]
    seen = []
    sizes = []
    for p in parts:
        kd.validate_data_dir(p, no_feats=True)
        pu = kd.read_kv(p / "utt2spk")
        seen += list(pu)
        sizes.append(len(pu))
        assert set(kd.read_kv(p / "cmvn.scp")) == set(pu.values())
        assert (p / "frame_shift").read_text() == "0.01\n"
        for spk in set(pu.values()):  # a speaker is never split
            assert all(u in pu for u in kd.read_kv_list(d / "spk2utt")[spk])
    assert sorted(seen) == sorted(u2s) and len(seen) == len(set(seen))
    assert sizes == [6, 4, 4]  # 1001 alone (6), then 1002+1003, 1004+1005

    # up to date: a second call does no work; touching a source file forces a re-split
    mtime = (parts[0] / "utt2spk").stat().st_mtime_ns
    time.sleep(0.01)
    kd.split_data(d, 3)
    assert (parts[0] / "utt2spk").stat().st_mtime_ns == mtime
    future = time.time() + 5
    os.utime(d / "text", (future, future))
    kd.split_data(d, 3)
    assert (parts[0] / "utt2spk").stat().st_mtime_ns != mtime

    with pytest.raises(UserError, match=rf"split_data: nj=6 is larger than the number of speakers \(5\) in {d}"):
        kd.split_data(d, 6)


def test_split_per_utt_and_segments(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir, speakers=("1001", "1002"), utts_per_speaker=4)
    utts = list(kd.read_kv(d / "utt2spk"))
    (d / "wav.scp").write_text("".join(f"rec{i} /x/{i}.wav\n" for i in range(4)))
    (d / "segments").write_text("".join(f"{u} rec{i // 2} 0 1\n" for i, u in enumerate(utts)))
    parts = kd.split_data(d, 3, per_utt=True)
    assert parts[0].parent.name == "split3utt"
    got = [list(kd.read_kv(p / "utt2spk")) for p in parts]
    assert got == [utts[0:3], utts[3:6], utts[6:8]]
    assert list(kd.read_kv(parts[1] / "wav.scp")) == ["rec1", "rec2"]
    assert kd.read_kv_list(parts[1] / "spk2utt") == {"1001": utts[3:4], "1002": utts[4:6]}
    for p in parts:
        kd.validate_data_dir(p, no_feats=True)
    with pytest.raises(UserError, match="nj=9 is larger than the number of utterances"):
        kd.split_data(d, 9, per_utt=True)


# ----------------------------------------------------------------------------- subset

def test_subset_data_dir(tmp_path, make_data_dir):
    d = _dir(tmp_path, make_data_dir, speakers=("1001", "1002", "1003"), utts_per_speaker=3)
    (d / "cmvn.scp").write_text("1001 /c:1\n1002 /c:2\n1003 /c:3\n")
    utts = sorted(kd.read_kv(d / "utt2spk"))
    out = kd.subset_data_dir(d, tmp_path / "first", first=4)
    assert list(kd.read_kv(out / "utt2spk")) == utts[:4]
    assert list(kd.read_kv(out / "cmvn.scp")) == ["1001", "1002"]
    kd.validate_data_dir(out, no_feats=True)
    assert list(kd.read_kv(kd.subset_data_dir(d, tmp_path / "last", last=2) / "text")) == utts[-2:]
    lst = tmp_path / "list"
    lst.write_text(f"{utts[5]}\n{utts[1]} extra field\nnot-there\n")
    assert list(kd.read_kv(kd.subset_data_dir(d, tmp_path / "ul", utt_list=lst) / "utt2spk")) == [utts[1], utts[5]]
    sp = kd.subset_data_dir(d, tmp_path / "sp", speakers=["1002"])
    assert list(kd.read_kv(sp / "spk2utt")) == ["1002"] and len(kd.read_kv(sp / "wav.scp")) == 3
    r1 = kd.read_kv(kd.subset_data_dir(d, tmp_path / "r1", num_utts=4, seed=3) / "utt2spk")
    r2 = kd.read_kv(kd.subset_data_dir(d, tmp_path / "r2", num_utts=4, seed=3) / "utt2spk")
    r3 = kd.read_kv(kd.subset_data_dir(d, tmp_path / "r3", num_utts=4, seed=4) / "utt2spk")
    assert r1 == r2 and len(r1) == 4 and set(r1) <= set(utts) and r1 != r3
    kd.validate_data_dir(tmp_path / "r1", no_feats=True)
    with pytest.raises(UserError, match="exactly one of"):
        kd.subset_data_dir(d, tmp_path / "x", first=1, last=1)
    with pytest.raises(UserError, match="same directory"):
        kd.subset_data_dir(d, d, first=1)
