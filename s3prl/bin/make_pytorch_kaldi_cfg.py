"""Write a PyTorch-Kaldi experiment cfg over our feature dumps (s3prl.downstream.pytorch_kaldi).

usage: python -m s3prl.bin.make_pytorch_kaldi_cfg --config conf/pytorch_kaldi.yaml
           --train-feats DIR --dev-feats DIR --test-feats DIR
           --ali-train DIR --ali-dev DIR --ali-test DIR --graph DIR
           [--upstream-ckpt CKPT] [--pytorch-kaldi-root DIR] [--kaldi-root DIR] [--out-folder DIR]
           [--check-frames [--allow-missing]] [--override key=value ...] <out.cfg>

The experiment's out_folder defaults to the directory of <out.cfg> (exp/<name>/pytorch_kaldi.cfg
-> exp/<name>). Every input dir is checked first; a missing one is a one-line error.
With --check-frames, each set's frame counts are compared with its alignments (see
s3prl.bin.check_alignments); with --allow-missing, utterances that have features but no alignment
are reported, not refused (PyTorch-Kaldi drops them). An existing identical cfg is left alone.
With type upstream and a checkpoint trained with per-utterance CMVN, the per-utterance stats its
fea_opts chain reads are written to <out_folder>/upstream_cmvn/ (unless up to date); each set's
n_chunks is sized from its frames unless given (s3prl.downstream.pytorch_kaldi).
A decoding.scoring_script of the form `$KALDI_ROOT/egs/<corpus>/s5/local/score.sh` (LibriSpeech's
config) is written with --kaldi-root (default: the KALDI_ROOT environment variable) in its place.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from s3prl.atomic import atomic_write_text
from s3prl.config import load_config
from s3prl.downstream.pytorch_kaldi import DatasetInputs, PyTorchKaldiConfig, build_cfg, cfg_to_text
from s3prl.errors import cli_main
from s3prl.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make_pytorch_kaldi_cfg", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML options (PyTorchKaldiConfig); defaults when omitted")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. exp.n_epochs_tr=12 (repeatable)")
    for s in ("train", "dev", "test"):
        p.add_argument(f"--{s}-feats", required=True, help=f"{s} features data dir (feats.scp, cmvn.scp, utt2spk)")
        p.add_argument(f"--ali-{s}", required=True, help=f"Kaldi alignment dir of the {s} set")
        p.add_argument(f"--{s}-text", default=None,
                       help=f"data dir holding the {s} set's text for scoring (default: --{s}-feats)")
    p.add_argument("--graph", required=True, help="Kaldi decoding graph dir (HCLG.fst, words.txt)")
    p.add_argument("--upstream-ckpt", default=None, help="our upstream checkpoint (type: upstream)")
    p.add_argument("--pytorch-kaldi-root", default=None,
                   help="PyTorch-Kaldi checkout; its proto paths are then written absolute")
    p.add_argument("--kaldi-root", default=os.environ.get("KALDI_ROOT") or None,
                   help="Kaldi checkout for a $KALDI_ROOT/... decoding.scoring_script (default: $KALDI_ROOT)")
    p.add_argument("--out-folder", default=None, help="PyTorch-Kaldi out_folder (default: the cfg's dir)")
    p.add_argument("--check-frames", action="store_true",
                   help="also compare utt2num_frames with the alignment lengths")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --check-frames: warn about utterances without an alignment (PyTorch-Kaldi drops them)")
    p.add_argument("out_cfg")
    a = p.parse_args(argv)
    setup_logging()
    cfg = load_config(PyTorchKaldiConfig, a.config, a.override)
    out_cfg = Path(a.out_cfg)
    sets = {}
    for s in ("train", "dev", "test"):
        text = getattr(a, f"{s}_text")
        sets[s] = DatasetInputs(Path(getattr(a, f"{s}_feats")), Path(getattr(a, f"ali_{s}")),
                                Path(text) if text else None)
    c = build_cfg(cfg, out_folder=a.out_folder or out_cfg.resolve().parent, train=sets["train"],
                  dev=sets["dev"], test=sets["test"], graph=a.graph, upstream_ckpt=a.upstream_ckpt,
                  pytorch_kaldi_root=a.pytorch_kaldi_root, kaldi_root=a.kaldi_root)
    if a.check_frames:
        from s3prl.bin.check_alignments import check_alignments

        for s, ds in sets.items():
            res = check_alignments(ds.feats_dir, ds.ali_dir, allow_missing=a.allow_missing)
            logging.info("%s: %d utterances match their alignments (%d without one)", s, res["utterances"],
                         res["missing"])
    text = cfg_to_text(c)
    if out_cfg.is_file() and out_cfg.read_text() == text:
        logging.info("%s: already up to date", out_cfg)
        return 0
    atomic_write_text(out_cfg, text)
    logging.info("wrote %s (%s model, out_folder %s)", out_cfg, cfg.type, c["exp"]["out_folder"])
    return 0


if __name__ == "__main__":
    cli_main(main)
