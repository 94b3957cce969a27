"""CPC label files, the seeded 90/10 split and speaker labels (s3prl.data.labels)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from s3prl.data import labels as L
from s3prl.errors import UserError


def _utts(n):
    return [f"{100 + i % 7}-{i % 3}-{i:04d}" for i in range(n)]


def test_split_is_seeded_90_10_disjoint_and_matches_s3prl_2020():
    utts = _utts(100)
    train, dev = L.split_train_dev(utts, 1337, 0.9)
    assert (len(train), len(dev)) == (90, 10)
    assert not set(train) & set(dev) and sorted(train + dev) == sorted(utts)
    assert L.split_train_dev(utts, 1337, 0.9) == (train, dev)           # same seed, same split
    assert L.split_train_dev(utts, 1338, 0.9) != (train, dev)
    # S3PRL 2020: random.seed(1337); random.shuffle(list); first 90 % train, rest dev.
    ref = list(utts)
    random.seed(1337)
    random.shuffle(ref)
    assert train == ref[:90] and dev == ref[90:]
    assert utts == _utts(100)  # input untouched
    # The real train_split.txt size gives the documented 20,547 / 2,283.
    tr, dv = L.split_train_dev(_utts(22830))
    assert (len(tr), len(dv)) == (20547, 2283)


def test_cpc_splits_files(tmp_path):
    (tmp_path / "train_split.txt").write_text("".join(u + "\n" for u in _utts(20)))
    (tmp_path / "test_split.txt").write_text("999-1-0001\n999-1-0002\n")
    s = L.cpc_splits(tmp_path)
    assert (len(s["train"]), len(s["dev"]), len(s["test"])) == (18, 2, 2)
    assert s == L.cpc_splits(tmp_path)
    (tmp_path / "test_split.txt").write_text(_utts(20)[3] + "\n")
    with pytest.raises(UserError, match="test_split.txt: utterance '.*' is also in train_split.txt"):
        L.cpc_splits(tmp_path)
    (tmp_path / "train_split.txt").write_text("a-1-1\na-1-1\n")
    with pytest.raises(UserError, match=r"train_split.txt:2: duplicate utterance 'a-1-1'"):
        L.read_split(tmp_path / "train_split.txt")


def test_read_phone_labels_and_errors(tmp_path):
    p = tmp_path / "converted_aligned_phones.txt"
    p.write_text("u-1-1 0 0 5 40\nu-1-2 3 3\n")
    lab = L.read_phone_labels(p)
    assert lab["u-1-1"].tolist() == [0, 0, 5, 40] and lab["u-1-1"].dtype == np.int64
    assert list(L.read_phone_labels(p, utts=["u-1-2"])) == ["u-1-2"]
    p.write_text("u-1-1 0 0\nu-1-2 3 41\n")
    with pytest.raises(UserError, match=r"converted_aligned_phones.txt:2: utterance 'u-1-2': class id 41 is out of range \[0, 41\)"):
        L.read_phone_labels(p)
    p.write_text("u-1-1 0 x\n")
    with pytest.raises(UserError, match=r":1: utterance 'u-1-1': label 'x' is not an integer"):
        L.read_phone_labels(p)
    p.write_text("u-1-1 0\nu-1-1 1\n")
    with pytest.raises(UserError, match=r":2: duplicate utterance 'u-1-1'"):
        L.read_phone_labels(p)
    with pytest.raises(UserError, match="missing for 1 utterance"):
        L.check_coverage(["u-1-1", "v-1-1"], {"u-1-1": 0}, "phone labels", p)


def test_alignment_tolerance():
    assert L.aligned_length("u", 100, 98) == 98
    assert L.aligned_length("u", 97, 99) == 97
    with pytest.raises(UserError, match=r"utterance 'u': 100 feature frames vs 97 label frames"):
        L.aligned_length("u", 100, 97)


def test_speakers_sorted_prefix():
    assert L.speaker_of("103-1240-0000") == "103"
    cls = L.speaker_classes(["19-1-1", "103-2-2", "1034-1-1", "103-1-1"])
    assert cls == {"103": 0, "1034": 1, "19": 2}
    assert L.speaker_labels(["19-5-5"], cls) == {"19-5-5": 2}
    with pytest.raises(UserError, match="speaker '7' does not occur in the training split"):
        L.speaker_labels(["7-1-1"], cls, "test_split.txt")
