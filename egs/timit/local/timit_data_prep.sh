#!/usr/bin/env bash
# egs/timit/local/timit_data_prep.sh: data/{train,dev,test} from the TIMIT corpus with Kaldi's
# egs/timit/s5 conventions (local/timit_data_prep.sh there: SA sentences removed, the 50-speaker
# dev and 24-speaker core test sets, 48 phones; also sclite stm/glm), through
# `python -m s3prl.bin.prepare_timit`.
#
# Usage: local/timit_data_prep.sh [--wav-format path|sph2pipe|sox] <timit-dir> <data-root>
#   e.g. local/timit_data_prep.sh /data/TIMIT data
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../utils/lib.sh"  # the recipe's utils link, as Kaldi's local/ scripts use it
s3prl_prep_verb prepare_timit 2 "Usage: $0 [--wav-format path|sph2pipe|sox] <timit-dir> <data-root>" "$@"
