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
#   --device DEV      cpu (default) | cuda | auto (cuda when available)
#   --compress BOOL   false (default, exact FM) | true (Kaldi CM, lossy)
#   --chunk-context N transformers: inputs longer than the model's sequence_length are encoded in
#                     overlapping windows giving every frame N frames of context each side
#                     (default 0: non-overlapping chunks, as S3PRL); recorded in upstream.json
#   --dtype DTYPE     float32 (default; reproducible, S3PRL parity) | bfloat16 (bf16 autocast on
#                     CUDA or a CPU with AMX / AVX512-BF16; elsewhere float32 with one warning);
#                     the dtype used is recorded in upstream.json: a bf16 dump is another dump
# The upstream is a checkpoint (ours, today's S3PRL, 2020 S3PRL) or a baseline: fbank, mfcc, mel160.
#
# Layout of <dump-dir> (set = basename of <data-dir>):
#   upstream.json               which upstream made this dump (path, size, mtime, sha256)
#   complete/<set>.json         written last: the set's dump is complete (upstream, sha256 of the
#                               data-dir files read, the layers present, the model's number of states)
#   layer-<k>/<set>/            Kaldi data dir: feats.scp cmvn.scp utt2num_frames feats_dim
#                               frame_shift upstream.json + utt2spk spk2utt text wav.scp ... copied
#   ark/<set>/raw.JOB.layer-<k>.{ark,scp}, cmvn.layer-<k>.{ark,scp}   the matrices
#   log/<set>/extract.JOB.log   per-job logs
# Every layer dir is built under a temporary name, validated and then renamed, so it is complete
# or absent; the set's dump is complete only once complete/<set>.json exists (a run killed between
# layers is redone). A rerun whose record names the same upstream, the same data-dir inputs and
# every requested layer says "skip" and does nothing; edited inputs (wav.scp, segments, utt2spk,
# text, ...) make it dump again; a dump dir made from another upstream is an error naming both.
# Works without path.sh (the toolkit's python is found from this script's location).
set -euo pipefail

nj=4
cmd=run.pl
layer=all
batch_size=8
device=cpu
compress=false
chunk_context=0
dtype=float32
help_message="Usage: $0 [--nj N] [--cmd run.pl] [--layer all|last|N] [--batch-size 8] [--device cpu|cuda|auto] [--compress false] [--chunk-context 0] [--dtype float32|bfloat16] <upstream-ckpt-or-name> <data-dir> <dump-dir>"

utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# The toolkit's python and the repository on PYTHONPATH without path.sh, as compute_feats.sh.
. "$utils_dir/lib.sh"
py=$S3PRL_PYTHON
prog=${0##*/}
. "$utils_dir/parse_options.sh"
s3prl_check_args 3 $#
upstream=$1
data=$2
dump=$3

s3prl_check_nj "$nj"
case "$dtype" in float32|bfloat16) ;; *) echo "$prog: --dtype must be float32 or bfloat16, got '$dtype'" >&2; exit 1 ;; esac
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

# One dump of a set into one dump dir at a time; children get `9>&-`.
s3prl_lock "$dump/.$name.lock" "$dump ($name)"
s3prl_check_speakers "$nj" "$data"

case "$chunk_context" in ''|*[!0-9]*) echo "$prog: --chunk-context must be a non-negative integer, got '$chunk_context'" >&2; exit 1 ;; esac
# The dtype this machine really runs (bfloat16 falls back to float32 without bf16 units), resolved
# once here so that the fallback is noticed once and every job and the record agree. float32 on
# cpu or auto is float32 whatever the machine (s3prl.precision.resolve_dtype), so it starts no
# interpreter (importing torch is most of a small dump's CPU time); cuda is checked there.
case "$dtype:$device" in
  float32:cpu|float32:auto) ;;
  *) dtype=$("$py" -m s3prl.precision --dtype "$dtype" --device "$device" 9>&-) ;;
esac
opts=(--upstream "$upstream" --layer "$layer" --chunk-context "$chunk_context" --dtype "$dtype")
# Children get `9>&-`: only this shell holds the lock, so it is free as soon as this shell dies.
status=$("$py" -m s3prl.bin.extract --mode check "${opts[@]}" "$data" "$dump" 9>&-)
if [ "$status" = complete ]; then
  echo "$prog: skip: $dump/layer-*/$name are complete and made with $upstream from the same inputs"
  exit 0
fi
# Not complete: the set's completion record goes first (merge writes it again, last).
rm -f "$dump/complete/$name.json"

# The data dir as a whole is checked before anything is extracted, not after.
# (feats.scp and wav.scp are checked when present: external-feature upstreams read no audio)
s3prl_validate_inputs "$data" >/dev/null

logdir="$dump/log/$name"
mkdir -p "$logdir" "$dump/ark/$name"
s3prl_job_array "$nj" "$data" "$logdir/extract.JOB.log" extraction \
  "$py" -m s3prl.bin.extract "${opts[@]}" --batch-size "$batch_size" --device "$device" \
    --compress "$compress" "$data/split$nj/JOB" "$dump/ark/$name/raw.JOB"

# Builds, validates and renames each layer dir, then writes the completion record.
"$py" -m s3prl.bin.extract --mode merge --nj "$nj" "${opts[@]}" "$data" "$dump" 9>&-
echo "$prog: succeeded for $data -> $dump/layer-*/$name"
