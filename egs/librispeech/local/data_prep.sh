#!/usr/bin/env bash
# egs/librispeech/local/data_prep.sh: the Kaldi data dir of one LibriSpeech subset (the role of
# Kaldi's egs/librispeech/s5/local/data_prep.sh: wav.scp, text, utt2spk, spk2utt, spk2gender,
# utt2dur), through `python -m s3prl.bin.prepare_librispeech`. Works on the real corpus and on the
# synthetic stand-in alike; a complete, valid data dir is left alone.
#
# Usage: local/data_prep.sh [--wav-format path|pipe] <corpus-dir> <subset> <data-dir>
#   e.g. local/data_prep.sh /data/LibriSpeech train-clean-100 data/train-clean-100
set -euo pipefail
wav_format=path
help_message="Usage: $0 [--wav-format path|pipe] <corpus-dir> <subset> <data-dir>"
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../../utils/lib.sh"
. "$S3PRL_ROOT/utils/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
exec "$S3PRL_PYTHON" -m s3prl.bin.prepare_librispeech --wav-format "$wav_format" "$1" "$2" "$3"
