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

# --config names a YAML file here, so take it before parse_options.sh (which sources --config
# files as shell).
feat_config=
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config)
      [ $# -ge 2 ] || { echo "$prog: option --config requires a value" >&2; exit 1; }
      feat_config=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- ${args[@]+"${args[@]}"}
. "$utils_dir/parse_options.sh"

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi
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
case "$nj" in ''|*[!0-9]*|0) echo "$prog: --nj must be a positive integer, got '$nj'" >&2; exit 1 ;; esac

mkdir -p "$logdir"
# One run per data dir at a time (the kernel drops the lock when the holder dies); the lock file
# names the holder for the refused run.
exec 9>>"$data/.lock"
if ! flock -n 9; then
  echo "$prog: $data: locked by another run ($(cat "$data/.lock" 2>/dev/null || true))" >&2
  exit 1
fi
# Children get `9>&-` below: only this shell holds the lock, so it is free as soon as it dies.
printf 'host=%s pid=%s started=%s compute_feats.sh\n' "$(hostname)" "$$" "$(date '+%Y-%m-%d %H:%M:%S')" > "$data/.lock"
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
if [ -f "$cfg_copy.new" ]; then
  if cmp -s "$cfg_copy.new" "$cfg_copy"; then rm -f "$cfg_copy.new"; else mv "$cfg_copy.new" "$cfg_copy"; fi
fi
if [ "${status:-}" = done ]; then
  rm -f "$inputs_copy.new"
  echo "$prog: skip: $data/feats.scp is complete and made with the same config from the same inputs"
  exit 0
fi
[ "${status:-}" = todo ] || { rm -f "$inputs_copy.new"; exit 1; }  # the verb printed the error
if [ -f "$inputs_copy.new" ]; then
  if cmp -s "$inputs_copy.new" "$inputs_copy"; then rm -f "$inputs_copy.new"
  else rm -rf "$data/split$nj"; mv "$inputs_copy.new" "$inputs_copy"; fi
fi

nspk=$(cut -d' ' -f2 "$data/utt2spk" | LC_ALL=C sort -u | wc -l)
if [ "$nj" -gt "$nspk" ]; then
  echo "$prog: --nj $nj is more than the number of speakers ($nspk) in $data" >&2
  exit 1
fi

mkdir -p "$featdir" "$data/conf"
featdir=$(cd "$featdir" && pwd)
name=$(basename "$(cd "$data" && pwd)")

# The old outputs no longer describe what is being made (the completion mark goes first).
rm -f "$data/conf/feats.yaml" "$data/conf/feats.inputs" "$data/feats.scp" "$data/cmvn.scp" "$data/utt2num_frames"

# The data dir as a whole (utt2spk/spk2utt agreeing, sorted, no duplicates, text if present) is
# checked before any feature is computed, not after the jobs ran.
vopts=(--no-feats)
[ -f "$data/text" ] || vopts+=(--no-text)
"$utils_dir/validate_data_dir.sh" "${vopts[@]}" "$data" 9>&-

"$utils_dir/split_data.sh" "$data" "$nj" 9>&-

# $cmd may carry options ("run.pl --mem 4G"); find run.pl next to this script if not on PATH.
read -r -a cmd_arr <<< "$cmd"
if ! command -v "${cmd_arr[0]}" > /dev/null && [ -x "$utils_dir/${cmd_arr[0]}" ]; then
  cmd_arr[0]="$utils_dir/${cmd_arr[0]}"
fi
"${cmd_arr[@]}" JOB=1:"$nj" "$logdir/compute_feats.JOB.log" \
  "$py" -m s3prl.bin.compute_feats --config "$cfg_copy" --compress "$compress" \
    --write-utt2num-frames true "$data/split$nj/JOB" "$featdir/raw_${feat_type}_${name}.JOB" 9>&-

tmp=".tmp.$$"
trap 'rm -f "$data/feats.scp$tmp" "$data/utt2num_frames$tmp" "$data/feats_dim$tmp" "$data/frame_shift$tmp" "$data/conf/feats.inputs$tmp" "$data/conf/feats.yaml$tmp"' EXIT
for n in $(seq "$nj"); do
  cat "$featdir/raw_${feat_type}_${name}.$n.scp"
done | LC_ALL=C sort > "$data/feats.scp$tmp"
for n in $(seq "$nj"); do
  cat "$featdir/raw_${feat_type}_${name}.$n.utt2num_frames"
done | LC_ALL=C sort > "$data/utt2num_frames$tmp"

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
