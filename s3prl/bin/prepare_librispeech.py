"""Kaldi data dirs from a LibriSpeech-layout corpus (real or synthetic).

usage: python -m s3prl.bin.prepare_librispeech [--wav-format path|pipe] <corpus-dir> <subset> <data-dir>

Skips the subset when `<data-dir>` is already complete and valid.
"""
from __future__ import annotations

import argparse
import logging

from s3prl.data.librispeech import prepare_librispeech
from s3prl.errors import cli_main
from s3prl.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prepare_librispeech", description=__doc__.split("\n\n")[0])
    p.add_argument("--wav-format", default="path", choices=["path", "pipe"],
                   help="absolute FLAC paths (default) or Kaldi's 'flac -c -d -s PATH |' pipes")
    p.add_argument("corpus_dir")
    p.add_argument("subset")
    p.add_argument("data_dir")
    a = p.parse_args(argv)
    setup_logging()
    out = prepare_librispeech(a.corpus_dir, a.subset, a.data_dir, wav_format=a.wav_format)
    n = sum(1 for _ in open(out / "utt2spk"))
    logging.info("%s: %d utterances", out, n)
    return 0


if __name__ == "__main__":
    cli_main(main)
