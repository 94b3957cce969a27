#!/usr/bin/env bash
# utils/dump_feats.sh: dump an upstream's hidden states of a Kaldi data dir as new Kaldi data dirs,
# one per layer, over nj parallel jobs (the make_fbank.sh of representations).
#
# Usage: utils/dump_feats.sh [options] <upstream-ckpt-or-name> <data-dir> <dump-dir>
#   e.g. utils/dump_feats.sh --nj 4 exp/tera_tiny/states-1000.ckpt data/train dump/tera_tiny
#        -> dump/tera_tiny/layer-0/train ... dump/tera_tiny/layer-<L>/train
#   --nj N            parallel jobs (default 4); must not exceed the number of speakers
#   --cmd CMD         job runner (default run.pl)
#   --layer SPEC      all (default) | last | N | N,M,...   (0 = the input block, L = last layer)
#   --batch-size B    utterances per forward pass (default 8; length-sorted, little padding)
#   --device DEV      cpu (default) | cuda
#   --compress BOOL   false (default, exact FM) | true (Kaldi CM, lossy)
#   --chunk-context N transformers: inputs longer than the model's sequence_length are encoded in
#                     overlapping windows giving every frame N frames of context each side
#                     (default 0: non-overlapping chunks, as S3PRL); recorded in upstream.json
# The upstream is a checkpoint (ours, today's S3PRL, 2020 S3PRL) or a baseline: fbank, mfcc, mel160.
#
# Layout of <dump-dir> (set = basename of <data-dir>):
#   upstream.json               which upstream made this dump (path, size, mtime, sha256)
#   layer-<k>/<set>/            Kaldi data dir: feats.scp cmvn.scp utt2num_frames feats_dim
#                               frame_shift upstream.json + utt2spk spk2utt text wav.scp ... copied
#   ark/<set>/raw.JOB.layer-<k>.{ark,scp}, cmvn.layer-<k>.{ark,scp}   the matrices
#   log/<set>/extract.JOB.log   per-job logs
# Every layer dir is built under a temporary name, validated and then renamed, so it is complete
# or absent. A rerun whose layer dirs are complete (same upstream) says "skip" and does nothing; a
# dump dir made from another upstream is an error naming both.
set -euo pipefail

nj=4
cmd=run.pl
layer=all
batch_size=8
device=cpu
compress=false
chunk_context=0
help_message="Usage: $0 [--nj N] [--cmd run.pl] [--layer all|last|N] [--batch-size 8] [--device cpu|cuda] [--compress false] [--chunk-context 0] <upstream-ckpt-or-name> <data-dir> <dump-dir>"

utils_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=${0##*/}
. "$utils_dir/parse_options.sh"

if [ $# -ne 3 ]; then
  echo "$help_message" >&2
  exit 1
fi
upstream=$1
data=$2
dump=$3

case "$nj" in ''|*[!0-9]*|0) echo "$prog: --nj must be a positive integer, got '$nj'" >&2; exit 1 ;; esac
[ -d "$data" ] || { echo "$prog: $data: no such data directory" >&2; exit 1; }
[ -s "$data/utt2spk" ] || { echo "$prog: $data/utt2spk: missing or empty (empty data directory?)" >&2; exit 1; }
# A checkpoint path is made absolute (jobs run elsewhere); a baseline name stays as it is.
if [ -e "$upstream" ]; then
  upstream=$(cd "$(dirname "$upstream")" && pwd)/$(basename "$upstream")
fi
data=$(cd "$data" && pwd)
mkdir -p "$dump"
dump=$(cd "$dump" && pwd)
name=$(basename "$data")

# One dump of a set into one dump dir at a time (the kernel drops the lock when the holder dies).
lockfile="$dump/.$name.lock"
exec 9>>"$lockfile"
if ! flock -n 9; then
  echo "$prog: $dump ($name): locked by another run ($(cat "$lockfile" 2>/dev/null || true))" >&2
  exit 1
fi
printf 'host=%s pid=%s started=%s dump_feats.sh\n' "$(hostname)" "$$" "$(date '+%Y-%m-%d %H:%M:%S')" > "$lockfile"

nspk=$(cut -d' ' -f2 "$data/utt2spk" | LC_ALL=C sort -u | wc -l)
if [ "$nj" -gt "$nspk" ]; then
  echo "$prog: --nj $nj is more than the number of speakers ($nspk) in $data" >&2
  exit 1
fi

case "$chunk_context" in ''|*[!0-9]*) echo "$prog: --chunk-context must be a non-negative integer, got '$chunk_context'" >&2; exit 1 ;; esac
opts=(--upstream "$upstream" --layer "$layer" --chunk-context "$chunk_context")
# Children get `9>&-`: only this shell holds the lock, so it is free as soon as this shell dies.
status=$(python -m s3prl.bin.extract --mode check "${opts[@]}" "$data" "$dump" 9>&-)
if [ "$status" = complete ]; then
  echo "$prog: skip: $dump/layer-*/$name are complete and made with $upstream"
  exit 0
fi

"$utils_dir/split_data.sh" "$data" "$nj" 9>&-

logdir="$dump/log/$name"
mkdir -p "$logdir" "$dump/ark/$name"
$cmd JOB=1:"$nj" "$logdir/extract.JOB.log" \
  python -m s3prl.bin.extract "${opts[@]}" --batch-size "$batch_size" --device "$device" \
    --compress "$compress" "$data/split$nj/JOB" "$dump/ark/$name/raw.JOB" 9>&- || {
  echo "$prog: extraction failed; see $logdir/extract.*.log" >&2; exit 1; }

python -m s3prl.bin.extract --mode merge --nj "$nj" "${opts[@]}" "$data" "$dump" 9>&-

for d in "$dump"/layer-*/"$name"; do
  [ -f "$d/feats.scp" ] || continue
  vopts=()
  [ -f "$d/text" ] || vopts+=(--no-text)
  [ -f "$d/wav.scp" ] || vopts+=(--no-wav)
  "$utils_dir/validate_data_dir.sh" ${vopts[@]+"${vopts[@]}"} "$d" >/dev/null 9>&-
done
echo "$prog: succeeded for $data -> $dump/layer-*/$name"
