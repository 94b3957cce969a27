"""WER/CER scoring against hand-computed alignments, compute-wer report format, decode dirs."""
from __future__ import annotations

import math

import pytest

from s3prl.data.kaldi_dir import read_kv
from s3prl.downstream.scoring import align, error_rate, read_summary, tokens, write_decode_dir
from s3prl.errors import UserError


def counts(ref: str, hyp: str, unit: str = "word") -> tuple[int, int, int, int]:
    c = align(tokens(ref, unit), tokens(hyp, unit)).counts
    return c["C"], c["S"], c["D"], c["I"]


def test_hand_computed_alignments():
    assert counts("A B C", "A B C") == (3, 0, 0, 0)
    assert counts("A B C", "A X C") == (2, 1, 0, 0)
    assert counts("A B C", "A C") == (2, 0, 1, 0)
    assert counts("A B C", "A B B C") == (3, 0, 0, 1)
    assert counts("A B C", "") == (0, 0, 3, 0)                 # empty hypothesis: all deletions
    assert counts("", "A B") == (0, 0, 0, 2)                   # empty reference: all insertions
    assert counts("A B", "C") == (0, 1, 1, 0)                  # tie: sub + del, not del + del + ins
    # kitten -> sitting: 2 substitutions and 1 insertion (Levenshtein distance 3)
    assert counts("kitten", "sitting", "char") == (4, 2, 0, 1)


def test_alignment_ops_order():
    al = align("THE CAT SAT".split(), "THE BIG CAT SAD".split())
    assert al.ops == [("C", "THE", "THE"), ("I", None, "BIG"), ("C", "CAT", "CAT"), ("S", "SAT", "SAD")]
    assert al.errors == 2 and al.ref_len == 3


def test_corpus_wer_and_summary_line():
    refs = {"u1": "THE CAT SAT ON THE MAT", "u2": "HELLO WORLD", "u3": "A B C D"}
    hyps = {"u1": "THE CAT SAT ON MAT", "u2": "", "u3": "A X B C D E"}
    er = error_rate(refs, hyps, "word")
    # u1: 1 del; u2: 2 del; u3: 2 ins. 5 errors over 12 reference words.
    assert (er.ins, er.dels, er.sub, er.errors, er.ref_len) == (2, 3, 0, 5, 12)
    assert er.rate == pytest.approx(100 * 5 / 12)
    assert er.summary() == "%WER 41.67 [ 5 / 12, 2 ins, 3 del, 0 sub ]"
    assert er.report().splitlines() == ["%WER 41.67 [ 5 / 12, 2 ins, 3 del, 0 sub ]", "%SER 100.00 [ 3 / 3 ]",
                                        "Scored 3 sentences, 0 not present in hyp."]
    # WER can exceed 100 % with insertions
    many = error_rate({"a": "A"}, {"a": "B C D"})
    assert many.summary() == "%WER 300.00 [ 3 / 1, 2 ins, 0 del, 1 sub ]"


def test_cer_counts_spaces_and_normalises_whitespace():
    assert tokens("  AB   C ", "char") == ["A", "B", " ", "C"]
    er = error_rate({"u": "AB CD"}, {"u": "ABCD"}, "char")
    assert (er.dels, er.ref_len) == (1, 5) and er.summary() == "%CER 20.00 [ 1 / 5, 0 ins, 1 del, 0 sub ]"
    er = error_rate({"u": "AB CD", "v": "XY"}, {"u": "AB CE", "v": ""}, "char")
    assert (er.sub, er.dels, er.ref_len) == (1, 2, 7)
    assert er.rate == pytest.approx(100 * 3 / 7)


def test_empty_reference_set_rates():
    assert error_rate({"u": ""}, {"u": ""}).rate == 0.0
    assert math.isinf(error_rate({"u": ""}, {"u": "A"}).rate)


def test_details_layout():
    er = error_rate({"u1": "A B C D"}, {"u1": "A C D E"})
    assert er.details().splitlines() == [
        "u1 ref  A  B    C  D  ***",
        "u1 hyp  A  ***  C  D  E",
        "u1 op   C  D    C  C  I",
        "u1 #csid 3 0 1 1",
    ]
    cer = error_rate({"u1": "A B"}, {"u1": "AB"}, "char")
    assert cer.details().splitlines()[0] == "u1 ref  A  <space>  B"


def test_mismatched_utterances_are_errors():
    with pytest.raises(UserError, match="no hypothesis for utterance 'b'"):
        error_rate({"a": "X", "b": "Y"}, {"a": "X"}, hyp_source="hyp.txt")
    with pytest.raises(UserError, match="utterance 'c' has no reference"):
        error_rate({"a": "X"}, {"a": "X", "c": "Y"})


def test_write_decode_dir(tmp_path):
    refs = {"spk1-1-0002": "HELLO  WORLD", "spk1-1-0001": "GOOD MORNING"}
    hyps = {"spk1-1-0001": "GOOD MORNIN", "spk1-1-0002": ""}
    out = write_decode_dir(tmp_path / "decode_dev", refs, hyps)
    d = tmp_path / "decode_dev"
    # Kaldi text format: sorted keys, single spaces, empty hypothesis = the key alone
    assert (d / "hyp.txt").read_text() == "spk1-1-0001 GOOD MORNIN\nspk1-1-0002\n"
    assert (d / "ref.txt").read_text() == "spk1-1-0001 GOOD MORNING\nspk1-1-0002 HELLO WORLD\n"
    assert read_kv(d / "hyp.txt", allow_empty_value=True) == {"spk1-1-0001": "GOOD MORNIN", "spk1-1-0002": ""}
    assert out["wer"] == pytest.approx(75.0)
    assert read_summary(d / "wer") == (75.0, 3, 4, 0, 2, 1)
    # CER: 1 del in MORNING (12 chars), 11 del for HELLO WORLD
    assert read_summary(d / "cer") == (pytest.approx(100 * 12 / 23, abs=0.005), 12, 23, 0, 12, 0)
    assert out["cer_counts"] == {"errors": 12, "ref": 23, "ins": 0, "del": 12, "sub": 0, "sentences": 2}
    text = (d / "wer").read_text()
    assert "spk1-1-0002 #csid 0 0 0 2" in text


def test_read_summary_rejects_other_files(tmp_path):
    p = tmp_path / "wer"
    p.write_text("WER: 12\n")
    with pytest.raises(UserError, match=r"wer:1: not a compute-wer summary line"):
        read_summary(p)
