"""Decoding with the lattice-faster decoder on HCLG and Kaldi-style scoring (steps/decode.sh +
local/score.sh of kaldi-asr/kaldi egs/mini_librispeech/s5).

Acoustic scores are either the GMM's log-likelihoods (gmm-latgen-faster) or a DNN's
log-posteriors minus log-priors (nnet-forward --class-frame-counts, then latgen-faster-mapped):
``loglike(t, tid) = acwt * (log p(pdf(tid) | x_t) - log p(pdf(tid)))``. kaldi-hmm-gmm's decoder
returns the best path, not a lattice, so where Kaldi's scoring rescales one lattice for every LM
weight, here each LM weight is a decode with acoustic scale ``1 / LMWT`` (the same best path as
lattice rescoring with that weight). Per LM weight the dev decode dir gets ``wer_LMWT`` and
``cer_LMWT`` (compute-wer report and per-utterance details, s3prl.downstream.scoring) and
``hyp_LMWT.txt``; ``best_wer`` names the best. With a patience (the hybrid DNN's
decode.lmwt_patience) the weights are decoded in ascending order and the search stops once that
many in a row after the best are no better: the high weights, flat acoustic scores, are the slow
decodes. The decoder's lattice beam prunes only the lattice, which is not kept: the best path does
not depend on it. The test set is decoded once with the LM weight
chosen on dev: ``wer``, ``cer``, ``hyp.txt``, ``ref.txt`` and ``wer_LMWT``. With ``nj`` > 1 the
utterances are shared out to worker processes (steps/decode.sh's jobs); each is decoded on its
own, so the hypotheses do not depend on ``nj``.

A scoring map (``read_scoring_map``) maps the tokens of reference and hypothesis before scoring,
as Kaldi's TIMIT recipe scores its 48-phone output on the 39-phone set (kaldi-asr/kaldi
egs/timit/s5/local/score.sh runs local/timit_norm_trans.pl -from 48 -to 39 on both sides). With a
map, ``hyp.txt`` / ``ref.txt`` / ``wer*`` are over the mapped text and the decoder's own output is
kept as ``hyp_unmapped.txt`` (test) and ``hyp_LMWT.txt`` (dev).
"""
from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from s3prl.atomic import atomic_write_text
from s3prl.data.kaldi_dir import read_kv, write_kv
from s3prl.downstream.scoring import error_rate, write_decode_dir
from s3prl.errors import UserError
from s3prl.hybrid.lang import word_symbols

log = logging.getLogger(__name__)


# make_decodable(utt, acoustic_scale) -> a kaldi-hmm-gmm DecodableInterface
DecodableFactory = Callable[[str, float], "khg.DecodableInterface"]


class GmmDecodable:
    """gmm-latgen-faster's scores: the GMM's log-likelihoods of `feats` ({utt: (T, D)}), scaled."""

    def __init__(self, model, feats: dict[str, np.ndarray]):
        self.model, self.feats = model, feats

    def __call__(self, utt: str, acwt: float):
        return khg.DecodableAmDiagGmmScaled(am=self.model.am, tm=self.model.tm, feats=self.feats[utt], scale=acwt)

    def frames(self, utt: str) -> int:
        return len(self.feats[utt])

    def subset(self, utts) -> "GmmDecodable":
        return GmmDecodable(self.model, {u: self.feats[u] for u in utts})


class MappedDecodable:
    """Decodable over per-pdf scores (T, num_pdfs) (latgen-faster-mapped's DecodableMatrixScaledMapped):
    the matrix is expanded to transition ids (column tid - 1 = score of pdf(tid)) for DecodableCtc,
    which reads column ``index - 1``."""

    def __init__(self, model, log_likes: dict[str, np.ndarray]):
        self.model, self.log_likes = model, log_likes

    def __call__(self, utt: str, acwt: float):
        m = np.ascontiguousarray((acwt * self.log_likes[utt][:, self.model.tid2pdf[1:]]).astype(np.float32))
        return khg.DecodableCtc(m)

    def frames(self, utt: str) -> int:
        return len(self.log_likes[utt])

    def subset(self, utts) -> "MappedDecodable":
        return MappedDecodable(self.model, {u: self.log_likes[u] for u in utts})



class Decoder:
    def __init__(self, graph_dir: str | Path, model, beam: float = 11.0, max_active: int = 3000,
                 lattice_beam: float = 6.0):
        graph = Path(graph_dir)
        if not (graph / "HCLG.fst").is_file():
            raise UserError(f"{graph}: no HCLG.fst (make the graph first)")
        self.args = (str(graph), model, beam, max_active, lattice_beam)
        self.fst = kaldifst.StdVectorFst.read(str(graph / "HCLG.fst"))
        self.words = word_symbols(graph)
        self.model = model
        self.config = khg.LatticeFasterDecoderConfig(max_active=max_active, beam=beam, lattice_beam=lattice_beam)
        self.decoder = khg.LatticeFasterDecoder(self.fst, self.config)

    def decode(self, utts: list[str], make: DecodableFactory, acwt: float) -> dict[str, str]:
        hyps = {}
        for u in utts:
            ok, _, word_ids, _ = khg.decode_utterance_lattice_faster(
                decoder=self.decoder, decodable=make(u, acwt), trans_model=self.model.tm, utt=u,
                allow_partial=True)
            hyps[u] = " ".join(self.words[i] for i in word_ids if self.words.get(i) not in (None, "<eps>", "!SIL")) \
                if ok else ""
        return hyps

    def decode_lmwts(self, utts: list[str], make, lmwts, nj: int = 1) -> dict[int, dict[str, str]]:
        """{LMWT: {utt: hypothesis}}: each utterance decoded with acoustic scale 1 / LMWT. With
        nj > 1 the utterances are shared out (by frames) to nj worker processes, each with its own
        decoder on HCLG (steps/decode.sh's jobs); `make` must then be a GmmDecodable or
        MappedDecodable. Every utterance is decoded on its own: the result does not depend on nj."""
        nj = max(1, min(nj, len(utts)))
        if nj == 1:
            return {lmwt: self.decode(utts, make, 1.0 / lmwt) for lmwt in lmwts}
        parts, load = [[] for _ in range(nj)], [0] * nj
        for u in sorted(utts, key=lambda u: (-make.frames(u), u)):
            j = load.index(min(load))
            parts[j].append(u)
            load[j] += make.frames(u)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(nj, mp_context=ctx) as pool:
            futs = [pool.submit(_decode_part, self.args, make.subset(p), p, tuple(lmwts)) for p in parts]
            done = [f.result() for f in futs]
        return {lmwt: {u: h for d in done for u, h in d[lmwt].items()} for lmwt in lmwts}


def _decode_part(decoder_args: tuple, make, utts: list[str], lmwts: tuple) -> dict[int, dict[str, str]]:
    return Decoder(*decoder_args).decode_lmwts(utts, make, lmwts)


def read_refs(data_dir: str | Path) -> dict[str, str]:
    return read_kv(Path(data_dir) / "text", allow_empty_value=True)


ScoringMap = dict[str, str]


def read_scoring_map(path: str | Path) -> ScoringMap:
    """A token map for scoring: one ``FROM TO`` per line (``FROM`` alone deletes the token), ``#``
    comments and blank lines skipped; a token that no line names is scored as it is. A malformed
    or repeated line is a UserError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read the scoring map: {e.strerror}") from None
    out: ScoringMap = {}
    for n, line in enumerate(text.splitlines(), 1):
        f = line.split("#", 1)[0].split()
        if not f:
            continue
        if len(f) > 2:
            raise UserError(f"{path}:{n}: expected 'FROM TO' or 'FROM', got '{line.strip()}'")
        if f[0] in out:
            raise UserError(f"{path}:{n}: '{f[0]}' is mapped twice")
        out[f[0]] = f[1] if len(f) == 2 else ""
    if not out:
        raise UserError(f"{path}: the scoring map has no entry")
    return out


def map_texts(texts: dict[str, str], smap: ScoringMap | None) -> dict[str, str]:
    """`texts` with every token passed through `smap` (deleted where it maps to nothing)."""
    if not smap:
        return texts
    return {u: " ".join(m for m in (smap.get(w, w) for w in t.split()) if m) for u, t in texts.items()}


def tune_lmwt(decoder: Decoder, make: DecodableFactory, refs: dict[str, str], decode_dir: str | Path,
              lmwts, nj: int = 1, scoring_map: ScoringMap | None = None, patience: int = 0) -> tuple[int, float]:
    """Decode `refs`' utterances with the LM weights `lmwts` (in `nj` jobs); write wer_/cer_/hyp_
    files and best_wer; return (best LM weight, its WER; ties: the lower weight). `scoring_map` maps
    both sides before scoring. patience 0: every weight. patience N: the weights in ascending order,
    stopping once N weights in a row after the best are no better (the high weights are the slow
    decodes); the weights left out get no files."""
    out = Path(decode_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = sorted(refs)
    grid = sorted(set(lmwts))
    by_lmwt = decoder.decode_lmwts(utts, make, grid, nj) if patience == 0 else {}
    best, since_best = None, 0
    scored_refs = map_texts(refs, scoring_map)
    for lmwt in grid:
        if patience and since_best >= patience:
            log.info("%s: LM weights %s not decoded: the %d after LMWT %d were no better", out,
                     " ".join(str(w) for w in grid if w >= lmwt), patience, best[0])
            break
        hyps = by_lmwt[lmwt] if patience == 0 else decoder.decode_lmwts(utts, make, (lmwt,), nj)[lmwt]
        scored = map_texts(hyps, scoring_map)
        w = error_rate(scored_refs, scored, "word", hyp_source=str(out / f"hyp_{lmwt}.txt"))
        c = error_rate(scored_refs, scored, "char", hyp_source=str(out / f"hyp_{lmwt}.txt"))
        atomic_write_text(out / f"wer_{lmwt}", w.report() + "\n" + w.details())
        atomic_write_text(out / f"cer_{lmwt}", c.report() + "\n" + c.details())
        write_kv(out / f"hyp_{lmwt}.txt", hyps)
        log.info("%s LMWT %d: %s", out, lmwt, w.summary())
        if best is None or w.rate < best[1]:
            best, since_best = (lmwt, w.rate, w.summary()), 0
        else:
            since_best += 1
    atomic_write_text(out / "best_wer", f"{best[2]} {out / f'wer_{best[0]}'}\n")
    if len(grid) > 1 and best[0] in (grid[0], grid[-1]):
        log.warning("%s: the best LM weight %d is at an end of the grid %s; the optimum may lie beyond it "
                    "(widen --lmwts / decode.lmwts)", out, best[0], " ".join(map(str, grid)))
    return best[0], best[1]


def decode_test(decoder: Decoder, make: DecodableFactory, refs: dict[str, str], decode_dir: str | Path,
                lmwt: int, nj: int = 1, scoring_map: ScoringMap | None = None) -> dict:
    """Decode with the chosen LM weight (in `nj` jobs) and score (wer, cer, hyp.txt, ref.txt,
    wer_LMWT; with `scoring_map` over the mapped text, the decoder's words in hyp_unmapped.txt)."""
    out = Path(decode_dir)
    hyps = decoder.decode_lmwts(sorted(refs), make, (lmwt,), nj)[lmwt]
    res = write_decode_dir(out, map_texts(refs, scoring_map), map_texts(hyps, scoring_map))
    if scoring_map:
        write_kv(out / "hyp_unmapped.txt", hyps)
    atomic_write_text(out / f"wer_{lmwt}", (out / "wer").read_text(encoding="utf-8"))
    res["lmwt"] = lmwt
    return res
