"""Kaldi data dirs data/{train,dev,test} from a TIMIT corpus, Kaldi egs/timit/s5 conventions.

usage: python -m s3prl.bin.prepare_timit [--wav-format path|sph2pipe|sox] [--phones 48|39|60] <timit-dir> <data-root>

SA sentences removed; dev = Kaldi's 50-speaker list, test = the 24-speaker core test set;
text = phones mapped 61 -> 48 (see s3prl.data.timit); stm + glm = the sclite reference of the
TIMIT scorer PyTorch-Kaldi runs. Sets already complete are skipped.
"""
from __future__ import annotations

import argparse
import logging

from s3prl.data.timit import WAV_FORMATS, prepare_timit
from s3prl.errors import cli_main
from s3prl.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prepare_timit", description=__doc__.split("\n\n")[0])
    p.add_argument("--wav-format", default="path", choices=list(WAV_FORMATS),
                   help="absolute SPHERE paths (default), or 'sph2pipe -f wav P |' / 'sox P -t wav - |' pipes")
    p.add_argument("--phones", type=int, default=48, choices=[48, 39, 60],
                   help="phone set of the text files (default 48, as Kaldi trains)")
    p.add_argument("timit_dir")
    p.add_argument("data_root")
    a = p.parse_args(argv)
    setup_logging()
    out = prepare_timit(a.timit_dir, a.data_root, wav_format=a.wav_format, phones=a.phones)
    for name, d in out.items():
        n = sum(1 for _ in open(d / "utt2spk"))
        logging.info("%s: %d utterances", d, n)
    return 0


if __name__ == "__main__":
    cli_main(main)
