#!/usr/bin/env bash
# LibriSpeech recipe: self-supervised pre-training (Mockingjay, TERA, Audio ALBERT, APC), dumping
# representations to Kaldi ark/scp, and the standard downstream evaluations (CPC phone and speaker
# classification), results in RESULTS.md.
#
# Without --corpus-dir it runs on our synthetic LibriSpeech stand-in (tools/synth), generated
# reproducibly into downloads/; with --corpus-dir /path/LibriSpeech --cpc-dir /path/cpc_labels the
# same code runs on the real corpus.
#
#   ./run.sh                                   # everything, synthetic corpus, tiny configs
#   ./run.sh --stage 2 --stop-stage 2          # features only
#   ./run.sh --corpus-dir /data/LibriSpeech --cpc-dir /data/cpc --size base --nj 16
#
# Stages: 0 corpus | 1 data dirs | 2 features | 3 pre-training | 4 dump | 5 downstream | 6 results
set -euo pipefail

# Begin configuration section.
stage=0
stop_stage=100
nj=4                       # parallel jobs for features and dumping (at most the number of speakers)
corpus_dir=                # directory holding LibriSpeech/ (empty: the synthetic corpus)
cpc_dir=                   # CPC labels (converted_aligned_phones.txt, train/test_split.txt)
synth_preset=default       # synthetic corpus size: tiny | default | large
synth_seed=1
train_set=train-clean-100
eval_sets=""               # extra subsets to prepare (e.g. "dev-clean test-clean")
feat_config=conf/fbank.yaml
size=tiny                  # pre-training configs: tiny (demo) or base (the papers')
upstreams="mockingjay tera aalbert apc"
ngpu=0                     # >1: pre-training through torchrun on this machine
layer=last                 # layer to dump and evaluate: last | all | N
phone_heads="linear"       # any of: linear 1hidden concat
speaker_heads="utterance"  # any of: frame utterance rnn
downstream_size=tiny       # downstream configs: tiny (demo) or base
device=cpu                 # dump device: cpu | cuda
pretrain_override=""       # space-separated K=V config overrides for every pre-training run
downstream_override=""     # space-separated K=V config overrides for every downstream run
# End configuration section.

help_message="Usage: $0 [options]
  --stage N --stop-stage M   run stages N..M (0 corpus, 1 data, 2 feats, 3 pretrain, 4 dump, 5 downstream, 6 results)
  --corpus-dir DIR           real LibriSpeech (default: synthetic corpus in downloads/)
  --cpc-dir DIR              CPC phone labels for the real corpus
  --synth-preset P           tiny | default | large (synthetic corpus)
  --size S                   tiny | base pre-training configs
  --upstreams \"LIST\"         upstreams to pre-train (mockingjay tera aalbert apc)
  --nj N                     parallel jobs
  --ngpu N                   GPUs for pre-training (torchrun when > 1)
  --layer L                  representation layer to dump/evaluate (last, all, or an index)
  --phone-heads \"LIST\"       linear 1hidden concat
  --speaker-heads \"LIST\"     frame utterance rnn
  --pretrain-override \"K=V ...\"    e.g. \"runner.total_steps=50 optimizer.lr=1e-3\"
  --downstream-override \"K=V ...\"  e.g. \"runner.total_steps=100\""

caller_pwd=$PWD
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then
  echo "$0: unexpected argument: $1" >&2
  echo "$help_message" >&2
  exit 1
fi
. utils/log.sh

abspath() { case "$1" in /*) echo "$1" ;; *) echo "$caller_pwd/$1" ;; esac; }
if [ -z "$corpus_dir" ]; then
  corpus_dir=downloads/synth_${synth_preset}_seed${synth_seed}
  synthetic=true
else
  corpus_dir=$(abspath "$corpus_dir")
  synthetic=false
fi
if [ -z "$cpc_dir" ]; then
  cpc_dir=$corpus_dir/cpc
else
  cpc_dir=$(abspath "$cpc_dir")
fi
sets="$train_set $eval_sets"
pretrain_args=(); for kv in $pretrain_override; do pretrain_args+=(--override "$kv"); done
downstream_args=(); for kv in $downstream_override; do downstream_args+=(--override "$kv"); done

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if $synthetic; then
    log "Stage 0: synthetic LibriSpeech (preset $synth_preset, seed $synth_seed) -> $corpus_dir"
    "$S3PRL_ROOT/tools/make_synthetic_corpus.sh" --preset "$synth_preset" --seed "$synth_seed" "$corpus_dir"
  else
    log "Stage 0: using the LibriSpeech corpus at $corpus_dir"
    [ -d "$corpus_dir" ] || { log "error: --corpus-dir $corpus_dir: no such directory"; exit 1; }
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: Kaldi data dirs for: $sets"
  for x in $sets; do
    python -m s3prl.bin.prepare_librispeech "$corpus_dir" "$x" "data/$x"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: features ($feat_config) with $nj jobs"
  for x in $sets; do
    utils/compute_feats.sh --nj "$nj" --cmd "$train_cmd" --config "$feat_config" \
      "data/$x" "exp/make_feats/$x" "feats/$x"
  done
fi

# conf/<upstream>_<size>.yaml; the base presets keep the papers' names.
pretrain_config() {
  case "$1:$size" in
    aalbert:base) echo conf/aalbert_3l.yaml ;;
    apc:base) echo conf/apc.yaml ;;
    *) echo "conf/$1_$size.yaml" ;;
  esac
}

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  for u in $upstreams; do
    name=${u}_${size}
    log "Stage 3: pre-training $name on data/$train_set -> exp/$name"
    utils/pretrain.sh --ngpu "$ngpu" --cmd "$cuda_cmd" --config "$(pretrain_config "$u")" \
      ${pretrain_args[@]+"${pretrain_args[@]}"} \
      "data/$train_set" "exp/$name"
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for u in $upstreams; do
    name=${u}_${size}
    log "Stage 4: dumping $name representations ($layer) of $train_set -> dump/$name"
    utils/dump_feats.sh --nj "$nj" --cmd "$train_cmd" --layer "$layer" --device "$device" \
      "exp/$name" "data/$train_set" "dump/$name"
  done
fi

# The dumped layer dirs of upstream $1 that stage 5 evaluates (dump/<name>/layer-<k>).
layer_dirs() {
  local all
  all=$(ls -d "dump/$1"/layer-* 2>/dev/null | sort -V)
  case "$layer" in
    all) echo "$all" ;;
    last) echo "$all" | tail -n 1 ;;
    *) echo "dump/$1/layer-$layer" ;;
  esac
}

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  ds_suffix=_$downstream_size; [ "$downstream_size" = base ] && ds_suffix=
  inputs="fbank:data/$train_set"
  for u in $upstreams; do
    for d in $(layer_dirs "${u}_${size}"); do inputs="$inputs ${u}_${size}:$d/$train_set"; done
  done
  for input in $inputs; do
    name=${input%%:*}; feats=${input#*:}
    if [ "$name" = fbank ]; then upstream=fbank; tag=fbank; else upstream=exp/$name; tag=${name}_$(basename "$(dirname "$feats")"); fi
    for task_head in $(for h in $phone_heads; do echo "phone:$h"; done; for h in $speaker_heads; do echo "speaker:$h"; done); do
      task=${task_head%%:*}; head=${task_head#*:}
      dir=exp/downstream/${task}_${head}_${tag}
      log "Stage 5: $task classification on $feats, $head head -> $dir"
      $cuda_cmd "$dir/log/train.log" python -m s3prl.bin.train_downstream \
        --config "conf/downstream/${task}_${head}${ds_suffix}.yaml" --task "$task" \
        ${downstream_args[@]+"${downstream_args[@]}"} \
        --labels "$cpc_dir" --feats "$feats" --upstream "$upstream" --results-md RESULTS.md "$dir"
    done
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "Stage 6: results"
  python -m s3prl.bin.results_table RESULTS.md
fi
