"""s3prl.hybrid.lang: lexicon parsing and disambiguation (add_lex_disambig.pl), the ARPA LM is a
proper distribution in every context, and the lang dir / G.fst / HCLG build on a toy lexicon
decodes a word sequence back."""
from __future__ import annotations

import math

import numpy as np
import pytest

from s3prl.errors import UserError
from s3prl.hybrid import lang


def test_add_lex_disambig_homophones_and_prefixes():
    lex = [("A", ["AH"]), ("AN", ["AH", "N"]), ("RED", ["R", "EH", "D"]), ("READ", ["R", "EH", "D"])]
    out, max_d = lang.add_lex_disambig(lex)
    assert dict((w, p) for w, p in out) == {"A": ["AH", "#1"], "AN": ["AH", "N"], "RED": ["R", "EH", "D", "#1"],
                                            "READ": ["R", "EH", "D", "#2"]}
    assert max_d == 2


def test_read_lexicon_errors_name_file_and_line(tmp_path):
    p = tmp_path / "lexicon.txt"
    p.write_text("<UNK> SPN\nHELLO\n")
    with pytest.raises(UserError, match=r"lexicon.txt:2: word 'HELLO' has no phones"):
        lang.read_lexicon(p)
    p.write_text("HELLO HH AH L OW\n")
    with pytest.raises(UserError, match="no entry for the OOV word"):
        lang.read_lexicon(p)


def _parse_arpa(text):
    probs, bows, order = {}, {}, 0
    for line in text.splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
            continue
        parts = line.split("\t")
        if order and len(parts) >= 2:
            g = tuple(parts[1].split())
            probs[g] = 10 ** float(parts[0])
            if len(parts) == 3:
                bows[g] = 10 ** float(parts[2])
    return probs, bows


def _p(probs, bows, g):
    if g in probs:
        return probs[g]
    return bows.get(g[:-1], 1.0) * _p(probs, bows, g[1:])


def test_arpa_is_normalised_in_every_context():
    sents = [["A", "B", "C"], ["A", "B", "A"], ["B", "C"], ["C", "A", "B", "C"]]
    vocab = ["A", "B", "C", "D"]  # D never seen: it still gets probability mass
    probs, bows = _parse_arpa(lang.train_arpa(sents, vocab, order=3))
    targets = vocab + ["</s>"]
    for h in [(), ("<s>",), ("A",), ("<s>", "A"), ("A", "B"), ("B", "C"), ("D",), ("C", "A")]:
        total = sum(_p(probs, bows, h + (w,)) for w in targets)
        assert math.isclose(total, 1.0, rel_tol=1e-4), (h, total)
    assert _p(probs, bows, ("D",)) > 0
    assert _p(probs, bows, ("A", "B")) > _p(probs, bows, ("A", "C"))


def test_lang_g_and_graph_decode_a_word_sequence(tmp_path):
    """Toy 'acoustics': a decodable that scores the pdfs of one phone sequence high recovers it."""
    from s3prl.hybrid import decode
    from s3prl.hybrid.gmm import MonoModel

    lex = tmp_path / "lexicon.txt"
    lex.write_text("<UNK> SPN\n!SIL SIL\nCAT K AE T\nDOG D AO G\nCOT K AA T\n")
    text = tmp_path / "text"
    text.write_text("u1 CAT DOG\nu2 DOG CAT\nu3 COT DOG CAT\n")
    lang.prepare_lang(lex, tmp_path / "lang")
    lang.format_lm(tmp_path / "lang", text, tmp_path / "lang_test")
    model = MonoModel((tmp_path / "lang" / "topo").read_text())
    info = lang.make_graph(tmp_path / "lang_test", model.tree, model.tm, tmp_path / "graph")
    assert info["states"] > 0
    phones = lang.read_symbols(tmp_path / "lang" / "phones.txt")
    # 3 frames per HMM state, states 0,1,2 of each phone of "DOG COT"
    seq = [("D", 3), ("AO", 3), ("G", 3), ("K", 3), ("AA", 3), ("T", 3)]
    pdf_of = {}
    for t in range(1, model.tm.num_transition_ids + 1):
        pdf_of.setdefault((int(model.tm.transition_id_to_phone(t)), None), set()).add(int(model.tid2pdf[t]))
    frames = []
    for p, n in seq:
        pdfs = sorted(pdf_of[(phones[p], None)])  # the phone's 3 state pdfs, in state order
        for s in range(3):
            frames += [pdfs[s]] * n
    ll = np.full((len(frames), model.num_pdfs), -20.0, dtype=np.float32)
    ll[np.arange(len(frames)), frames] = 0.0
    d = decode.Decoder(tmp_path / "graph", model)
    hyp = d.decode(["x"], decode.MappedDecodable(model, {"x": ll}), 1.0)
    assert hyp == {"x": "DOG COT"}
