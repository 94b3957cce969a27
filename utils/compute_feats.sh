#!/usr/bin/env bash
# utils/compute_feats.sh: features + CMVN stats for a Kaldi data dir (steps/make_fbank.sh and
# steps/compute_cmvn_stats.sh in one verb).
#
# Usage: utils/compute_feats.sh [options] <data-dir> <log-dir> <feat-dir>
#   --nj N              parallel jobs (default 4); must not exceed the number of speakers
#   --cmd CMD           job runner (default run.pl)
#   --config YAML       feature config (s3prl.features.FeatureConfig; default: fbank defaults)
#   --compress BOOL|M   false (default, exact FM), true (Kaldi's auto CM/CM2) or method 1-7
# Writes <feat-dir>/raw_<type>_<data>.<n>.{ark,scp}, <feat-dir>/cmvn_<data>.ark and, in the data
# dir, feats.scp, utt2num_frames, feats_dim, frame_shift, cmvn.scp, conf/feats.inputs (sha256 of
# the wav.scp, segments, utt2spk and spk2utt the features were made from) and conf/feats.yaml (the
# resolved config). If the data dir already has complete features made with the same config from
# the same inputs it says "skip" and does nothing; an edited input makes it recompute. The data
# dir is validated before any job runs. Files move into place only once complete,
# conf/feats.yaml last, so a killed run is redone by the next one.
set -euo pipefail

nj=4
cmd=run.pl
compress=false
help_message="Usage: $0 [--nj N] [--cmd run.pl] [--config conf/fbank.yaml] [--compress false] <data-dir> <log-dir> <feat-dir>"

utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
py=$S3PRL_PYTHON
prog=${0##*/}

# --config names a YAML file here: taken before parse_options.sh.
s3prl_yaml_options config "$@"
feat_config=$S3PRL_CONFIG
set -- ${S3PRL_ARGS[@]+"${S3PRL_ARGS[@]}"}
. "$utils_dir/parse_options.sh"
s3prl_check_args 3 $#
data=$1
logdir=$2
featdir=$3

[ -f "$data/utt2spk" ] || { echo "$prog: $data/utt2spk: no such file" >&2; exit 1; }
[ -f "$data/wav.scp" ] || { echo "$prog: $data/wav.scp: no such file" >&2; exit 1; }
if [ -n "$feat_config" ]; then
  [ -r "$feat_config" ] || { echo "$prog: $feat_config: no such config file" >&2; exit 1; }
  feat_config=$(cd "$(dirname "$feat_config")" && pwd)/$(basename "$feat_config")
  cfg_opt=(--config "$feat_config")
else
  cfg_opt=()
fi
s3prl_check_nj "$nj"

mkdir -p "$logdir"
# One run per data dir at a time; children get `9>&-` below.
s3prl_lock "$data/.lock" "$data"
# The resolved config (the same effective options give the same text), for the jobs and, at the
# end, for $data/conf/feats.yaml. It is replaced only when its text changes, so that jobs whose
# outputs are complete and newer than it are not redone by a rerun.
# Likewise the identity of the data dir's inputs (sha256 of wav.scp, segments, utt2spk, spk2utt):
# when it changed since the last run, the split and every job's outputs are stale and redone.
cfg_copy="$logdir/feats.yaml"
inputs_copy="$logdir/feats.inputs"
read -r status feat_type feat_dim frame_shift < <("$py" -m s3prl.bin.compute_feats \
  ${cfg_opt[@]+"${cfg_opt[@]}"} --plan "$data" --write-config "$cfg_copy.new" \
  --write-inputs "$inputs_copy.new" 9>&-) || true
[ ! -f "$cfg_copy.new" ] || s3prl_replace_if_changed "$cfg_copy.new" "$cfg_copy" || true
if [ "${status:-}" = done ]; then
  rm -f "$inputs_copy.new"
  echo "$prog: skip: $data/feats.scp is complete and made with the same config from the same inputs"
  exit 0
fi
[ "${status:-}" = todo ] || { rm -f "$inputs_copy.new"; exit 1; }  # the verb printed the error
if [ -f "$inputs_copy.new" ] && s3prl_replace_if_changed "$inputs_copy.new" "$inputs_copy"; then
  rm -rf "$data/split$nj"
fi

s3prl_check_speakers "$nj" "$data"

mkdir -p "$featdir" "$data/conf"
featdir=$(cd "$featdir" && pwd)
name=$(basename "$(cd "$data" && pwd)")

# The old outputs no longer describe what is being made (the completion mark goes first).
rm -f "$data/conf/feats.yaml" "$data/conf/feats.inputs" "$data/feats.scp" "$data/cmvn.scp" "$data/utt2num_frames"

# The data dir as a whole (utt2spk/spk2utt agreeing, sorted, no duplicates, text if present) is
# checked before any feature is computed, not after the jobs ran.
s3prl_validate_inputs "$data"

s3prl_job_array "$nj" "$data" "$logdir/compute_feats.JOB.log" "computing features" \
  "$py" -m s3prl.bin.compute_feats --config "$cfg_copy" --compress "$compress" \
    --write-utt2num-frames true "$data/split$nj/JOB" "$featdir/raw_${feat_type}_${name}.JOB"

tmp=".tmp.$$"
trap 'rm -f "$data/feats.scp$tmp" "$data/utt2num_frames$tmp" "$data/feats_dim$tmp" "$data/frame_shift$tmp" "$data/conf/feats.inputs$tmp" "$data/conf/feats.yaml$tmp"' EXIT
s3prl_job_cat "$nj" "$featdir/raw_${feat_type}_${name}.JOB.scp" > "$data/feats.scp$tmp"
s3prl_job_cat "$nj" "$featdir/raw_${feat_type}_${name}.JOB.utt2num_frames" > "$data/utt2num_frames$tmp"

nutt=$(wc -l < "$data/utt2spk")
nfeat=$(wc -l < "$data/feats.scp$tmp")
if [ "$nfeat" -ne "$nutt" ]; then
  echo "$prog: only $nfeat of $nutt utterances have features; see $logdir" >&2
  exit 1
fi

echo "$feat_dim" > "$data/feats_dim$tmp"
echo "$frame_shift" > "$data/frame_shift$tmp"

mv "$data/feats.scp$tmp" "$data/feats.scp"
mv "$data/utt2num_frames$tmp" "$data/utt2num_frames"
mv "$data/feats_dim$tmp" "$data/feats_dim"
mv "$data/frame_shift$tmp" "$data/frame_shift"

"$py" -m s3prl.bin.compute_cmvn_stats "$data" "$featdir" 2> "$logdir/compute_cmvn_stats.log" 9>&- || {
  echo "$prog: computing CMVN stats failed; see $logdir/compute_cmvn_stats.log" >&2; exit 1; }

if [ -f "$data/text" ]; then
  "$utils_dir/validate_data_dir.sh" "$data" 9>&-
else
  "$utils_dir/validate_data_dir.sh" --no-text "$data" 9>&-
fi

# Last: the record of the inputs, then the config copy that marks the features as complete.
cp "$inputs_copy" "$data/conf/feats.inputs$tmp"
mv "$data/conf/feats.inputs$tmp" "$data/conf/feats.inputs"
cp "$cfg_copy" "$data/conf/feats.yaml$tmp"
mv "$data/conf/feats.yaml$tmp" "$data/conf/feats.yaml"
echo "$prog: succeeded for $data ($nfeat utterances, $feat_type)"
