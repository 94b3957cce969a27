"""Monophone GMM training and alignment in jobs (s3prl.hybrid.gmm.AlignJobs, Kaldi's JOB=1:nj): on
a made-up corpus whose features are drawn from per-phone means with long leading and trailing
silences (so the exact phone of every frame is known), nj = 1 and nj = 2 give the same alignments,
the same final.mdl and final.pt; nj = 2 writes ali.1.gz and ali.2.gz of whole speakers (as
utils/split_data.sh splits them) and num_jobs 2; a later run with fewer jobs removes the stale
archive. The alignments find the phones: with training graphs that carried transition
probabilities (then added again at alignment, silence frames priced out) only 7 of the 12
utterances aligned and 15 % of the frames got their phone (84 % here). Decoding in two jobs gives
the hypotheses of one. Seconds, no audio."""
from __future__ import annotations

import gzip
from pathlib import Path

import kaldiio
import numpy as np
import pytest

pytest.importorskip("kaldi_hmm_gmm")

from s3prl.bin import hybrid_lang  # noqa: E402
from s3prl.data.alignments import iter_alignments  # noqa: E402
from s3prl.data.kaldi_dir import write_kv  # noqa: E402
from s3prl.errors import UserError  # noqa: E402
from s3prl.hybrid import gmm  # noqa: E402
from s3prl.hybrid.lang import read_symbols  # noqa: E402

LEXICON = {"HELLO": "HH AH L OW", "WORLD": "W ER L D", "SPEECH": "S P IY CH", "MODEL": "M AA D AH L",
           "KALDI": "K AA L D IY", "DATA": "D EY T AH", "SEVEN": "S EH V AH N", "RED": "R EH D"}
SPEAKERS = ("1001", "1002", "1003", "1004")
CFG = gmm.MonoConfig(num_iters=6, max_iter_inc=4, totgauss=90)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """lang dir, data dir (feats.scp, no audio) and the true phone of every frame."""
    w = tmp_path_factory.mktemp("gmm jobs") / "w d"
    (w / "data").mkdir(parents=True)
    (w / "lexicon.txt").write_text("<UNK> SPN\n" + "".join(f"{k} {v}\n" for k, v in LEXICON.items()))
    rng = np.random.default_rng(5)
    words = sorted(LEXICON)
    text, utt2spk, truth = {}, {}, {}
    for s, spk in enumerate(SPEAKERS):
        for k in range(3):
            utt = f"{spk}-{k:04d}"
            text[utt] = " ".join(rng.choice(words, size=int(rng.integers(2, 5))))
            utt2spk[utt] = spk
    data = w / "data" / "train"
    data.mkdir()
    write_kv(data / "text", text)
    write_kv(data / "utt2spk", utt2spk)
    write_kv(data / "spk2utt", {s: [u for u in sorted(utt2spk) if utt2spk[u] == s] for s in SPEAKERS})
    assert hybrid_lang.main(["--lexicon", str(w / "lexicon.txt"), "--text", str(data / "text"),
                             str(w / "lang"), str(w / "lang_test")]) == 0
    phones = read_symbols(w / "lang" / "phones.txt")
    means = rng.normal(0.0, 1.5, (max(phones.values()) + 1, 13))
    feats = {}
    for utt in sorted(text):
        seq = [phones["SIL"]] * int(rng.integers(30, 45))   # long silences, as the synthetic corpus has
        for word in text[utt].split():
            for p in LEXICON[word].split():
                seq += [phones[p]] * int(rng.integers(4, 10))
        seq += [phones["SIL"]] * int(rng.integers(30, 45))
        truth[utt] = np.array(seq)
        feats[utt] = (means[truth[utt]] + rng.standard_normal((len(seq), 13))).astype(np.float32)
    kaldiio.save_ark(str(data / "feats.ark"), feats, scp=str(data / "feats.scp"))
    return w, data, truth


def _alignments(d: Path) -> dict[str, np.ndarray]:
    return {u: a for u, a, _ in iter_alignments(d)}


def test_one_and_two_jobs_give_the_same_model_and_alignments(corpus):
    w, data, truth = corpus
    info = {nj: gmm.train_mono(data, w / "lang", w / f"nj{nj}", CFG, nj=nj) for nj in (1, 2)}
    assert info[1]["num_jobs"] == 1 and info[2]["num_jobs"] == 2
    assert info[1]["loglike_per_frame"] == info[2]["loglike_per_frame"]
    one, two = w / "nj1", w / "nj2"
    assert (one / "num_jobs").read_text() == "1\n" and (two / "num_jobs").read_text() == "2\n"
    assert sorted(p.name for p in two.glob("ali.*.gz")) == ["ali.1.gz", "ali.2.gz"]
    assert (one / "final.mdl").read_bytes() == (two / "final.mdl").read_bytes()
    a1, a2 = gmm.MonoModel.load(one / "final.pt").arrays(), gmm.MonoModel.load(two / "final.pt").arrays()
    assert all(np.array_equal(x, y) for x, y in zip(a1["gmm"], a2["gmm"]))
    assert np.array_equal(a1["transition_log_probs"], a2["transition_log_probs"])
    ali1, ali2 = _alignments(one), _alignments(two)
    assert sorted(ali1) == sorted(ali2) == sorted(truth)
    assert all(np.array_equal(ali1[u], ali2[u]) for u in ali1)
    # each job holds whole speakers: the first two speakers, then the last two
    spk = [{u.split("-")[0] for u, _ in kaldiio.load_ark(gzip.open(two / f"ali.{j}.gz"))} for j in (1, 2)]
    assert spk == [set(SPEAKERS[:2]), set(SPEAKERS[2:])]

    # the alignments find the phones (silences included)
    model = gmm.MonoModel.load(one / "final.pt")
    hit = sum(int((model.tid2phone[ali1[u]] == truth[u]).sum()) for u in ali1)
    assert hit / sum(len(t) for t in truth.values()) > 0.75


def test_fewer_jobs_remove_stale_archives(corpus):
    w, data, _ = corpus
    if not (w / "nj1" / "final.pt").is_file():
        gmm.train_mono(data, w / "lang", w / "nj1", CFG)
    out = w / "ali_again"
    assert gmm.align_data(w / "nj1", data, w / "lang", out, CFG, nj=2)["num_jobs"] == 2
    two = _alignments(out)
    assert gmm.align_data(w / "nj1", data, w / "lang", out, CFG, nj=1)["num_jobs"] == 1
    assert sorted(p.name for p in out.glob("ali.*.gz")) == ["ali.1.gz"]
    assert (out / "num_jobs").read_text() == "1\n"
    one = _alignments(out)
    assert sorted(one) == sorted(two) and all(np.array_equal(one[u], two[u]) for u in one)
    # more jobs than speakers: one job per speaker; no jobs: refused before anything is written
    assert gmm.align_data(w / "nj1", data, w / "lang", out, CFG, nj=9)["num_jobs"] == len(SPEAKERS)
    with pytest.raises(UserError, match="nj 0: must be >= 1"):
        gmm.align_data(w / "nj1", data, w / "lang", w / "ali_none", CFG, nj=0)
    assert not (w / "ali_none").exists()


def test_decoding_in_jobs_gives_the_same_hypotheses(corpus):
    from s3prl.hybrid import decode, lang

    w, data, _ = corpus
    if not (w / "nj1" / "final.pt").is_file():
        gmm.train_mono(data, w / "lang", w / "nj1", CFG)
    model = gmm.MonoModel.load(w / "nj1" / "final.pt")
    lang.make_graph(w / "lang_test", model.tree, model.tm, w / "graph")
    decoder = decode.Decoder(w / "graph", model, beam=9.0)
    make = decode.GmmDecodable(model, gmm.load_feats(data))
    utts = sorted(make.feats)
    one, two = (decoder.decode_lmwts(utts, make, (4, 10), nj=nj) for nj in (1, 2))
    assert one == two and sorted(one[10]) == utts
    text = dict(line.split(" ", 1) for line in (data / "text").read_text().splitlines())
    assert sum(one[10][u] == text[u] for u in utts) >= 10   # the words come back (11 of 12)


def test_lattice_beam_changes_no_word(corpus):
    """The lattice beam prunes only the lattice: the best path, all we keep, is the same at Kaldi's
    6 and at the narrow beam of the presets (decode.lattice_beam)."""
    from s3prl.hybrid import decode, lang

    w, data, _ = corpus
    if not (w / "nj1" / "final.pt").is_file():
        gmm.train_mono(data, w / "lang", w / "nj1", CFG)
    model = gmm.MonoModel.load(w / "nj1" / "final.pt")
    if not (w / "graph" / "HCLG.fst").is_file():
        lang.make_graph(w / "lang_test", model.tree, model.tm, w / "graph")
    make = decode.GmmDecodable(model, gmm.load_feats(data))
    utts = sorted(make.feats)
    wide, narrow = (decode.Decoder(w / "graph", model, beam=9.0, lattice_beam=lb).decode_lmwts(utts, make, (2, 10, 20))
                    for lb in (6.0, 0.1))
    assert wide == narrow
    assert len({tuple(sorted(wide[x].items())) for x in wide}) > 1   # the weights do change words
