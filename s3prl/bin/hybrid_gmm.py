"""Monophone HMM-GMM system of the hybrid recipe (Kaldi's steps/train_mono.sh, steps/align_si.sh,
utils/mkgraph.sh, steps/decode.sh in one verb). See s3prl.hybrid.gmm.

usage: python -m s3prl.bin.hybrid_gmm --lang data/lang --lang-test data/lang_test
           --train DIR --dev DIR --test DIR [--labels CPC_DIR] [--num-iters 40] [--totgauss 1000]
           [--nj 4] <exp-dir>

Writes, like mini_librispeech s5: <exp-dir>/{final.pt,final.mdl,ali.JOB.gz,num_jobs} (exp/mono),
<exp-dir>_ali_{train,dev,test}/ (ali.JOB.gz, num_jobs, final.mdl, final.pt: exp/mono_ali_*), <exp-dir>/graph/
(HCLG.fst, words.txt, phones.txt), <exp-dir>/decode_dev/ (wer_LMWT per LM weight, best_wer) and
<exp-dir>/decode_test/ (wer, cer, hyp.txt at the dev-chosen LM weight), and results.json with the
WERs (over the tokens after --scoring-map FILE where given) and, with --labels (a CPC label dir: converted_aligned_phones.txt, phones.txt), the frame
agreement of the training alignments with those labels. The data dirs' feats.scp are the GMM's
features (MFCC + deltas in the recipe), with per-speaker mean normalisation from cmvn.scp.
Alignment and decoding run in --nj worker processes (Kaldi's jobs: the data split by speaker as
utils/split_data.sh splits it, at most one job per speaker; decoding shares the utterances out);
every utterance is aligned and decoded on its own, so models, alignments and WERs do not depend on
--nj, which is therefore not part of what makes a run complete. A run whose results.json was made
from the same inputs and options says "complete" and does nothing. The log gives each step's time.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from s3prl.atomic import StageLock, atomic_write_text, file_sha256
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("hybrid_gmm")
# Part of what makes a run complete: raised when the same inputs give a different system, so an
# older run is redone (2: training graphs without transition probabilities, Kaldi's beams).
SYSTEM_VERSION = 2


def _inputs_stamp(a) -> dict:
    files = {}
    for d in (a.train, a.dev, a.test):
        for f in ("feats.scp", "cmvn.scp", "text"):
            p = Path(d) / f
            files[str(p)] = file_sha256(p) if p.is_file() else None
    for f in ("L.fst", "topo", "words.txt"):
        files[str(Path(a.lang) / f)] = file_sha256(Path(a.lang) / f)
    files[str(Path(a.lang_test) / "G.fst")] = file_sha256(Path(a.lang_test) / "G.fst")
    if a.scoring_map:
        files[str(Path(a.scoring_map))] = file_sha256(Path(a.scoring_map))
    return {"version": SYSTEM_VERSION, "files": files, "num_iters": a.num_iters, "totgauss": a.totgauss,
            "labels": a.labels, "lmwts": a.lmwts, "beam": a.beam, "scoring_map": a.scoring_map}


def main(argv: list[str] | None = None) -> int:
    # imported here, not at the top: the alignment and decoding workers (spawned) import this
    # module, and s3prl.downstream loads torch
    from s3prl.downstream.hybrid import DEFAULT_LMWTS, parse_lmwts

    p = argparse.ArgumentParser(prog="hybrid_gmm", description=__doc__.split("\n")[0])
    p.add_argument("--lang", required=True)
    p.add_argument("--lang-test", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--labels", help="CPC label dir for the frame agreement of the training alignments")
    p.add_argument("--num-iters", type=int, default=40)
    p.add_argument("--totgauss", type=int, default=1000)
    p.add_argument("--results-md", default="RESULTS.md", help="RESULTS.md whose hybrid table gets the row ('' = none)")
    p.add_argument("--lmwts", default=" ".join(map(str, DEFAULT_LMWTS)), help="LM weights tried on dev (space-separated)")
    p.add_argument("--beam", type=float, default=11.0, help="decoding beam")
    p.add_argument("--scoring-map", metavar="FILE", help="token map applied to reference and hypothesis before "
                   "scoring, 'FROM TO' per line (e.g. TIMIT's 48 -> 39 phones)")
    p.add_argument("--nj", type=int, default=1, help="parallel jobs for alignment and decoding (default 1)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("exp_dir")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    for d in (a.train, a.dev, a.test):
        if not (Path(d) / "feats.scp").is_file():
            raise UserError(f"{d}: no feats.scp")
    for f in (Path(a.lang) / "L.fst", Path(a.lang_test) / "G.fst"):
        if not f.is_file():
            raise UserError(f"{f}: missing (run s3prl.bin.hybrid_lang first)")
    if a.num_iters < 2:
        raise UserError(f"--num-iters {a.num_iters}: must be >= 2")
    if a.nj < 1:
        raise UserError(f"--nj {a.nj}: must be >= 1")
    from s3prl.data.alignments import alignment_archives, iter_alignments
    from s3prl.hybrid import decode, gmm, lang

    smap = decode.read_scoring_map(a.scoring_map) if a.scoring_map else None

    exp = Path(a.exp_dir)
    stamp = _inputs_stamp(a)
    res_file = exp / "results.json"
    if res_file.is_file():
        with_stamp = json.loads(res_file.read_text())
        if with_stamp.get("inputs") == stamp:
            _results_md(a.results_md, with_stamp, exp)
            print(f"hybrid_gmm: {exp} complete: " + describe(with_stamp))
            return 0
    with StageLock(exp, "hybrid_gmm"):
        clock = _Clock()
        cfg = gmm.MonoConfig(num_iters=a.num_iters, max_iter_inc=max(1, a.num_iters * 3 // 4), totgauss=a.totgauss)
        info = gmm.train_mono(a.train, a.lang, exp, cfg, nj=a.nj)
        log.info("mono: %s", info)
        clock.lap(f"monophone training ({a.num_iters} passes, {info['num_jobs']} jobs)")
        model = gmm.MonoModel.load(exp / "final.pt")
        ali_dirs = {}
        for name, d in (("train", a.train), ("dev", a.dev), ("test", a.test)):
            out = Path(f"{exp}_ali_{name}")
            if name == "train":  # the final alignments of training (steps/align_si.sh would redo them)
                out.mkdir(parents=True, exist_ok=True)
                archives = alignment_archives(exp)
                for f in [exp / "final.pt", exp / "final.mdl", *archives, exp / "num_jobs"]:
                    shutil.copyfile(f, out / f.name)
                gmm.remove_stale_archives(out, len(archives))
            else:
                gmm.align_data(exp, d, a.lang, out, cfg, nj=a.nj)
            ali_dirs[name] = str(out)
        clock.lap("alignment of dev and test")
        record = {"task": "hybrid_gmm", "upstream": "mfcc", "layer": "-", "head": "mono_gmm",
                  "dev_accuracy": None, "mono": info, "ali_dirs": ali_dirs, "exp_dir": str(exp)}
        if a.labels:
            from s3prl.data.labels import PHONE_FILE, read_phone_labels
            from s3prl.bin.hybrid_lang import read_phone_list
            ali = {k: v for k, v, _ in iter_alignments(exp)}
            labels = read_phone_labels(Path(a.labels) / PHONE_FILE, utts=ali)
            record["frame_agreement"] = gmm.frame_agreement(
                model, ali, Path(a.lang) / "phones.txt", labels, read_phone_list(Path(a.labels) / "phones.txt"))
        record["graph"] = lang.make_graph(a.lang_test, model.tree, model.tm, exp / "graph")
        clock.lap("graph (HCLG)")
        decoder = decode.Decoder(exp / "graph", model, beam=a.beam)
        feats = gmm.load_feats(a.dev)
        lmwt, dev_wer = decode.tune_lmwt(decoder, decode.GmmDecodable(model, feats), decode.read_refs(a.dev),
                                         exp / "decode_dev", parse_lmwts(a.lmwts), nj=a.nj, scoring_map=smap)
        feats = gmm.load_feats(a.test)
        res = decode.decode_test(decoder, decode.GmmDecodable(model, feats), decode.read_refs(a.test),
                                 exp / "decode_test", lmwt, nj=a.nj, scoring_map=smap)
        clock.lap("decoding of dev (every LM weight) and test")
        record.update({"lmwt": lmwt, "dev_wer": dev_wer, "test_wer": res["wer"], "test_cer": res["cer"],
                       "test_wer_counts": res["wer_counts"], "seconds": clock.laps, "inputs": stamp})
        atomic_write_text(res_file, json.dumps(record, indent=1, sort_keys=True) + "\n")
    _results_md(a.results_md, record, exp)
    print("hybrid_gmm: " + describe(record))
    return 0


class _Clock:
    """Wall time of each step, logged and kept (results.json "seconds")."""

    def __init__(self):
        self.laps, self.t = {}, time.monotonic()

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.laps[what] = round(now - self.t, 1)
        log.info("%s: %.1f s", what, now - self.t)
        self.t = now


def _results_md(path: str, record: dict, exp: Path) -> None:
    if path:
        from s3prl.downstream.hybrid import HYBRID_TABLE
        from s3prl.downstream.results import update_results_md
        update_results_md(path, record, str(exp), HYBRID_TABLE)


def describe(r: dict) -> str:
    fa = r.get("frame_agreement")
    fa_s = f", frame agreement {100 * fa['agreement']:.1f} % (majority class {100 * fa['majority_baseline']:.1f} %)" \
        if fa else ""
    return f"test WER {r['test_wer']:.2f} % CER {r['test_cer']:.2f} % (LMWT {r['lmwt']}){fa_s}"


if __name__ == "__main__":
    cli_main(main)
