"""Train the DNN of the hybrid DNN-HMM system on GMM alignments and decode with it: the same verb as
``python -m s3prl.bin.train_downstream --task hybrid`` (s3prl.downstream.hybrid, s3prl.hybrid.dnn).

usage: python -m s3prl.bin.train_hybrid_dnn --config YAML [--override K=V] [--upstream U [--on-the-fly
           [--layer L] [--fine-tune]]] --train DIR --dev DIR --test DIR
           --ali-train DIR --ali-dev DIR --ali-test DIR --graph DIR [--lmwts "3 5 8"] [--beam B] <exp-dir>

--train/--dev/--test (also --feats-{train,dev,test}): data dirs with text whose feats.scp are the
DNN's input (fbank data dirs, or an upstream's dump layer dirs), or with --on-the-fly the data dirs
--upstream runs on (--layer last|N|weighted_sum frozen, or --fine-tune); --upstream: fbank (the
default), or the upstream checkpoint. --ali-*: alignment dirs of s3prl.bin.hybrid_gmm
(<exp>_ali_{train,dev,test}); --graph: its HCLG dir. The config is a hybrid config
(s3prl.downstream.hybrid.HybridConfig: a frame-level head linear, 1hidden or concat; its class
count is the model's number of pdfs). Writes <exp-dir>/{best-dev.ckpt, decode_dev/wer_LMWT,
decode_test/{wer,cer,hyp.txt}, results.json}; a run already complete with the same config and
inputs does nothing.
"""
from __future__ import annotations

from s3prl.errors import cli_main


def main(argv: list[str] | None = None) -> int:
    from s3prl.bin.train_downstream import main as train_downstream

    return train_downstream(argv, task="hybrid", verb="train_hybrid_dnn")


if __name__ == "__main__":
    cli_main(main)
