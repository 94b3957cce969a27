#!/usr/bin/env bash
# utils/pretrain.sh: pre-train one upstream (python -m s3prl.bin.pretrain) through the job runner,
# on one process, or on --ngpu GPUs of this machine through torchrun (DistributedDataParallel).
#
# Usage: utils/pretrain.sh [options] <data-dir> <exp-dir>
#   --config YAML     pre-training config (egs/<dataset>/conf/<upstream>_<size>.yaml)
#   --cmd CMD         job runner (default run.pl; e.g. "slurm.pl --gpu 1")
#   --ngpu N          0/1: one process; N > 1: torchrun --nproc_per_node N
#   --input KIND      audio (features on the fly, default) | external (the data dir's feats.scp)
#   --override K=V    config override, e.g. optimizer.lr=1e-4 (may be repeated)
# The log is <exp-dir>/log/pretrain.log. A finished run (final checkpoint present) is skipped by the
# verb itself; an interrupted one resumes from its newest checkpoint.
set -euo pipefail

cmd=run.pl
ngpu=0
input=audio
help_message="Usage: $0 [--config YAML] [--cmd run.pl] [--ngpu N] [--input audio|external] [--override K=V]... <data-dir> <exp-dir>"

utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
prog=${0##*/}

# --config names a YAML file and --override may repeat: both are taken before parse_options.sh.
s3prl_yaml_options "config override" "$@"
config=$S3PRL_CONFIG
overrides=(${S3PRL_OVERRIDES[@]+"${S3PRL_OVERRIDES[@]}"})
set -- ${S3PRL_ARGS[@]+"${S3PRL_ARGS[@]}"}
. "$utils_dir/parse_options.sh"
s3prl_check_args 2 $#
data=$1
exp=$2
[ -n "$config" ] || { echo "$prog: --config is required" >&2; exit 1; }
[ -f "$config" ] || { echo "$prog: --config $config: no such file" >&2; exit 1; }
[ -d "$data" ] || { echo "$prog: $data: no such data directory" >&2; exit 1; }
case "$ngpu" in ''|*[!0-9]*) echo "$prog: --ngpu must be a whole number, got '$ngpu'" >&2; exit 1 ;; esac

# One run per exp dir: the verb locks <exp-dir>/.lock itself, but only once the job runner has
# already (re)written the log; s3prl_with_lock (utils/lib.sh) refuses a second run before that.
verb=(-m s3prl.bin.pretrain --config "$config" --input "$input" ${overrides[@]+"${overrides[@]}"} "$data" "$exp")
if [ "$ngpu" -gt 1 ]; then
  # torchrun lives next to the venv's python.
  torchrun=$(dirname "$S3PRL_PYTHON")/torchrun
  [ -x "$torchrun" ] || torchrun=torchrun
  s3prl_with_lock "$exp" $cmd --gpu "$ngpu" "$exp/log/pretrain.log" \
    "$torchrun" --standalone --nproc_per_node "$ngpu" "${verb[@]}"
else
  gpu_opt=()
  [ "$ngpu" -eq 1 ] && gpu_opt=(--gpu 1)
  s3prl_with_lock "$exp" $cmd ${gpu_opt[@]+"${gpu_opt[@]}"} "$exp/log/pretrain.log" "$S3PRL_PYTHON" "${verb[@]}"
fi
