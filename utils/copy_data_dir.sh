#!/usr/bin/env bash
# utils/copy_data_dir.sh: copy a Kaldi data directory, optionally adding a prefix / suffix to the
# utterance and speaker ids, like Kaldi's egs/wsj/s5/utils/copy_data_dir.sh (same options), through
# `python -m s3prl.bin.data_dir copy` (s3prl.data.kaldi_dir.copy_data_dir). --no-feats (ours) leaves
# the features out, for a copy whose features are computed anew (e.g. MFCC for a GMM); files are
# replaced only when their text changes, and the copy is validated (validate_data_dir.sh).
set -euo pipefail
utt_prefix=""
utt_suffix=""
spk_prefix=""
spk_suffix=""
validate_opts=""   # accepted as in Kaldi; the copy is validated for what it holds
no_feats=false
help_message="Usage: $0 [options] <srcdir> <destdir>
 --utt-prefix P   prefix added to every utterance id
 --utt-suffix S   suffix added to every utterance id
 --spk-prefix P   prefix added to every speaker id
 --spk-suffix S   suffix added to every speaker id
 --no-feats       leave out feats.scp, cmvn.scp, utt2num_frames, feats_dim, frame_shift
e.g.: $0 --spk-prefix=1- --utt-prefix=1- data/train data/train_1"
utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
s3prl_bare_flags "no-feats" "$@"
set -- "${S3PRL_ARGS[@]+"${S3PRL_ARGS[@]}"}"
. "$utils_dir/parse_options.sh"
s3prl_check_args 2 $#
s3prl_flag_opts "no-feats no_feats"
exec "$S3PRL_PYTHON" -m s3prl.bin.data_dir copy --utt-prefix "$utt_prefix" --utt-suffix "$utt_suffix" \
  --spk-prefix "$spk_prefix" --spk-suffix "$spk_suffix" ${S3PRL_OPTS[@]+"${S3PRL_OPTS[@]}"} "$1" "$2"
