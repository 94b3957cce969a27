#!/usr/bin/env bash
# utils/fix_data_dir.sh: sort the files of a Kaldi data directory, keep only the utterances present
# in all of them, regenerate spk2utt, back the originals up to <data>/.backup (as Kaldi's
# egs/wsj/s5/utils/fix_data_dir.sh does), through `python -m s3prl.bin.data_dir fix`.
set -euo pipefail
help_message="Usage: $0 <data-dir>"
utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
. "$utils_dir/parse_options.sh"
if [ "$#" -ne 1 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
exec "$S3PRL_PYTHON" -m s3prl.bin.data_dir fix "$1"
