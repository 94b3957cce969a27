"""Train and evaluate the CTC speech recognizer: ``python -m s3prl.bin.train_downstream --task asr``.

Usage:
    python -m s3prl.bin.train_asr [options] --train <dir> --dev <dir> --test <dir> <exp-dir>

The same verb as ``train_downstream --task asr`` (options and outputs: s3prl.bin.train_downstream,
s3prl.downstream.asr), kept under its own name for the recipes and scripts that call it.
Example (from egs/librispeech):

    python -m s3prl.bin.train_asr --config conf/downstream/asr_bilstm.yaml \\
        --train dump/tera/last/train_clean_100 --dev dump/tera/last/dev_clean \\
        --test dump/tera/last/test_clean exp/asr_tera
"""
from __future__ import annotations

from s3prl.errors import cli_main


def main(argv: list[str] | None = None) -> int:
    from s3prl.bin.train_downstream import main as train_downstream

    return train_downstream(argv, task="asr", verb="train_asr")


if __name__ == "__main__":
    cli_main(main)
