#!/usr/bin/env bash
# utils/split_data.sh: split a Kaldi data directory into <data>/split<N>/{1..N} (per speaker) or
# <data>/split<N>utt/{1..N} (--per-utt), as kaldi-asr/kaldi's egs/wsj/s5/utils/split_data.sh,
# through `python -m s3prl.bin.data_dir split`. An up-to-date split is reused.
set -euo pipefail
per_utt=false
help_message="Usage: $0 [--per-utt] <data-dir> <num-to-split>
 --per-utt   split by utterance (speakers may span parts) instead of by speaker"
utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
s3prl_data_dir_verb split 2 "per-utt per_utt" "$@"
