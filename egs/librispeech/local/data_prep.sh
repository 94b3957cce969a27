#!/usr/bin/env bash
# egs/librispeech/local/data_prep.sh: the Kaldi data dir of one LibriSpeech subset (the role of
# Kaldi's egs/librispeech/s5/local/data_prep.sh: wav.scp, text, utt2spk, spk2utt, spk2gender,
# utt2dur), through `python -m s3prl.bin.prepare_librispeech`. Works on the real corpus and on the
# synthetic stand-in alike; a complete, valid data dir is left alone.
#
# Usage: local/data_prep.sh [--wav-format path|pipe] <corpus-dir> <subset> <data-dir>
#   e.g. local/data_prep.sh /data/LibriSpeech train-clean-100 data/train-clean-100
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../utils/lib.sh"  # the recipe's utils link, as Kaldi's local/ scripts use it
s3prl_prep_verb prepare_librispeech 3 "Usage: $0 [--wav-format path|pipe] <corpus-dir> <subset> <data-dir>" "$@"
