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
s3prl_data_dir_verb validate 1 "no-feats no_feats no-text no_text no-wav no_wav non-print non_print no-spk-sort no_spk_sort" "$@"
