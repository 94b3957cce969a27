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
#   ./run.sh --corpus-dir /data/LibriSpeech --cpc-dir /data/cpc --pretrain-size base --nj 16
#
# Stages: 0 corpus | 1 data dirs | 2 features | 3 pre-training | 4 dump | 5 phone/speaker
#         | 6 CTC speech recognition | 7 results | 8 hand-off to PyTorch-Kaldi (with --kaldi-exp)
#         | 9 hybrid DNN-HMM recognition (with --hybrid true)
#         | 10 learning curves: probes of kept pre-training checkpoints (with --curve-steps)
#         | 11 generalisation: the upstreams probed on a second corpus (with --eval-corpus-seed or --eval-corpus-dir)
#
#   ./run.sh --curve-steps "500 1000 2000 4000 8000"   # stage 3 keeps those checkpoints, stage 10 probes them
#   ./run.sh --stage 11 --eval-corpus-seed 2           # no re-training: a second synthetic corpus, probes, table
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
dev_set=dev-clean          # ASR dev (best checkpoint) and test sets; "" skips ASR
test_set=test-clean
feat_config=conf/fbank.yaml
pretrain_size=tiny         # pre-training configs: tiny (demo) or base (the papers')
upstreams="mockingjay tera aalbert apc"
ngpu=0                     # >1: pre-training through torchrun on this machine
max_parallel=$(nproc 2>/dev/null || echo 1)  # training runs side by side (one thread each, see path.sh)
layer=last                 # layer to dump and evaluate: last | all | N
chunk_context=12           # dump: transformer inputs longer than sequence_length go through overlapping
                           # windows, each frame with this many frames of context (0 = S3PRL's cuts)
phone_heads="linear"       # any of: linear 1hidden concat
speaker_heads="utterance"  # any of: frame utterance rnn
probe_seeds="1337 2 3"     # stages 5 and 9: one probe / hybrid DNN per seed (runner.seed and dataloader.seed),
                           # exp dirs <...>_seed<N> (1337, the presets' seed: <...>); RESULTS.md: mean +- sd
downstream_size=tiny       # downstream configs: tiny (demo) or base
asr=true                   # stage 6: CTC recognizer for fbank and each upstream
asr_mode=dump              # stage 6 upstream input: dump (stage 4's layer dirs) | weighted_sum | fine_tune (on the fly)
device=auto                # dump device: auto (cuda when available) | cpu | cuda
kaldi_exp=                 # stage 8: exp/ of a Kaldi LibriSpeech s5 system (tri4b alignments, graph; default: stage 9's)
pk_config=conf/pytorch_kaldi.yaml
hybrid=false               # stage 9: hybrid DNN-HMM (monophone GMM alignments, DNN on fbank and each dump, HCLG decoding)
lexicon=                   # stage 9: lexicon.txt (default: the synthetic corpus' own; real LibriSpeech: give the LibriSpeech lexicon)
hybrid_mode=dump           # stage 9 upstream input: dump (stage 4's layer dirs) | weighted_sum | fine_tune (on the fly)
mono_iters=40              # stage 9: monophone EM passes (steps/train_mono.sh)
mono_totgauss=1000         # stage 9: Gaussians after mixing up
curve_steps=""             # stages 3/10: pre-training steps whose checkpoints are kept (runner.keep_steps) and
                           # probed, e.g. "500 1000 2000 4000 8000" (steps past an upstream's total_steps are left
                           # out; APC tiny runs 2000); "" skips stage 10
eval_corpus_seed=""        # stage 11: a second synthetic corpus (--synth-preset) with this seed ("" and no
                           # --eval-corpus-dir skips stage 11)
eval_corpus_dir=""         # stage 11: or a real one holding LibriSpeech/<train-set>
eval_cpc_dir=""            # stage 11: its CPC labels (default: <eval-corpus-dir>/cpc)
pretrain_overrides=""      # space-separated K=V config overrides for every pre-training run
downstream_overrides=""    # space-separated K=V config overrides for every downstream run
# End configuration section.

help_message="Usage: $0 [options]
  --stage N --stop-stage M   run stages N..M (0 corpus, 1 data, 2 feats, 3 pretrain, 4 dump,
                             5 phone/speaker, 6 ASR, 7 results, 8 PyTorch-Kaldi, 9 hybrid,
                             10 learning curves, 11 second corpus)
  --corpus-dir DIR           real LibriSpeech (default: synthetic corpus in downloads/)
  --cpc-dir DIR              CPC phone labels for the real corpus
  --synth-preset P           tiny | default | large (synthetic corpus)
  --pretrain-size S          tiny | base pre-training configs
  --upstreams \"LIST\"         upstreams to pre-train (mockingjay tera aalbert apc)
  --nj N                     parallel jobs
  --ngpu N                   GPUs for pre-training (torchrun when > 1)
  --max-parallel N           pre-training / downstream runs side by side (default: number of CPUs)
  --layer L                  representation layer to dump/evaluate (last, all, or an index)
  --chunk-context N          dump: frames of context per side for long inputs to transformers (0 = S3PRL)
  --device D                 dump device: auto | cpu | cuda
  --phone-heads \"LIST\"       linear 1hidden concat
  --speaker-heads \"LIST\"     frame utterance rnn
  --probe-seeds \"LIST\"       stage 5 and 9 seeds (default \"1337 2 3\"; 1337 alone: one run, the presets' seed)
  --asr true|false           stage 6 (CTC recognizer on $train_set, $dev_set, $test_set)
  --asr-mode M               dump | weighted_sum | fine_tune (upstreams run inside the recognizer)
  --downstream-size S        tiny | base downstream configs
  --kaldi-exp DIR            Kaldi exp/ with tri4b_ali_{clean_100,dev_clean,test_clean}, tri4b/graph_tgsmall (stage 8;
                             without it stage 8 uses stage 9's exp/mono_ali_* and exp/mono/graph when they exist)
  --hybrid true|false        stage 9: hybrid DNN-HMM (GMM alignments, DNN per input, HCLG decoding)
  --lexicon FILE             stage 9 lexicon (default: <corpus>/lexicon.txt of the synthetic corpus)
  --hybrid-mode M            dump | weighted_sum | fine_tune (stage 9: upstreams run inside the DNN)
  --mono-iters N --mono-totgauss N   stage 9 monophone GMM schedule
  --curve-steps \"STEPS\"      stage 3 keeps these checkpoints, stage 10 probes each (PNG + table)
  --eval-corpus-seed N       stage 11: probe the pre-trained upstreams on a synthetic corpus of seed N
  --eval-corpus-dir DIR      stage 11: ... or on a real corpus (DIR/LibriSpeech/<train-set>)
  --eval-cpc-dir DIR         stage 11: CPC labels of --eval-corpus-dir (default DIR/cpc)
  --pretrain-overrides \"K=V ...\"    e.g. \"runner.total_steps=50 optimizer.lr=1e-3\"
  --downstream-overrides \"K=V ...\"  e.g. \"runner.total_steps=100\""

caller_pwd=$PWD
cd "$(dirname "$0")"
. utils/recipe.sh "$@"
. utils/parallel.sh
case "$asr_mode" in dump|weighted_sum|fine_tune) ;;
  *) log "error: --asr-mode '$asr_mode' is not one of dump weighted_sum fine_tune"; exit 1 ;;
esac

recipe_corpus "downloads/synth_${synth_preset}_seed${synth_seed}"
if [ -z "$cpc_dir" ]; then
  cpc_dir=$corpus_dir/cpc
else
  cpc_dir=$(abspath "$cpc_dir")
fi
sets="$train_set"
if $asr || $hybrid; then sets="$sets $dev_set $test_set"; fi
# --nj against the speakers of every set, before any stage writes anything: the corpus subsets
# (one speaker per READER/CHAPTER) when stage 1 will make the data dirs, else the data dirs; the
# synthetic corpus is only known once stage 0 made it, so stage 2 checks again.
if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 2 ]; then  # stages 2 and 4 split the data dirs by speaker
  for x in $sets; do
    if [ "$stage" -le 1 ]; then recipe_check_nj --depth 2 "$corpus_dir/LibriSpeech/$x" "$corpus_dir/$x"
    else recipe_check_nj "data/$x"; fi
  done
fi
recipe_overrides pretrain_args "$pretrain_overrides"
recipe_overrides downstream_args "$downstream_overrides"
# --curve-steps: pre-training keeps those checkpoints (runner.keep_steps; a free key: a finished run
# stays finished, and one that did not keep them is named by stage 10).
recipe_curve_steps
if [ -n "$curve_steps" ]; then pretrain_args+=(--override "runner.keep_steps=[${curve_steps// /,}]"); fi
# --eval-corpus-seed / --eval-corpus-dir: stage 11's corpus and its namespace (data/<tag>, dump/<name>_<tag>).
recipe_eval_corpus "downloads/synth_${synth_preset}_seed"

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  recipe_get_corpus LibriSpeech \
    "$S3PRL_ROOT/tools/make_synthetic_corpus.sh" --preset "$synth_preset" --seed "$synth_seed" "$corpus_dir"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: Kaldi data dirs for: $sets"
  for x in $sets; do
    local/data_prep.sh "$corpus_dir" "$x" "data/$x"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  recipe_features "Stage 2" $sets
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # APC (the longest tiny run: GRUs over 300-frame crops) starts first, the others share the
  # remaining slots, so the stage ends sooner than in the listed order.
  for u in $(for u in $upstreams; do [ "$u" = apc ] && echo "$u"; done; for u in $upstreams; do [ "$u" = apc ] || echo "$u"; done); do
    name=${u}_${pretrain_size}
    log "Stage 3: pre-training $name on data/$train_set -> exp/$name"
    bg_run utils/pretrain.sh --ngpu "$ngpu" --cmd "$cuda_cmd" --config "$(recipe_pretrain_config "$u")" \
      ${pretrain_args[@]+"${pretrain_args[@]}"} \
      "data/$train_set" "exp/$name"
  done
  bg_wait
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  recipe_check_nj_data $sets
  # One upstream per slot (--max-parallel), its sets in turn: the short dev/test dumps are mostly
  # process start-up, which overlaps with another upstream's work. Each dump runs --nj jobs, so up
  # to max-parallel x nj processes hold a model at once (--max-parallel 1: one upstream at a time,
  # e.g. on one small GPU with --device cuda). A failed dump fails the stage before stage 5.
  for u in $upstreams; do
    bg_run recipe_dump "Stage 4" "exp/${u}_${pretrain_size}" "${u}_${pretrain_size}" $sets
  done
  bg_wait
fi

# Stage 5: every phone / speaker head on fbank and each dumped layer, once per --probe-seeds seed.
# Two fbank speaker baselines: "fbank" reads the training split's global CMVN (the speaker preset:
# the speaker's spectral mean kept), "fbank_uttcmvn" per-utterance CMVN, the input the upstreams
# were pre-trained on (the speaker's mean removed).
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  inputs="fbank:data/$train_set"
  for u in $upstreams; do
    dirs=$(recipe_layer_dirs "exp/${u}_${pretrain_size}" "dump/${u}_${pretrain_size}" "$train_set")
    for d in $dirs; do inputs="$inputs ${u}_${pretrain_size}:$d/$train_set"; done
  done
  runs=""   # task:head:input:feats:tag per run (the fbank_uttcmvn tag adds its CMVN override below)
  for input in $inputs; do
    name=${input%%:*}; feats=${input#*:}
    if [ "$name" = fbank ]; then tag=fbank; else tag=${name}_$(basename "$(dirname "$feats")"); fi
    for h in $phone_heads; do runs="$runs phone:$h:$name:$feats:$tag"; done
    for h in $speaker_heads; do runs="$runs speaker:$h:$name:$feats:$tag"; done
    if [ "$name" = fbank ]; then
      for h in $speaker_heads; do runs="$runs speaker:$h:fbank:$feats:fbank_uttcmvn"; done
    fi
  done
  for seed in $probe_seeds; do
    for run in $runs; do
      IFS=: read -r task head name feats tag <<< "$run"
      upstream=exp/$name; extra=()
      if [ "$name" = fbank ]; then upstream=fbank; fi
      if [ "$tag" = fbank_uttcmvn ]; then extra=(--override dataloader.cmvn=utterance --upstream-name fbank_uttcmvn); fi
      recipe_seed_overrides seed_args "$seed"
      dir=exp/downstream/${task}_${head}_${tag}$(recipe_seed_suffix "$seed")
      log "Stage 5: $task classification on $feats ($tag), $head head, seed $seed -> $dir"
      bg_run utils/with_lock.sh "$dir" $cuda_cmd "$dir/log/train.log" python -m s3prl.bin.train_downstream \
        --config "$(recipe_downstream_config "${task}_${head}")" --task "$task" \
        ${downstream_args[@]+"${downstream_args[@]}"} "${seed_args[@]}" ${extra[@]+"${extra[@]}"} \
        --labels "$cpc_dir" --feats "$feats" --upstream "$upstream" --results-md RESULTS.md "$dir"
    done
  done
  bg_wait
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ] && $asr; then
  # input = name:source, source = a dir holding the three sets (fbank: data/, a dump layer dir) or
  # the on-the-fly mode; on the fly the upstream reads data/<set> with the dump's chunk context,
  # and the config's CMVN and deltas apply to its states as they do to dumped ones.
  inputs="fbank:data"
  for u in $upstreams; do
    if [ "$asr_mode" = dump ]; then
      dirs=$(recipe_layer_dirs "exp/${u}_${pretrain_size}" "dump/${u}_${pretrain_size}" "$train_set" "$dev_set" "$test_set")
      for d in $dirs; do inputs="$inputs ${u}_${pretrain_size}:$d"; done
    else
      inputs="$inputs ${u}_${pretrain_size}:$asr_mode"
    fi
  done
  for input in $inputs; do
    name=${input%%:*}; root=${input#*:}
    src=(); upstream=exp/$name
    case "$name:$root" in
      fbank:*) tag=fbank; upstream=fbank ;;
      *:fine_tune) tag=${name}_ft; src=(--fine-tune) ;;
      *:weighted_sum) tag=${name}_ws; src=(--layer weighted_sum) ;;
      *) tag=${name}_$(basename "$root") ;;
    esac
    if [ ${#src[@]} -gt 0 ]; then
      src+=(--on-the-fly --override "input.chunk_context=$chunk_context"); root=data
    fi
    dir=exp/downstream/asr_bilstm_${tag}
    log "Stage 6: CTC recognizer on $root/{$train_set,$dev_set,$test_set} ($upstream) -> $dir"
    bg_run utils/with_lock.sh "$dir" $cuda_cmd "$dir/log/train.log" python -m s3prl.bin.train_downstream --task asr \
      --config "$(recipe_downstream_config asr_bilstm)" ${src[@]+"${src[@]}"} ${downstream_args[@]+"${downstream_args[@]}"} \
      --upstream "$upstream" --train "$root/$train_set" --dev "$root/$dev_set" --test "$root/$test_set" \
      --results-md RESULTS.md "$dir"
  done
  bg_wait
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ]; then
  log "Stage 7: results (RESULTS.md: per-run rows, mean +- sd over --probe-seeds, fingerprints)"
  python -m s3prl.bin.results_table --refresh RESULTS.md
  if $asr; then python -m s3prl.bin.results_table --table asr --refresh RESULTS.md; fi
fi

# Stage 8: the PyTorch-Kaldi hand-off over the first upstream's dump, on the alignments and graph of
# a Kaldi LibriSpeech s5 system (--kaldi-exp: tri4b), or without one on stage 9's own Kaldi-readable
# monophone alignments and graph (exp/mono_ali_<set>/{ali.1.gz,final.mdl}, exp/mono/graph/{HCLG.fst,
# words.txt}) once stage 9 has made them (--hybrid true); PyTorch-Kaldi itself needs a compiled Kaldi.
if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  pk_ali=(); pk_opts=()
  if [ -n "$kaldi_exp" ]; then
    kaldi_exp=$(abspath "$kaldi_exp")
    pk_ali=("$kaldi_exp/tri4b_ali_clean_100" "$kaldi_exp/tri4b_ali_dev_clean" "$kaldi_exp/tri4b_ali_test_clean")
    pk_graph=$kaldi_exp/tri4b/graph_tgsmall
  elif $hybrid && [ -f exp/mono/graph/HCLG.fst ] && [ -f exp/mono_ali_test/final.mdl ]; then
    if [ -z "${KALDI_ROOT:-}" ]; then
      log "Stage 8: skipped: PyTorch-Kaldi on stage 9's alignments needs a compiled Kaldi (export KALDI_ROOT)"
    else
      pk_ali=(exp/mono_ali_train exp/mono_ali_dev exp/mono_ali_test)
      pk_graph=exp/mono/graph
      pk_opts=(--allow-missing)   # utterances the monophone GMM could not align (hybrid_gmm reports them)
    fi
  else
    log "Stage 8: skipped: the PyTorch-Kaldi hand-off needs --kaldi-exp (a Kaldi LibriSpeech s5 exp/ dir) or stage 9's alignments (--hybrid true)"
  fi
  if [ ${#pk_ali[@]} -gt 0 ]; then
    name=$(echo "$upstreams" | awk '{print $1}')_${pretrain_size}
    feats=$(recipe_layer_dirs "exp/$name" "dump/$name" "$train_set" "$dev_set" "$test_set")
    feats=$(echo "$feats" | tail -n 1)
    pk_exp=exp/pytorch_kaldi_${name}_$(basename "$feats")
    log "Stage 8: PyTorch-Kaldi experiment $pk_exp over $feats (alignments ${pk_ali[0]}, graph $pk_graph)"
    python -m s3prl.bin.make_pytorch_kaldi_cfg --config "$pk_config" --check-frames ${pk_opts[@]+"${pk_opts[@]}"} \
      --train-feats "$feats/$train_set" --dev-feats "$feats/$dev_set" --test-feats "$feats/$test_set" \
      --ali-train "${pk_ali[0]}" --ali-dev "${pk_ali[1]}" --ali-test "${pk_ali[2]}" --graph "$pk_graph" \
      "$pk_exp/pytorch_kaldi.cfg"
    utils/run_pytorch_kaldi.sh "$pk_exp/pytorch_kaldi.cfg"
  fi
fi

# Stage 9: hybrid DNN-HMM (mini_librispeech s5's lang/mono/graph/decode shape on kaldi-hmm-gmm,
# utils/recipe.sh recipe_hybrid): data/lang + data/lang_test_tg, MFCC + deltas for the GMM in
# data/mfcc/<set>, exp/mono (+ exp/mono_ali_<set>, exp/mono/graph, decode_{dev,test}), then a
# frame-level DNN on the alignments' pdfs for fbank and each upstream (--hybrid-mode: its dumped
# layers, or on the fly as weighted sum / fine-tuned), exp/hybrid/dnn_<tag>; rows in RESULTS.md's
# hybrid table. Every step skips when complete.
if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ] && $hybrid; then
  [ -n "$dev_set" ] && [ -n "$test_set" ] || { log "error: stage 9 needs --dev-set and --test-set"; exit 1; }
  if [ -z "$lexicon" ]; then
    $synthetic || { log "error: stage 9 on a real corpus needs --lexicon FILE (the LibriSpeech lexicon)"; exit 1; }
    lexicon=$corpus_dir/lexicon.txt
    if [ ! -f "$lexicon" ]; then
      log "Stage 9: writing $lexicon (festival's CMU lexicon for the corpus words)"
      python "$S3PRL_ROOT/tools/synth/lexicon.py" "$corpus_dir"
    fi
  else
    lexicon=$(abspath "$lexicon")
  fi
  hybrid_phones=; [ -f "$cpc_dir/phones.txt" ] && hybrid_phones=$cpc_dir/phones.txt
  hybrid_labels=; $synthetic && hybrid_labels=$cpc_dir
  pairs=(); for u in $upstreams; do pairs+=("${u}_${pretrain_size}=exp/${u}_${pretrain_size}"); done
  recipe_hybrid "Stage 9" "$train_set" "$dev_set" "$test_set" ${pairs[@]+"${pairs[@]}"}
fi

# Stage 10: learning curves of representation quality. Every kept checkpoint of --curve-steps
# (runner.keep_steps of stage 3) is dumped (dump/<upstream>_step<N>) and probed with stage 5's phone
# heads (exp/curves/phone_<head>_<upstream>_step<N>_layer-<k>); the fbank probe of stage 5 is the
# baseline. exp/curves/phone_<head>.{png,json} and RESULTS.md's learning-curves table.
if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 10 ] && [ -n "$curve_steps" ]; then
  recipe_check_nj_data "$train_set"
  recipe_learning_curves "Stage 10" "$cpc_dir" "$train_set" $(for u in $upstreams; do echo "${u}_${pretrain_size}"; done)
fi

# Stage 11: generalisation. The upstreams of stage 3, not re-trained, on a second corpus: its data
# dir data/<tag>/<train-set> and features, the dumps dump/<upstream>_<tag>, stage 5's probes (trained
# on its own train_split) in exp/downstream_<tag>/, and RESULTS.md's second-corpus table beside the
# numbers of stage 5.
if [ "$stage" -le 11 ] && [ "$stop_stage" -ge 11 ] && [ -n "$eval_tag" ]; then
  if [ -n "$eval_corpus_seed" ]; then
    log "Stage 11: second synthetic corpus (preset $synth_preset, seed $eval_corpus_seed) -> $eval_corpus"
    "$S3PRL_ROOT/tools/make_synthetic_corpus.sh" --preset "$synth_preset" --seed "$eval_corpus_seed" "$eval_corpus"
  fi
  [ -d "$eval_corpus/LibriSpeech/$train_set" ] || [ -d "$eval_corpus/$train_set" ] || \
    { log "error: --eval-corpus-dir $eval_corpus: no LibriSpeech/$train_set in it"; exit 1; }
  recipe_check_nj --depth 2 "$eval_corpus/LibriSpeech/$train_set" "$eval_corpus/$train_set"
  log "Stage 11: Kaldi data dir data/$eval_tag/$train_set"
  local/data_prep.sh "$eval_corpus" "$train_set" "data/$eval_tag/$train_set"
  recipe_transfer "Stage 11" "$eval_tag" "$eval_cpc_dir" "$train_set" $(for u in $upstreams; do echo "${u}_${pretrain_size}"; done)
fi
