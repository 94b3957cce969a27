"""Scoring through a token map (TIMIT's 48 -> 39 phones, Kaldi egs/timit/s5 local/score.sh):
the map file's format and errors, the shipped egs/timit/conf/phones.48-39.map against the
48 and 39 columns of s3prl.data.timit.PHONE_MAP, and the decode dirs written with a map."""
from __future__ import annotations

from pathlib import Path

import pytest

from s3prl.data.timit import PHONE_MAP
from s3prl.errors import UserError
from s3prl.hybrid import decode

ROOT = Path(__file__).resolve().parents[2]


def test_read_scoring_map_format_and_errors(tmp_path):
    p = tmp_path / "m.map"
    p.write_text("# comment\n\nao aa  # trailing comment\nq\nzh sh\n")
    m = decode.read_scoring_map(p)
    assert m == {"ao": "aa", "q": "", "zh": "sh"}
    texts = {"u1": "ao q  b zh", "u2": "q"}
    assert decode.map_texts(texts, m) == {"u1": "aa b sh", "u2": ""}
    assert decode.map_texts(texts, None) is texts
    for body, msg in (("a b c\n", f"{p}:1: expected 'FROM TO' or 'FROM', got 'a b c'"),
                      ("a b\n\na c\n", f"{p}:3: 'a' is mapped twice"),
                      ("# nothing\n", f"{p}: the scoring map has no entry")):
        p.write_text(body)
        with pytest.raises(UserError) as e:
            decode.read_scoring_map(p)
        assert str(e.value) == msg
    with pytest.raises(UserError, match="no such.map: cannot read the scoring map"):
        decode.read_scoring_map(tmp_path / "no such.map")


def test_timit_map_is_the_48_to_39_columns():
    # PHONE_MAP transcribes Kaldi's conf/phones.60-48-39.map; the 48 -> 39 projection of that file
    # (kaldi-asr/kaldi at ecce8e2) was compared with egs/timit/conf/phones.48-39.map: equal.
    m = decode.read_scoring_map(ROOT / "egs" / "timit" / "conf" / "phones.48-39.map")
    expected = {v[0]: v[1] for v in PHONE_MAP.values() if v}
    assert m == expected
    assert len(m) == 48 and len(set(m.values())) == 39
    assert m["ao"] == "aa" and m["vcl"] == "sil" and m["ix"] == "ih" and m["zh"] == "sh" and m["sil"] == "sil"


class _FixedDecoder:
    """Stands in for decode.Decoder: the same words at every acoustic scale."""

    def __init__(self, hyps):
        self.hyps = hyps

    def decode_lmwts(self, utts, make, lmwts, nj=1):
        return {lmwt: {u: self.hyps[u] for u in utts} for lmwt in lmwts}


def test_decode_dirs_score_the_mapped_text(tmp_path):
    refs = {"a": "sil ao b vcl", "b": "ix zh sil"}
    hyps = {"a": "sil aa b cl", "b": "ih sh"}          # all right on 39 phones but one deletion
    smap = {v[0]: v[1] for v in PHONE_MAP.values() if v}
    dec = _FixedDecoder(hyps)
    lmwt, dev_wer = decode.tune_lmwt(dec, None, refs, tmp_path / "dev", (5, 8), scoring_map=smap)
    assert (lmwt, round(dev_wer, 2)) == (5, round(100 / 7, 2))
    assert (tmp_path / "dev" / "wer_8").read_text().startswith("%WER 14.29 [ 1 / 7, 0 ins, 1 del, 0 sub ]")
    assert (tmp_path / "dev" / "hyp_5.txt").read_text() == "a sil aa b cl\nb ih sh\n"   # the decoder's words
    _, unmapped = decode.tune_lmwt(dec, None, refs, tmp_path / "dev_raw", (5,))
    assert round(unmapped, 2) == round(500 / 7, 2)   # 4 substitutions (ao/aa, vcl/cl, ix/ih, zh/sh), 1 deletion
    res = decode.decode_test(dec, None, refs, tmp_path / "test", lmwt, scoring_map=smap)
    assert round(res["wer"], 2) == 14.29 and res["wer_counts"]["del"] == 1
    out = tmp_path / "test"
    assert (out / "ref.txt").read_text() == "a sil aa b sil\nb ih sh sil\n"
    assert (out / "hyp.txt").read_text() == "a sil aa b sil\nb ih sh\n"
    assert (out / "hyp_unmapped.txt").read_text() == "a sil aa b cl\nb ih sh\n"
    assert (out / "wer_5").read_text() == (out / "wer").read_text()
    decode.decode_test(dec, None, refs, tmp_path / "test_raw", lmwt)
    assert not (tmp_path / "test_raw" / "hyp_unmapped.txt").exists()


class _ByWeight:
    """A decoder whose hypotheses depend on the LM weight: right only at `good`."""

    def __init__(self, refs, good):
        self.refs, self.good = refs, good

    def decode_lmwts(self, utts, make, lmwts, nj=1):
        return {w: {u: self.refs[u] if w == self.good else "x" for u in utts} for w in lmwts}


@pytest.mark.parametrize("good,warns", [(5, False), (2, True), (8, True)])
def test_best_lm_weight_at_the_grid_edge_warns(tmp_path, caplog, good, warns):
    refs = {"a": "aa b", "b": "ix"}
    with caplog.at_level("WARNING"):
        lmwt, wer = decode.tune_lmwt(_ByWeight(refs, good), None, refs, tmp_path / "dev", (2, 5, 8))
    assert (lmwt, wer) == (good, 0.0)
    assert ("is at an end of the grid 2 5 8" in caplog.text) == warns, caplog.text


class _Curve:
    """A decoder whose dev WER follows `errors` {LMWT: wrong utterances of 4}; it records the weights
    it was asked to decode."""

    def __init__(self, refs, errors):
        self.refs, self.errors, self.asked = refs, errors, []

    def decode_lmwts(self, utts, make, lmwts, nj=1):
        self.asked += list(lmwts)
        return {w: {u: "x" if i < self.errors[w] else self.refs[u] for i, u in enumerate(utts)} for w in lmwts}


GRID = (2, 3, 4, 5, 6, 8, 11)


@pytest.mark.parametrize("errors,best,decoded,grid_best", [
    ({2: 3, 3: 1, 4: 2, 5: 2, 6: 3, 8: 4, 11: 4}, 3, [2, 3, 4, 5], 3),           # one minimum: stops 2 after it
    ({2: 3, 3: 2, 4: 3, 5: 1, 6: 4, 8: 4, 11: 4}, 5, [2, 3, 4, 5, 6, 8], 5),     # one worse weight, then better
    ({2: 4, 3: 3, 4: 2, 5: 1, 6: 0, 8: 1, 11: 2}, 6, list(GRID), 6),            # the search runs to the end
    ({2: 3, 3: 1, 4: 1, 5: 1, 6: 1, 8: 0, 11: 2}, 3, [2, 3, 4, 5], 8),           # a plateau: ties do not win...
    ({2: 0, 3: 1, 4: 1, 5: 0, 6: 0, 8: 0, 11: 0}, 2, [2, 3, 4], 2),              # ...nor later equal minima
])
def test_lmwt_patience_stops_after_the_best(tmp_path, errors, best, decoded, grid_best):
    refs = {u: "aa b" for u in "abcd"}
    full = _Curve(refs, errors)
    assert decode.tune_lmwt(full, None, refs, tmp_path / "full", GRID[::-1])[0] == grid_best   # any order in
    assert full.asked == list(GRID)
    dec = _Curve(refs, errors)
    lmwt, wer = decode.tune_lmwt(dec, None, refs, tmp_path / "dev", GRID, patience=2)
    assert dec.asked == decoded and (lmwt, wer) == (best, 25.0 * errors[best])
    assert sorted(int(p.name[4:]) for p in (tmp_path / "dev").glob("wer_*")) == decoded
    assert (tmp_path / "dev" / "best_wer").read_text().rstrip().endswith(f"wer_{best}")
