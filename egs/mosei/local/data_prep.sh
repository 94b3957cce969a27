#!/usr/bin/env bash
# egs/mosei/local/data_prep.sh: the Kaldi data dir of a CMU-MOSEI-layout corpus (full-video wav.scp
# plus `segments`, one utterance per labelled segment) and the video-level train/dev/test sentiment
# splits, through `python -m s3prl.bin.prepare_mosei` (S3PRL's mosei_no_semi.csv columns; 1-20 s
# segments with |score| >= 0.1, split by video 90/10 with --seed, dev = 10 % of the train videos).
#
# Usage: local/data_prep.sh [--seed 29] [--label-csv FILE] [--audio-dir DIR] <corpus-dir> <data-dir> <split-dir>
#   e.g. local/data_prep.sh /data/CMU_MOSEI data/mosei data/sentiment
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../utils/lib.sh"  # the recipe's utils link, as Kaldi's local/ scripts use it
s3prl_prep_verb prepare_mosei 3 "Usage: $0 [--seed 29] [--label-csv FILE] [--audio-dir DIR] <corpus-dir> <data-dir> <split-dir>" "$@"
