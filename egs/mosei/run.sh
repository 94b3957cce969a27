#!/usr/bin/env bash
# CMU-MOSEI recipe: sentiment on spoken content (Mockingjay paper, Table 2: 2-class sentiment with
# the one-layer RNN classifier; also 7-class and regression, and today's mean-pool + linear head),
# on Kaldi fbank or on the representations of an upstream pre-trained elsewhere (e.g. the
# LibriSpeech recipe's exp/tera_tiny), dumped or run on the fly. Results go to RESULTS.md.
#
# Without --corpus-dir it runs on our synthetic MOSEI stand-in (tools/synth/mosei.py: TTS speakers
# whose sentences carry their sentiment in the words), generated reproducibly into downloads/.
# Expected layout of a real corpus (--corpus-dir), as distributed by CMU-MultimodalSDK:
#     <corpus>/Audio/Full/WAV_16000/<video_id>.wav    full-video audio, 16 kHz mono
#         (also accepted: <corpus>/Raw/Audio/Full/WAV_16000, <corpus>/WAV_16000, or --audio-dir)
#     <corpus>/labels.csv (or --label-csv FILE)       header + one row per segment:
#         key,filename,start,end,sentiment            S3PRL's mosei_no_semi.csv columns: segment
#                                                     id, video id, start/end seconds, score in [-3, 3]
# Segments stay inside the videos (a Kaldi `segments` file); only those of 1-20 s with
# |score| >= 0.1 are kept, split by video 90/10 train/test with seed 29, dev = 10 % of the train
# videos (s3prl/data/mosei.py).
#
#   ./run.sh                                              # synthetic corpus, fbank, tiny configs
#   ./run.sh --upstream-ckpts ../librispeech/exp/tera_tiny --label-modes "2class 7class regression"
#   ./run.sh --corpus-dir /data/CMU_MOSEI --downstream-size base --nj 16
#
# Stages: 0 corpus | 1 data dir + splits | 2 features | 3 dump upstreams | 4 sentiment training | 5 results
set -euo pipefail

# Begin configuration section.
stage=0
stop_stage=100
nj=4                       # parallel jobs for features and dumping (clamped to the number of videos)
corpus_dir=                # MOSEI root (empty: the synthetic corpus in downloads/)
label_csv=                 # label table (default <corpus>/labels.csv)
audio_dir=                 # directory of <video>.wav (default: found under the corpus)
synth_preset=default       # synthetic corpus size: tiny | default | large
synth_seed=1
split_seed=29              # video-level split seed (S3PRL: 29)
feat_config=conf/fbank.yaml
upstream_ckpts=""          # upstream checkpoints or exp dirs to evaluate besides fbank
upstream_mode=dump         # dump (stage 3 features) | frozen | weighted_sum | fine_tune (on the fly)
layer=last                 # layer dumped / used: last | N
chunk_context=12           # dump: frames of context per side for long transformer inputs (0 = S3PRL)
heads="rnn meanpool"       # rnn (Mockingjay one-layer RNN) and/or meanpool (mean-pool + linear)
label_modes="2class"       # any of: 2class 7class regression
downstream_size=tiny       # downstream configs: tiny (demo) or base
downstream_overrides=""    # space-separated K=V config overrides for every downstream run
device=auto                # dump device: auto (cuda when available) | cpu | cuda (training picks cuda when available)
# End configuration section.

help_message="Usage: $0 [options]
  --stage N --stop-stage M   run stages N..M (0 corpus, 1 data, 2 feats, 3 dump, 4 train, 5 results)
  --corpus-dir DIR           real CMU-MOSEI (default: synthetic corpus in downloads/)
  --label-csv FILE           label table (default <corpus-dir>/labels.csv)
  --audio-dir DIR            directory of <video>.wav files (default: found under --corpus-dir)
  --synth-preset P           tiny | default | large (synthetic corpus)
  --upstream-ckpts \"LIST\"    upstream checkpoints (or exp dirs) to evaluate besides fbank
  --upstream-mode M          dump | frozen | weighted_sum | fine_tune
  --layer L                  layer to dump / use (last or an index)
  --chunk-context N          dump: frames of context per side for long inputs to transformers (0 = S3PRL)
  --device D                 dump device: auto | cpu | cuda
  --heads \"LIST\"             rnn meanpool
  --label-modes \"LIST\"       2class 7class regression
  --downstream-size S        tiny | base downstream configs
  --downstream-overrides \"K=V ...\"  e.g. \"runner.total_steps=2000\"
  --nj N                     parallel jobs"

caller_pwd=$PWD
cd "$(dirname "$0")"
. utils/recipe.sh "$@"

recipe_corpus "downloads/mosei_synth_${synth_preset}_seed${synth_seed}"
label_csv=$(abspath "$label_csv")
audio_dir=$(abspath "$audio_dir")
ckpts=()
for c in $upstream_ckpts; do ckpts+=("$(abspath "$c")"); done
case "$upstream_mode" in dump|frozen|weighted_sum|fine_tune) ;;
  *) log "error: --upstream-mode '$upstream_mode' is not one of dump frozen weighted_sum fine_tune"; exit 1 ;;
esac
recipe_overrides train_opts "$downstream_overrides"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  recipe_get_corpus CMU-MOSEI \
    python "$S3PRL_ROOT/tools/synth/mosei.py" --preset "$synth_preset" --seed "$synth_seed" --out "$corpus_dir"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: data dir with segments (data/mosei) and video-level splits (data/sentiment)"
  local/data_prep.sh --seed "$split_seed" --label-csv "$label_csv" --audio-dir "$audio_dir" \
    "$corpus_dir" data/mosei data/sentiment
fi

# Stages 2 and 3 split data/mosei by speaker (= video): --nj is at most the number of videos.
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  nj=$(recipe_nj_upto data/mosei)
  recipe_features "Stage 2" mosei
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ] && [ "$upstream_mode" = dump ]; then
  nj=$(recipe_nj_upto data/mosei)
  for c in ${ckpts[@]+"${ckpts[@]}"}; do
    recipe_dump "Stage 3" "$c" "$(recipe_upstream_name "$c")" mosei
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  # input = tag|upstream|source option|source dir|extra option[|on-the-fly option]. A dump names
  # its upstream by the exp dir name (train_downstream checks it against the dump's record);
  # fbank: per-video CMVN. On the fly, long inputs get the dump's chunk context (stage 3).
  ctx=--override=input.chunk_context=$chunk_context
  inputs=("fbank|fbank|--feats|data/mosei|--override=dataloader.cmvn=speaker")
  for c in ${ckpts[@]+"${ckpts[@]}"}; do
    name=$(recipe_upstream_name "$c")
    case "$upstream_mode" in
      dump) # "last" from the checkpoint; an incomplete (killed) or stale dump stops here
            d=$(recipe_layer_dirs "$c" "dump/$name" mosei)/mosei
            inputs+=("${name}_$(basename "$(dirname "$d")")|$name|--feats|$d|--layer=$layer") ;;
      frozen) inputs+=("${name}_$layer|$c|--data|data/mosei|--layer=$layer|$ctx") ;;
      weighted_sum) inputs+=("${name}_ws|$c|--data|data/mosei|--layer=weighted_sum|$ctx") ;;
      fine_tune) inputs+=("${name}_ft|$c|--data|data/mosei|--fine-tune|$ctx") ;;
    esac
  done
  for input in "${inputs[@]}"; do
    IFS='|' read -r tag upstream src_opt src extra otf <<< "$input"
    for head in $heads; do
      for mode in $label_modes; do
        dir=exp/sentiment/${mode}_${head}_${tag}
        log "Stage 4: sentiment $mode, $head head, on $tag -> $dir"
        utils/with_lock.sh "$dir" $cuda_cmd "$dir/log/train.log" python -m s3prl.bin.train_downstream --task sentiment \
          --config "$(recipe_downstream_config "sentiment_$head")" --override "labels.mode=$mode" \
          "$extra" ${otf:+"$otf"} ${train_opts[@]+"${train_opts[@]}"} --labels data/sentiment "$src_opt" "$src" --upstream "$upstream" --results-md RESULTS.md \
          --no-progress "$dir"
      done
    done
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "Stage 5: results"
  python -m s3prl.bin.results_table --table sentiment RESULTS.md
fi
