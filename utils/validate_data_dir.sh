#!/usr/bin/env bash
# utils/validate_data_dir.sh: check a Kaldi data directory as kaldi-asr/kaldi's
# egs/wsj/s5/utils/validate_data_dir.sh does, through `python -m s3prl.bin.data_dir validate`.
# Flags may be given bare (--no-feats, as in Kaldi) or with a value (--no-feats true).
set -euo pipefail
no_feats=false; no_text=false; no_wav=false; non_print=false; no_spk_sort=false
help_message="Usage: $0 [--no-feats] [--no-text] [--no-wav] [--non-print] [--no-spk-sort] <data-dir>
 --no-feats     feats.scp may be absent (checked if present)
 --no-text      text may be absent (checked if present)
 --no-wav       wav.scp may be absent (checked if present)
 --non-print    allow non-printable characters in text
 --no-spk-sort   do not require utt2spk to be sorted by speaker too"
utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
s3prl_bare_flags "no-feats no_feats no-text no_text no-wav no_wav non-print non_print no-spk-sort no_spk_sort" "$@"
set -- "${S3PRL_ARGS[@]+"${S3PRL_ARGS[@]}"}"
. "$utils_dir/parse_options.sh"
if [ "$#" -ne 1 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
opts=()
[ "$no_feats" = true ] && opts+=(--no-feats)
[ "$no_text" = true ] && opts+=(--no-text)
[ "$no_wav" = true ] && opts+=(--no-wav)
[ "$non_print" = true ] && opts+=(--non-print)
[ "$no_spk_sort" = true ] && opts+=(--no-spk-sort)
exec "$S3PRL_PYTHON" -m s3prl.bin.data_dir validate "${opts[@]+"${opts[@]}"}" "$1"
