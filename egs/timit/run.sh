#!/usr/bin/env bash
# TIMIT recipe: Kaldi-convention data dirs (SA removed, 50-speaker dev, 24-speaker core test,
# 48 phones), features, an upstream (pre-trained here, or any checkpoint such as one from
# egs/librispeech), representation dumps, and the hybrid DNN/HMM hand-off to PyTorch-Kaldi
# (the TIMIT setup of the 2020 S3PRL papers: Mockingjay, arXiv:1910.12638, and TERA,
# arXiv:2007.06028; Kaldi egs/timit/s5 for the data and the alignments).
#
# The PyTorch-Kaldi stages need a finished Kaldi egs/timit/s5 run for the alignments of train,
# dev and test and the decoding graph (--kaldi-exp), a compiled Kaldi (KALDI_ROOT) and
# tools/install_pytorch_kaldi.sh.
#
#   ./run.sh --corpus-dir /data/TIMIT --stop-stage 3                # data, features, pre-training, dump
#   ./run.sh --corpus-dir /data/TIMIT --upstream-ckpts ../librispeech/exp/tera_base \
#            --kaldi-exp /kaldi/egs/timit/s5/exp --stage 3
#
# Without Kaldi, stage 7 (--hybrid true) builds the hybrid DNN-HMM system of egs/librispeech's
# stage 9 (utils/recipe.sh recipe_hybrid, docs/hybrid.md) on kaldi-hmm-gmm: TIMIT ships no lexicon,
# so, as Kaldi's egs/timit/s5 (local/timit_prepare_dict.sh), local/timit_prepare_dict.sh writes one
# (or take --lexicon FILE): the phones of data/*/text (48, or 39 with prepare_timit --phones 39)
# each as a word, plus "<UNK> SPN"; the LM is a phone bigram as in s5,
# and scoring maps reference and hypothesis to the 39 phones first (--scoring-map, as s5's
# local/score.sh does with timit_norm_trans.pl -from 48 -to 39).
#
#   ./run.sh --corpus-dir /data/TIMIT --hybrid true --stage 7
#
# Stages: 0 data | 1 features | 2 pre-training | 3 dump | 4 alignment check | 5 cfg | 6 PyTorch-Kaldi
#         | 7 hybrid DNN-HMM on kaldi-hmm-gmm (with --hybrid true)
set -euo pipefail

# Begin configuration section.
stage=0
stop_stage=100
nj=4
corpus_dir=                # TIMIT corpus (TIMIT/TRAIN/DR1/FCJF0/SA1.WAV ..., any case)
wav_format=path            # path | sph2pipe | sox   (wav.scp entries)
feat_config=conf/fbank.yaml
upstreams="tera"           # upstreams to pre-train (conf/<upstream>_<pretrain-size>.yaml)
pretrain_size=tiny         # pre-training configs: tiny (demo) or base (the papers')
pretrain_overrides=""      # space-separated K=V config overrides for every pre-training run
upstream_ckpts=""          # upstream checkpoints or exp dirs to use instead (stage 2 skipped)
ngpu=0                     # >1: pre-training through torchrun on this machine
layer=last                 # representation layer handed to PyTorch-Kaldi: last | N
chunk_context=12           # dump: frames of context per side for long transformer inputs (0 = S3PRL)
device=auto                # dump device: auto (cuda when available) | cpu | cuda
kaldi_exp=                 # exp/ of a finished Kaldi egs/timit/s5 run
ali_train=                 # default $kaldi_exp/tri3_ali
ali_dev=                   # default $kaldi_exp/tri3_ali_dev
ali_test=                  # default $kaldi_exp/tri3_ali_test
graph=                     # default $kaldi_exp/tri3/graph
pk_config=conf/pytorch_kaldi.yaml
hybrid=false               # stage 7: hybrid DNN-HMM (monophone GMM alignments, DNN on fbank and each upstream, HCLG decoding)
lexicon=                   # stage 7: phone lexicon ("" = data/local/dict/lexicon.txt: each phone of the text a word)
scoring_map=conf/phones.48-39.map  # stage 7: score on the 39 phones of Lee & Hon (1989) as Kaldi's TIMIT s5 ("" = the text's own)
probe_seeds="1337 2 3"     # stage 7: one DNN per seed (runner.seed, dataloader.seed), folded to mean +- sd
hybrid_mode=dump           # stage 7 upstream input: dump (stage 3's layer dirs) | weighted_sum | fine_tune (on the fly)
mono_iters=40              # stage 7: monophone EM passes (steps/train_mono.sh)
mono_totgauss=1000         # stage 7: Gaussians after mixing up
downstream_size=tiny       # stage 7 DNN config: tiny (demo) or base
downstream_overrides=""    # space-separated K=V config overrides for the stage 7 DNNs
max_parallel=$(nproc 2>/dev/null || echo 1)  # stage 7 DNN runs side by side (one thread each, see path.sh)
# End configuration section.

help_message="Usage: $0 --corpus-dir DIR [options]
  --stage N --stop-stage M   run stages N..M (0 data, 1 feats, 2 pretrain, 3 dump, 4 ali check, 5 cfg, 6 pytorch-kaldi,
                             7 hybrid)
  --corpus-dir DIR           the TIMIT corpus
  --wav-format F             path | sph2pipe | sox
  --upstreams \"LIST\"         upstreams to pre-train (tera; any of mockingjay tera aalbert apc)
  --pretrain-size S          tiny | base pre-training configs
  --upstream-ckpts \"LIST\"    existing upstream checkpoints or exp dirs (skips pre-training)
  --ngpu N                   GPUs for pre-training (torchrun when > 1)
  --pretrain-overrides \"K=V ...\"  e.g. \"runner.total_steps=2000\"
  --device D                 dump device: auto | cpu | cuda
  --layer L                  layer to hand over: last | N
  --chunk-context N          dump: frames of context per side for long inputs to transformers (0 = S3PRL)
  --nj N                     parallel jobs
  --kaldi-exp DIR            Kaldi TIMIT s5 exp/ dir (alignments tri3_ali{,_dev,_test}, graph tri3/graph)
  --ali-train/--ali-dev/--ali-test/--graph DIR   override those dirs one by one
  --pk-config YAML           PyTorch-Kaldi cfg options (default conf/pytorch_kaldi.yaml)
  --hybrid true|false        stage 7: hybrid DNN-HMM without Kaldi (GMM alignments, DNN per input, HCLG decoding)
  --lexicon FILE             stage 7 phone lexicon (default: written to data/local/dict/lexicon.txt, each phone of
                             data/*/text a word ('aa aa'), and '<UNK> SPN', as Kaldi's local/timit_prepare_dict.sh)
  --scoring-map FILE         stage 7: map reference and hypothesis before scoring (recipe-relative, as --pk-config;
                             default conf/phones.48-39.map: 48 -> 39 phones as Kaldi's TIMIT s5; \"\" = the text's own)
  --hybrid-mode M            dump | weighted_sum | fine_tune (stage 7: upstreams run inside the DNN)
  --probe-seeds \"LIST\"       stage 7: one DNN per seed (default \"1337 2 3\"; dirs _seed<N>; RESULTS.md: mean +- sd)
  --mono-iters N --mono-totgauss N   stage 7 monophone GMM schedule
  --downstream-size S        tiny | base stage 7 DNN config
  --downstream-overrides \"K=V ...\"  e.g. \"runner.total_steps=100\"
  --max-parallel N           stage 7 DNN runs side by side"

caller_pwd=$PWD
cd "$(dirname "$0")"
. utils/recipe.sh "$@"
. utils/parallel.sh

corpus_dir=$(abspath "$corpus_dir")
kaldi_exp=$(abspath "$kaldi_exp")
ali_train=$(abspath "${ali_train:-${kaldi_exp:+$kaldi_exp/tri3_ali}}")
ali_dev=$(abspath "${ali_dev:-${kaldi_exp:+$kaldi_exp/tri3_ali_dev}}")
ali_test=$(abspath "${ali_test:-${kaldi_exp:+$kaldi_exp/tri3_ali_test}}")
graph=$(abspath "${graph:-${kaldi_exp:+$kaldi_exp/tri3/graph}}")
sets="train dev test"
# name=upstream pairs: dump/<name> is made from <upstream> (a checkpoint or exp dir); the first
# one goes on to the alignment check and PyTorch-Kaldi (stages 4-6).
upstream_list=()
if [ -n "$upstream_ckpts" ]; then
  for c in $upstream_ckpts; do c=$(abspath "$c"); upstream_list+=("$(recipe_upstream_name "$c")=$c"); done
else
  for u in $upstreams; do upstream_list+=("${u}_${pretrain_size}=exp/${u}_${pretrain_size}"); done
fi
[ ${#upstream_list[@]} -gt 0 ] || { log "error: give --upstreams or --upstream-ckpts"; exit 1; }
name=${upstream_list[0]%%=*}
upstream=${upstream_list[0]#*=}
pk_exp=exp/pytorch_kaldi_${name}_${layer}
recipe_overrides pretrain_args "$pretrain_overrides"
recipe_overrides downstream_args "$downstream_overrides"
if $hybrid && [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  if [ -n "$lexicon" ]; then
    lexicon=$(abspath "$lexicon")
    [ -f "$lexicon" ] || { log "error: --lexicon $lexicon: no such file"; exit 1; }
  fi
  [ -z "$scoring_map" ] || [ -f "$scoring_map" ] || { log "error: --scoring-map $scoring_map: no such file"; exit 1; }
fi

# --nj against the speakers of every set that exists, before any stage writes anything (stage 0
# makes them from the corpus; stages 1 and 3 split them by speaker and check again).
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 1 ]; then
  recipe_check_nj_data $sets
fi

need_kaldi_dirs() {
  for d in "$ali_train" "$ali_dev" "$ali_test" "$graph"; do
    [ -n "$d" ] || { log "error: give --kaldi-exp (or --ali-train/--ali-dev/--ali-test/--graph)"; exit 1; }
  done
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -n "$corpus_dir" ] || { log "error: --corpus-dir is required for stage 0"; exit 1; }
  log "Stage 0: Kaldi data dirs data/{train,dev,test} from $corpus_dir"
  local/timit_data_prep.sh --wav-format "$wav_format" "$corpus_dir" data
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  recipe_features "Stage 1" $sets
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  if [ -n "$upstream_ckpts" ]; then
    log "Stage 2: using the upstreams $upstream_ckpts (no pre-training)"
  else
    for u in $upstreams; do
      log "Stage 2: pre-training ${u}_${pretrain_size} on data/train -> exp/${u}_${pretrain_size}"
      utils/pretrain.sh --ngpu "$ngpu" --cmd "$cuda_cmd" --config "$(recipe_pretrain_config "$u")" \
        ${pretrain_args[@]+"${pretrain_args[@]}"} data/train "exp/${u}_${pretrain_size}"
    done
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  recipe_check_nj_data $sets
  for nu in "${upstream_list[@]}"; do
    recipe_dump "Stage 3" "${nu#*=}" "${nu%%=*}" $sets
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  need_kaldi_dirs
  dump=$(recipe_layer_dirs "$upstream" "dump/$name" $sets)
  log "Stage 4: frame counts of $dump against the Kaldi alignments"
  for x in $sets; do
    ali=ali_$x
    python -m s3prl.bin.check_alignments --rekey-into "exp/ali_$x" "$dump/$x" "${!ali}"
  done
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  need_kaldi_dirs
  dump=$(recipe_layer_dirs "$upstream" "dump/$name" $sets)
  log "Stage 5: PyTorch-Kaldi cfg $pk_exp/pytorch_kaldi.cfg"
  python -m s3prl.bin.make_pytorch_kaldi_cfg --config "$pk_config" \
    --pytorch-kaldi-root "$S3PRL_ROOT/tools/pytorch-kaldi" \
    --train-feats "$dump/train" --dev-feats "$dump/dev" --test-feats "$dump/test" \
    --ali-train exp/ali_train --ali-dev exp/ali_dev --ali-test exp/ali_test --graph "$graph" \
    "$pk_exp/pytorch_kaldi.cfg"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "Stage 6: PyTorch-Kaldi training, forward and decoding in $pk_exp"
  utils/run_pytorch_kaldi.sh "$pk_exp/pytorch_kaldi.cfg"
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ] && $hybrid; then
  if [ -z "$lexicon" ]; then   # TIMIT ships none: each phone of the transcripts a word, as s5 does
    lexicon=data/local/dict/lexicon.txt
    log "Stage 7: $lexicon from the phones of data/{train,dev,test}/text"
    local/timit_prepare_dict.sh "$lexicon" data/train data/dev data/test
  fi
  hybrid_phones=; hybrid_labels=; hybrid_lm_order=2   # the lexicon's phones; no reference timings; phone bigram
  recipe_hybrid "Stage 7" train dev test "${upstream_list[@]}"
fi
