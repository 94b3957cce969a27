"""Train the DNN of the hybrid DNN-HMM system on GMM alignments and decode with it (see
s3prl.hybrid.dnn).

usage: python -m s3prl.bin.train_hybrid_dnn --config YAML [--override K=V] --upstream U
           --feats-train DIR --feats-dev DIR --feats-test DIR
           --ali-train DIR --ali-dev DIR --ali-test DIR --graph DIR <exp-dir>

--feats-*: data dirs whose feats.scp are the DNN's input (fbank data dirs, or an upstream's dump
layer dirs); --upstream: fbank, or the upstream checkpoint the dump came from. --ali-*: alignment
dirs of s3prl.bin.hybrid_gmm (<exp>_ali_{train,dev,test}); --graph: its HCLG dir. The config is a
downstream phone config (frame-level head: linear, 1hidden, concat); its class count is the
model's number of pdfs. Writes <exp-dir>/{best-dev.ckpt, decode_dev/wer_LMWT, decode_test/{wer,cer,
hyp.txt}, results.json}; a run already complete with the same config and inputs does nothing.
"""
from __future__ import annotations

import argparse

from s3prl.errors import cli_main
from s3prl.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    from s3prl.bin.hybrid_gmm import add_decoding_arguments

    p = argparse.ArgumentParser(prog="train_hybrid_dnn", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--override", action="append", default=[], metavar="K=V")
    p.add_argument("--upstream", default="fbank")
    for s in ("train", "dev", "test"):
        p.add_argument(f"--feats-{s}", required=True)
        p.add_argument(f"--ali-{s}", required=True)
    p.add_argument("--graph", required=True)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true")
    add_decoding_arguments(p)
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    from s3prl.downstream.config import load_downstream_config
    from s3prl.downstream.runner import cli_command, print_record
    from s3prl.bin.hybrid_gmm import parse_lmwts
    from s3prl.hybrid.dnn import HybridInputs, run_hybrid_dnn

    cfg = load_downstream_config(a.config, a.override, task="phone")
    inputs = HybridInputs(feats={"train": a.feats_train, "dev": a.feats_dev, "test": a.feats_test},
                          ali={"train": a.ali_train, "dev": a.ali_dev, "test": a.ali_test}, graph=a.graph,
                          upstream=a.upstream)
    record = run_hybrid_dnn(cfg, inputs, a.exp_dir, command=cli_command("train_hybrid_dnn", argv),
                            device=a.device, progress=not a.no_progress, results_md=a.results_md or None,
                            lmwts=parse_lmwts(a.lmwts), beam=a.beam)
    print_record(record, lambda r: (f"hybrid DNN {r['head']} {r['upstream']} ({r['layer']}): pdf accuracy dev "
                                    f"{100 * r['dev_accuracy']:.2f} %, test WER {r['test_wer']:.2f} % CER "
                                    f"{r['test_cer']:.2f} % (LMWT {r['lmwt']})"))
    return 0


if __name__ == "__main__":
    cli_main(main)
