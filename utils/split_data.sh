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
s3prl_bare_flags "per-utt per_utt" "$@"
set -- "${S3PRL_ARGS[@]+"${S3PRL_ARGS[@]}"}"
. "$utils_dir/parse_options.sh"
if [ "$#" -ne 2 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
opts=()
[ "$per_utt" = true ] && opts+=(--per-utt)
exec "$S3PRL_PYTHON" -m s3prl.bin.data_dir split "${opts[@]+"${opts[@]}"}" "$1" "$2"
