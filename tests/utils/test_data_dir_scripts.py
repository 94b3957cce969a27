"""Tests of the data-directory shell verbs in utils/ (wrappers over s3prl.bin.data_dir, and the
Perl table converters), run from a directory with spaces in its path."""
from __future__ import annotations

import os
import subprocess

import pytest

from s3prl.data import kaldi_dir as kd


@pytest.fixture
def sh(repo_root, tmp_path):
    work = tmp_path / "my work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(repo_root / "utils" / script), *args], capture_output=True, text=True,
                              cwd=work, env=env, input=stdin)
    run.work = work
    return run


def test_validate_and_fix(sh, make_data_dir):
    d = make_data_dir(sh.work / "data dir" / "train")
    r = sh("validate_data_dir.sh", "--no-feats", "data dir/train")
    assert r.returncode == 0, r.stderr
    assert "Successfully validated data-directory data dir/train" in r.stdout
    r = sh("validate_data_dir.sh", "data dir/train")
    assert r.returncode == 1 and "feats.scp: no such file" in r.stderr
    r = sh("validate_data_dir.sh", "--no-feats", "true", "--bogus", "x", "data dir/train")
    assert r.returncode == 1 and "invalid option --bogus" in r.stderr
    lines = (d / "text").read_text().splitlines(keepends=True)
    (d / "text").write_text("".join(reversed(lines[1:])))  # unsorted, one utterance missing
    r = sh("validate_data_dir.sh", "--no-feats", "data dir/train")
    assert r.returncode == 1 and "text:2: key" in r.stderr and "is not sorted" in r.stderr
    r = sh("fix_data_dir.sh", "data dir/train")
    assert r.returncode == 0, r.stderr
    assert len(kd.read_kv(d / "utt2spk")) == 3 and (d / ".backup" / "text").is_file()
    assert sh("validate_data_dir.sh", "--no-feats", "data dir/train").returncode == 0


def test_split_and_subset(sh, make_data_dir):
    d = make_data_dir(sh.work / "train", speakers=("1001", "1002", "1003"), utts_per_speaker=2)
    r = sh("split_data.sh", "train", "2")
    assert r.returncode == 0, r.stderr
    got = [list(kd.read_kv(d / "split2" / str(i) / "utt2spk")) for i in (1, 2)]
    assert sorted(got[0] + got[1]) == sorted(kd.read_kv(d / "utt2spk"))
    r = sh("split_data.sh", "--per-utt", "train", "4")
    assert r.returncode == 0 and (d / "split4utt" / "4" / "utt2spk").is_file()
    r = sh("split_data.sh", "train", "4")
    assert r.returncode == 1 and "nj=4 is larger than the number of speakers (3)" in r.stderr

    utts = sorted(kd.read_kv(d / "utt2spk"))
    assert sh("subset_data_dir.sh", "--first", "2", "train", "first").returncode == 0
    assert list(kd.read_kv(sh.work / "first" / "utt2spk")) == utts[:2]
    assert sh("subset_data_dir.sh", "--last", "train", "3", "last").returncode == 0  # Kaldi's form
    assert list(kd.read_kv(sh.work / "last" / "utt2spk")) == utts[-3:]
    (sh.work / "spk list").write_text("1002\n")
    assert sh("subset_data_dir.sh", "--spk-list", "spk list", "train", "spk").returncode == 0
    assert list(kd.read_kv(sh.work / "spk" / "spk2utt")) == ["1002"]
    (sh.work / "utts").write_text(f"{utts[4]}\n")
    assert sh("subset_data_dir.sh", "--utt-list", "utts", "train", "ul").returncode == 0
    assert list(kd.read_kv(sh.work / "ul" / "utt2spk")) == [utts[4]]
    assert sh("subset_data_dir.sh", "--seed", "5", "train", "3", "rand").returncode == 0
    assert len(kd.read_kv(sh.work / "rand" / "utt2spk")) == 3
    r = sh("subset_data_dir.sh", "--utt-list", "nope", "train", "x")
    assert r.returncode == 1 and "--utt-list: no such file: nope" in r.stderr


def test_perl_converters(sh):
    utt2spk = "a-1 a\na-2 a\nb-1 b\nc-1 c\n"
    r = sh("utt2spk_to_spk2utt.pl", stdin=utt2spk)
    assert r.returncode == 0 and r.stdout == "a a-1 a-2\nb b-1\nc c-1\n"
    r2 = sh("spk2utt_to_utt2spk.pl", stdin=r.stdout)
    assert r2.stdout == utt2spk
    (sh.work / "ids").write_text("a-2\nc-1 extra\n")
    (sh.work / "in.scp").write_text("a-1 x\na-2 y\nb-1 z\nc-1 w\n")
    assert sh("filter_scp.pl", "ids", "in.scp").stdout == "a-2 y\nc-1 w\n"
    assert sh("filter_scp.pl", "--exclude", "ids", "in.scp").stdout == "a-1 x\nb-1 z\n"
    assert sh("filter_scp.pl", "-f", "2", "ids", stdin="k1 a-2\nk2 b-1\n").stdout == "k1 a-2\n"
    r = sh("utt2spk_to_spk2utt.pl", stdin="a-1 a extra\n")
    assert r.returncode != 0 and "expected 2 fields" in r.stderr


def test_copy_data_dir(sh, make_data_dir):
    d = make_data_dir(sh.work / "data dir" / "train", speakers=("1001", "1002"), utts_per_speaker=2)
    (d / "feats.scp").write_text("".join(f"{u} /feats.ark:{i}\n" for i, u in enumerate(kd.read_kv(d / "utt2spk"))))
    (d / "cmvn.scp").write_text("1001 /cmvn.ark:1\n1002 /cmvn.ark:2\n")
    (d / "frame_shift").write_text("0.01\n")
    # Kaldi's options: prefixed ids, spk2utt regenerated, features copied too
    r = sh("copy_data_dir.sh", "--utt-prefix", "sp1-", "--spk-prefix", "sp1-", "data dir/train", "data dir/train sp")
    assert r.returncode == 0, r.stderr
    sp = sh.work / "data dir" / "train sp"
    assert list(kd.read_kv(sp / "utt2spk").items())[0] == ("sp1-1001-100-0000", "sp1-1001")
    assert kd.read_kv(sp / "spk2utt")["sp1-1002"] == "sp1-1002-101-0000 sp1-1002-101-0001"
    assert set(kd.read_kv(sp / "cmvn.scp")) == {"sp1-1001", "sp1-1002"}
    assert kd.read_kv(sp / "wav.scp")["sp1-1001-100-0000"] == kd.read_kv(d / "wav.scp")["1001-100-0000"]
    assert (sp / "frame_shift").read_text() == "0.01\n"
    # --no-feats: the description of the data only; a copy again leaves features made since alone
    r = sh("copy_data_dir.sh", "--no-feats", "data dir/train", "mfcc dir/train")
    assert r.returncode == 0, r.stderr
    m = sh.work / "mfcc dir" / "train"
    assert sorted(p.name for p in m.iterdir()) == ["spk2utt", "text", "utt2dur", "utt2spk", "wav.scp"]
    assert all((m / f).read_bytes() == (d / f).read_bytes() for f in ("wav.scp", "text", "utt2spk", "spk2utt"))
    (m / "feats.scp").write_text("".join(f"{u} /mfcc.ark:{i}\n" for i, u in enumerate(kd.read_kv(m / "utt2spk"))))
    before = {p.name: p.stat().st_mtime_ns for p in m.iterdir()}
    r = sh("copy_data_dir.sh", "--no-feats", "data dir/train", "mfcc dir/train")
    assert r.returncode == 0 and "up to date" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in m.iterdir()} == before
    # an edited source is copied again (and only what changed)
    (d / "text").write_text((d / "text").read_text().replace("HELLO", "HULLO"))
    r = sh("copy_data_dir.sh", "--no-feats", "data dir/train", "mfcc dir/train")
    assert r.returncode == 0 and "(text written)" in r.stdout and "HULLO" in (m / "text").read_text()
    assert (m / "feats.scp").is_file()   # the audio did not change
    (d / "wav.scp").write_text((d / "wav.scp").read_text().replace("/wav/", "/wav/./"))
    r = sh("copy_data_dir.sh", "--no-feats", "data dir/train", "mfcc dir/train")
    assert r.returncode == 0 and "(wav.scp written)" in r.stdout
    assert not (m / "feats.scp").exists()   # made from the old audio: stale
    # errors: one line, nothing written
    r = sh("copy_data_dir.sh", "data dir/none", "data dir/x")
    assert r.returncode == 1 and r.stderr.strip().endswith("data dir/none: no such directory")
    assert not (sh.work / "data dir" / "x").exists()
    r = sh("copy_data_dir.sh", "data dir/train")
    assert r.returncode == 1 and "Usage:" in r.stderr
