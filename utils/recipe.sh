# utils/recipe.sh: the start every egs/*/run.sh shares, sourced with the script's arguments after
# its configuration section and help message:
#
#     caller_pwd=$PWD
#     cd "$(dirname "$0")"
#     . utils/recipe.sh "$@"
#
# It sources path.sh and cmd.sh, parses the --options (Kaldi's utils/parse_options.sh: every
# option must be a variable of the configuration section), refuses a leftover argument with the
# help message, validates every numeric option and every shared choice (--device, --layer,
# --pretrain-size, --downstream-size, --probe-seeds, --hybrid-mode) the recipe declares before any
# stage runs, and defines `log` (utils/log.sh), `abspath PATH` (PATH as given on the command line,
# made absolute against the caller's directory; "" stays "") and `recipe_check_nj SRC...` (refuses
# --nj above the speaker count of a data dir or corpus subset, before the stage that would split),
# plus the shared vocabulary helpers recipe_overrides, recipe_seed_overrides / recipe_seed_suffix
# (--probe-seeds), recipe_pretrain_config, recipe_downstream_config, recipe_upstream_name,
# recipe_corpus / recipe_get_corpus (stage 0), recipe_nj_upto, recipe_layer_dirs and the hybrid
# DNN-HMM stage recipe_hybrid (below), so that a recipe's stages only loop over sets x upstreams x
# tasks; and the bodies of LibriSpeech's optional stages over its probes (recipe_probe,
# recipe_curve_steps / recipe_learning_curves for --curve-steps, recipe_eval_corpus /
# recipe_transfer for a second corpus).
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if [ $# -ne 0 ]; then
  echo "$0: unexpected argument: $1" >&2
  echo "$help_message" >&2
  exit 1
fi
. utils/log.sh
abspath() { case "$1" in /*|"") echo "$1" ;; *) echo "$caller_pwd/$1" ;; esac; }

# Numeric options, checked here so that a typo (--stage abc, --nj 4x) stops the recipe with exit 1
# and the option named instead of failing every `[ "$stage" -le N ]` test (bash prints "integer
# expression expected" and the `if` is simply false, so nothing runs and the script exits 0).
# NAME:MIN for each option a recipe may declare; options a recipe does not declare are ignored.
recipe_int_options="stage:0 stop_stage:0 nj:1 max_parallel:1 ngpu:0 synth_seed:0 split_seed:0 chunk_context:0
                    mono_iters:1 mono_totgauss:1"
recipe_check_int() {  # recipe_check_int NAME MIN: $NAME must be a whole number >= MIN
  local name=$1 min=$2 value=${!1} opt=--${1//_/-}
  if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$((10#$value))" -lt "$min" ]; then
    echo "$0: $opt must be a whole number >= $min, got '$value'" >&2
    exit 1
  fi
  printf -v "$name" '%d' "$((10#$value))"
}
for __ri in $recipe_int_options; do
  __rn=${__ri%%:*}
  if [ -n "${!__rn+x}" ]; then recipe_check_int "$__rn" "${__ri#*:}"; fi
done
unset __ri __rn
# --layer: last | all | N | N,M,... where the recipe has it (the dump verb resolves N against the model)
if [ -n "${layer+x}" ] && ! [[ "$layer" =~ ^(last|all|-?[0-9]+(,-?[0-9]+)*)$ ]]; then
  echo "$0: --layer must be last, all or a layer number, got '$layer'" >&2
  exit 1
fi
# The options every recipe shares take one set of values: --device (the dump; training picks cuda
# when available), --pretrain-size and --downstream-size (the conf/ presets).
recipe_check_choice() {  # recipe_check_choice NAME VALUE...: $NAME must be one of the VALUEs
  local name=$1 v; shift
  for v in "$@"; do [ "${!name}" = "$v" ] && return 0; done
  echo "$0: --${name//_/-} must be one of: $*, got '${!name}'" >&2
  exit 1
}
if [ -n "${device+x}" ]; then recipe_check_choice device auto cpu cuda; fi
# --probe-seeds: one or more whole numbers, none repeated (each seed is one run, one exp dir).
if [ -n "${probe_seeds+x}" ]; then
  __rs=" "
  for __s in $probe_seeds; do
    if ! [[ "$__s" =~ ^[0-9]+$ ]]; then
      echo "$0: --probe-seeds must be whole numbers, got '$__s' in '$probe_seeds'" >&2; exit 1
    fi
    if [[ "$__rs" == *" $((10#$__s)) "* ]]; then
      echo "$0: --probe-seeds: seed $__s given twice in '$probe_seeds'" >&2; exit 1
    fi
    __rs="$__rs$((10#$__s)) "
  done
  if [ "$__rs" = " " ]; then echo "$0: --probe-seeds: give at least one seed" >&2; exit 1; fi
  probe_seeds=${__rs# }; probe_seeds=${probe_seeds% }
  unset __rs __s
fi
if [ -n "${pretrain_size+x}" ]; then recipe_check_choice pretrain_size tiny base; fi
if [ -n "${downstream_size+x}" ]; then recipe_check_choice downstream_size tiny base; fi
if [ -n "${hybrid_mode+x}" ]; then recipe_check_choice hybrid_mode dump weighted_sum fine_tune; fi

# recipe_overrides ARRAY "K=V ...": ARRAY=(--override K=V ...) from --pretrain-overrides or
# --downstream-overrides (space-separated config overrides, s3prl.config's K=V syntax).
recipe_overrides() {
  local -n __ro=$1
  local kv
  __ro=()
  for kv in $2; do __ro+=(--override "$kv"); done
}

# recipe_seed_overrides ARRAY SEED: ARRAY=(--override runner.seed=SEED --override dataloader.seed=SEED),
# one probe seed: the head's initial weights and the order of its batches (s3prl.train.config).
recipe_seed_overrides() {
  local -n __so=$1
  __so=(--override "runner.seed=$2" --override "dataloader.seed=$2")
}

# recipe_seed_suffix SEED: the exp dir suffix of a probe run of SEED: none for RECIPE_PLAIN_SEED,
# the runner.seed of every downstream preset (conf/downstream/*.yaml) and so the seed of every run
# made before --probe-seeds existed, else _seed<SEED>. A dir name is a function of the seed alone:
# a run is never asked to hold another seed's run, and going from --probe-seeds 1337 to
# "1337 2 3" trains only seeds 2 and 3.
RECIPE_PLAIN_SEED=1337
recipe_seed_suffix() {
  if [ "$1" != "$RECIPE_PLAIN_SEED" ]; then echo "_seed$1"; fi
}

# recipe_pretrain_config UPSTREAM: the pre-training preset conf/<upstream>_<pretrain-size>.yaml.
recipe_pretrain_config() {
  echo "conf/$1_$pretrain_size.yaml"
}

# recipe_downstream_config NAME: the downstream preset conf/downstream/NAME_tiny.yaml, or for
# --downstream-size base conf/downstream/NAME.yaml (the papers' setting).
recipe_downstream_config() {
  if [ "$downstream_size" = base ]; then echo "conf/downstream/$1.yaml"; else echo "conf/downstream/$1_$downstream_size.yaml"; fi
}

# recipe_upstream_name CKPT: a short, unique name for an upstream given as a checkpoint or exp dir:
# <exp dir name> for an exp dir, <exp dir>_<ckpt stem> for a file.
recipe_upstream_name() {
  if [ -d "$1" ]; then basename "$1"; else echo "$(basename "$(dirname "$1")")_$(basename "${1%.*}")"; fi
}

# recipe_check_nj [--depth D] SRC...: exit 1 if --nj is more than the number of speakers of any
# SRC: a Kaldi data dir (the speakers of its utt2spk) or, before the data dirs exist, a corpus
# directory whose speakers are its subdirectories D levels down (LibriSpeech: D=2, one speaker
# per READER/CHAPTER, as prepare_librispeech makes them). A SRC that does not exist (yet) is
# skipped. Kaldi's split_data.sh refuses to split a data dir into more parts than speakers;
# checking every set up front stops the recipe before anything is written, not halfway.
recipe_check_nj() {
  local depth=1 src n
  if [ "${1:-}" = --depth ]; then depth=$2; shift 2; fi
  for src in "$@"; do
    if [ -f "$src/utt2spk" ]; then
      n=$(cut -d' ' -f2 "$src/utt2spk" | LC_ALL=C sort -u | wc -l)
    elif [ -d "$src" ]; then
      n=$(find "$src" -mindepth "$depth" -maxdepth "$depth" -type d | wc -l)
    else
      continue
    fi
    if [ "$nj" -gt "$n" ]; then
      echo "$0: --nj $nj is more than the number of speakers ($n) in $src" >&2
      exit 1
    fi
  done
}

# recipe_check_nj_data SET...: recipe_check_nj on data/SET for every SET (all of them before the
# stage that splits the first).
recipe_check_nj_data() {
  local x
  for x in "$@"; do recipe_check_nj "data/$x"; done
}

# recipe_nj_upto DATA: the smaller of --nj and the number of speakers of the data dir DATA, for a
# corpus whose "speakers" may be fewer than a sensible --nj (MOSEI: one per video).
recipe_nj_upto() {
  local n
  n=$(cut -d' ' -f2 "$1/utt2spk" | LC_ALL=C sort -u | wc -l)
  echo $(( nj < n ? nj : n ))
}

# recipe_corpus SYNTH_DIR: --corpus-dir made absolute (synthetic=false), or when it is empty the
# synthetic stand-in SYNTH_DIR that stage 0 generates (synthetic=true).
recipe_corpus() {
  if [ -z "$corpus_dir" ]; then
    corpus_dir=$1
    synthetic=true
  else
    corpus_dir=$(abspath "$corpus_dir")
    synthetic=false
  fi
}

# recipe_get_corpus NAME GENERATOR...: stage 0 of a recipe with a synthetic stand-in: GENERATOR
# makes it in $corpus_dir (--synth-preset, --synth-seed), or the real corpus NAME given by
# --corpus-dir must exist.
recipe_get_corpus() {
  local name=$1
  shift
  if $synthetic; then
    log "Stage 0: synthetic $name (preset $synth_preset, seed $synth_seed) -> $corpus_dir"
    "$@"
  else
    log "Stage 0: using the $name corpus at $corpus_dir"
    [ -d "$corpus_dir" ] || { log "error: --corpus-dir $corpus_dir: no such directory"; exit 1; }
  fi
}

# recipe_layer_dirs UPSTREAM DUMP SET...: the layer dirs DUMP/layer-<k> of the dump that --layer
# names, "last" resolved from the checkpoint or exp dir UPSTREAM (never from the layer dirs that
# happen to exist); exits 1 naming the set if the dump of any SET is incomplete (stage killed
# between layers), stale or lacks a layer. Call it as dirs=$(recipe_layer_dirs ...) so that
# set -e stops the recipe.
recipe_layer_dirs() {
  local upstream=$1 dump=$2
  shift 2
  python -m s3prl.bin.extract --mode layers --upstream "$upstream" --layer "$layer" "$dump" "$@"
}

# recipe_features LABEL SET...: the features stage: --nj checked against every data/SET first, then
# utils/compute_feats.sh (--feat-config, $train_cmd) on each; LABEL ("Stage 2") starts the log line.
recipe_features() {
  local label=$1 x
  shift
  recipe_check_nj_data "$@"
  log "$label: features ($feat_config) with $nj jobs"
  for x in "$@"; do
    utils/compute_feats.sh --nj "$nj" --cmd "$train_cmd" --config "$feat_config" \
      "data/$x" "exp/make_feats/$x" "feats/$x"
  done
}

# recipe_dump LABEL UPSTREAM NAME SET...: the dump stage for one upstream (a checkpoint or exp
# dir): its representations of every data/SET (--layer, --device, --chunk-context) in dump/NAME.
recipe_dump() {
  local label=$1 upstream=$2 name=$3 x
  shift 3
  for x in "$@"; do
    log "$label: dumping $name representations ($layer) of $x -> dump/$name"
    utils/dump_feats.sh --nj "$nj" --cmd "$train_cmd" --layer "$layer" --device "$device" \
      --chunk-context "$chunk_context" "$upstream" "data/$x" "dump/$name" || return 1
  done
}

# recipe_hybrid LABEL TRAIN DEV TEST [NAME=UPSTREAM ...]: the hybrid DNN-HMM stage (docs/hybrid.md),
# in the shape of kaldi-asr/kaldi egs/mini_librispeech/s5 (prepare_lang, format_lm, make_mfcc,
# train_mono, align_si, mkgraph, decode) on kaldi-hmm-gmm, for the sets data/TRAIN, data/DEV,
# data/TEST:
#   data/lang, data/lang_test_tg   from $lexicon and TRAIN's text (hybrid_lang: $hybrid_phones, a
#                                  phone list whose phones all get HMMs, "" = the lexicon's;
#                                  ${hybrid_lm_order:-3}-gram LM, lm.arpa kept)
#   data/mfcc/<set>                the sets copied without features (utils/copy_data_dir.sh
#                                  --no-feats), MFCC + deltas (conf/mfcc.yaml)
#   exp/mono, exp/mono_ali_{train,dev,test}, exp/mono/graph   (hybrid_gmm: --mono-iters,
#                                  --mono-totgauss; $hybrid_labels: a CPC label dir for the frame
#                                  agreement of the alignments, "" = none; $scoring_map: a token
#                                  map applied before scoring, e.g. TIMIT's 48 -> 39 phones)
#   exp/hybrid/dnn_<tag>[_seed<N>] the DNN (train_downstream --task hybrid) on fbank (data/<set>)
#                                  and, for each NAME=UPSTREAM (a checkpoint or exp dir), with
#                                  $hybrid_mode dump: each layer dir of dump/NAME (--layer); with
#                                  weighted_sum / fine_tune: UPSTREAM on the fly on data/<set>
#                                  (--chunk-context), tags NAME_ws / NAME_ft; once per seed of
#                                  $probe_seeds (default: the presets' 1337 alone), dir names as stage
#                                  5's probes (recipe_seed_suffix), folded to mean +- sd in RESULTS.md
# The DNNs run side by side ($max_parallel, utils/parallel.sh must be sourced); rows go to
# RESULTS.md's hybrid table. Every step skips when its output is complete.
recipe_hybrid() {
  local label=$1 train=$2 dev=$3 test=$4 x nu name upstream root mode tag dir dirs seed
  shift 4
  local opts=() src=() inputs=() seed_args=()
  [ -f "$lexicon" ] || { log "error: --lexicon $lexicon: no such file"; exit 1; }
  if [ -n "${hybrid_phones:-}" ]; then opts=(--phones "$hybrid_phones"); fi
  log "$label: lang dirs data/lang, data/lang_test_tg from $lexicon"
  python -m s3prl.bin.hybrid_lang --lexicon "$lexicon" --text "data/$train/text" --lm-order "${hybrid_lm_order:-3}" \
    ${opts[@]+"${opts[@]}"} data/lang data/lang_test_tg
  for x in "$train" "$dev" "$test"; do
    utils/copy_data_dir.sh --no-feats "data/$x" "data/mfcc/$x"
    utils/compute_feats.sh --nj "$nj" --cmd "$train_cmd" --config conf/mfcc.yaml \
      "data/mfcc/$x" "exp/make_mfcc/$x" "mfcc/$x"
  done
  local smap=()
  if [ -n "${scoring_map:-}" ]; then smap=(--scoring-map "$scoring_map"); fi
  opts=()
  if [ -n "${hybrid_labels:-}" ]; then opts=(--labels "$hybrid_labels"); fi
  log "$label: monophone GMM -> exp/mono (alignments exp/mono_ali_*, graph, GMM decoding)"
  python -m s3prl.bin.hybrid_gmm --lang data/lang --lang-test data/lang_test_tg ${opts[@]+"${opts[@]}"} ${smap[@]+"${smap[@]}"} \
    --train "data/mfcc/$train" --dev "data/mfcc/$dev" --test "data/mfcc/$test" \
    --num-iters "$mono_iters" --totgauss "$mono_totgauss" --nj "$nj" --results-md RESULTS.md exp/mono
  inputs=("fbank|fbank|data|dump")   # NAME|UPSTREAM|ROOT|MODE; ROOT holds the three sets
  for nu in "$@"; do
    name=${nu%%=*}; upstream=${nu#*=}
    if [ "$hybrid_mode" = dump ]; then
      dirs=$(recipe_layer_dirs "$upstream" "dump/$name" "$train" "$dev" "$test")
      while read -r root; do inputs+=("$name|$upstream|$root|dump"); done <<< "$dirs"
    else
      inputs+=("$name|$upstream|data|$hybrid_mode")
    fi
  done
  for seed in ${probe_seeds:-$RECIPE_PLAIN_SEED}; do
    for x in "${inputs[@]}"; do
      IFS='|' read -r name upstream root mode <<< "$x"
      case "$mode" in
        fine_tune) tag=${name}_ft; src=(--on-the-fly --fine-tune --override "input.chunk_context=$chunk_context") ;;
        weighted_sum) tag=${name}_ws; src=(--on-the-fly --layer weighted_sum --override "input.chunk_context=$chunk_context") ;;
        *) src=(); if [ "$name" = fbank ]; then tag=fbank; else tag=${name}_$(basename "$root"); fi ;;
      esac
      dir=exp/hybrid/dnn_${tag}$(recipe_seed_suffix "$seed")
      recipe_seed_overrides seed_args "$seed"
      log "$label: hybrid DNN on $root/{$train,$dev,$test} ($upstream, $mode), seed $seed -> $dir"
      bg_run utils/with_lock.sh "$dir" $cuda_cmd "$dir/log/train.log" python -m s3prl.bin.train_downstream --task hybrid \
        --config "$(recipe_downstream_config hybrid_1hidden)" ${src[@]+"${src[@]}"} \
        ${downstream_args[@]+"${downstream_args[@]}"} "${seed_args[@]}" --upstream "$upstream" \
        --train "$root/$train" --dev "$root/$dev" --test "$root/$test" \
        --ali-train exp/mono_ali_train --ali-dev exp/mono_ali_dev --ali-test exp/mono_ali_test --graph exp/mono/graph \
        ${smap[@]+"${smap[@]}"} \
        --no-progress --results-md RESULTS.md "$dir"
    done
  done
  bg_wait
}

# recipe_probe LABEL TASK HEAD LABELS FEATS UPSTREAM DIR: one phone / speaker probe as stage 5 runs
# it (the TASK_HEAD downstream preset, --downstream-overrides, utils/with_lock.sh, $cuda_cmd), in the
# background (utils/parallel.sh bg_run; bg_wait after the last), into DIR. It writes no RESULTS.md
# row: the stage that calls it builds its own table from DIR/results.json.
recipe_probe() {
  local label=$1 task=$2 head=$3 labels=$4 feats=$5 upstream=$6 dir=$7
  log "$label: $task classification on $feats, $head head -> $dir"
  bg_run utils/with_lock.sh "$dir" $cuda_cmd "$dir/log/train.log" python -m s3prl.bin.train_downstream \
    --config "$(recipe_downstream_config "${task}_${head}")" --task "$task" \
    ${downstream_args[@]+"${downstream_args[@]}"} \
    --labels "$labels" --feats "$feats" --upstream "$upstream" --results-md "" "$dir"
}

# recipe_curve_steps: --curve-steps checked (whole numbers >= 1, space or comma separated) before any
# stage runs, and normalised to one space between steps.
recipe_curve_steps() {
  local s out=""
  for s in ${curve_steps//,/ }; do
    if ! [[ "$s" =~ ^[0-9]+$ ]] || [ "$((10#$s))" -lt 1 ]; then
      echo "$0: --curve-steps must be pre-training steps (whole numbers >= 1), got '$s'" >&2
      exit 1
    fi
    out="$out $((10#$s))"
  done
  curve_steps=${out# }
}

# recipe_learning_curves LABEL LABELS SET NAME...: the learning-curves stage. For each pre-training
# run exp/NAME, its checkpoints at --curve-steps up to its total_steps (all runs checked first: a
# step it did not keep stops the stage, naming the file) are dumped on data/SET into
# dump/NAME_step<N> and probed with each --phone-heads head (exp/curves/phone_<head>_NAME_step<N>_
# layer-<k>); the fbank probe is stage 5's (exp/downstream/phone_<head>_fbank, done there or here).
# Then exp/curves/phone_<head>.png/.json and RESULTS.md's learning-curves table
# (python -m s3prl.bin.learning_curve).
recipe_learning_curves() {
  local label=$1 labels=$2 set=$3 name line d step ckpt dirs l head dir out
  local -a exps=() plan=() runs
  shift 3
  for name in "$@"; do exps+=("exp/$name"); done
  out=$(python -m s3prl.bin.learning_curve checkpoints --steps "$curve_steps" "${exps[@]}")
  if [ -z "$out" ]; then
    log "$label: no --curve-steps step ($curve_steps) is within the pre-training runs of $*"
    return 0
  fi
  mapfile -t plan <<< "$out"
  for line in "${plan[@]}"; do
    IFS=$'\t' read -r d step ckpt <<< "$line"
    recipe_dump "$label" "$ckpt" "$(basename "$d")_step$step" "$set"
  done
  for head in $phone_heads; do
    runs=()
    recipe_probe "$label" phone "$head" "$labels" "data/$set" fbank "exp/downstream/phone_${head}_fbank"
    for line in "${plan[@]}"; do
      IFS=$'\t' read -r d step ckpt <<< "$line"
      name=$(basename "$d")
      dirs=$(recipe_layer_dirs "$ckpt" "dump/${name}_step$step" "$set")
      for l in $dirs; do
        dir=exp/curves/phone_${head}_${name}_step${step}_$(basename "$l")
        recipe_probe "$label" phone "$head" "$labels" "$l/$set" "$ckpt" "$dir"
        runs+=(--run "$name:$step:$dir")
      done
    done
    bg_wait
    log "$label: learning curve exp/curves/phone_$head.png"
    python -m s3prl.bin.learning_curve report "${runs[@]}" --fbank "exp/downstream/phone_${head}_fbank" \
      --results-md RESULTS.md "exp/curves/phone_$head"
  done
}

# recipe_eval_corpus SYNTH_PREFIX: stage 11's corpus from --eval-corpus-seed N (the synthetic corpus
# SYNTH_PREFIX<N> that stage 11 generates with --synth-preset) or --eval-corpus-dir (made absolute), its
# labels eval_cpc_dir (default <corpus>/cpc) and its namespace eval_tag (eval_<corpus dir name>:
# data/<tag>/, feats/<tag>/, dump/<upstream>_<tag>/, exp/downstream_<tag>/); eval_tag is empty when
# neither is given. Checked before any stage runs.
recipe_eval_corpus() {
  eval_tag=
  eval_corpus=
  if [ -n "$eval_corpus_seed" ] && [ -n "$eval_corpus_dir" ]; then
    echo "$0: give --eval-corpus-seed or --eval-corpus-dir, not both" >&2
    exit 1
  fi
  if [ -n "$eval_corpus_seed" ]; then
    recipe_check_int eval_corpus_seed 0
    if $synthetic && [ "$eval_corpus_seed" -eq "$synth_seed" ]; then
      echo "$0: --eval-corpus-seed $eval_corpus_seed is the pre-training corpus' --synth-seed; give another seed" >&2
      exit 1
    fi
    eval_corpus=$1$eval_corpus_seed
  elif [ -n "$eval_corpus_dir" ]; then
    eval_corpus=$(abspath "$eval_corpus_dir")
    eval_corpus=${eval_corpus%/}
  else
    return 0
  fi
  eval_tag=eval_$(basename "$eval_corpus")
  if [ -z "$eval_cpc_dir" ]; then eval_cpc_dir=$eval_corpus/cpc; else eval_cpc_dir=$(abspath "$eval_cpc_dir"); fi
}

# recipe_transfer LABEL TAG LABELS SET NAME...: the second-corpus stage once data/TAG/SET exists:
# its features, the dumps of every pre-trained exp/NAME on it (dump/NAME_TAG), stage 5's probes
# (--phone-heads, --speaker-heads with LABELS) on fbank and on each dump in exp/downstream_TAG/, and
# RESULTS.md's second-corpus table beside stage 5's probes of the same names
# (python -m s3prl.bin.transfer_table).
recipe_transfer() {
  local label=$1 tag=$2 labels=$3 set=$4 name d inputs input feats upstream itag task_head task head dir
  local -a exps=()
  shift 4
  recipe_features "$label" "$tag/$set"
  for name in "$@"; do
    recipe_dump "$label" "exp/$name" "${name}_$tag" "$tag/$set"
  done
  inputs="fbank:data/$tag/$set"
  for name in "$@"; do
    for d in $(recipe_layer_dirs "exp/$name" "dump/${name}_$tag" "$set"); do inputs="$inputs $name:$d/$set"; done
  done
  for input in $inputs; do
    name=${input%%:*}; feats=${input#*:}
    if [ "$name" = fbank ]; then upstream=fbank; itag=fbank; else upstream=exp/$name; itag=${name}_$(basename "$(dirname "$feats")"); fi
    for task_head in $(for h in $phone_heads; do echo "phone:$h"; done; for h in $speaker_heads; do echo "speaker:$h"; done); do
      task=${task_head%%:*}; head=${task_head#*:}
      dir=exp/downstream_$tag/${task}_${head}_${itag}
      recipe_probe "$label" "$task" "$head" "$labels" "$feats" "$upstream" "$dir"
      exps+=(--exp "$dir")
    done
  done
  bg_wait
  log "$label: second-corpus table ($tag) in RESULTS.md"
  python -m s3prl.bin.transfer_table --corpus "$tag" --ref-root exp/downstream "${exps[@]}" --results-md RESULTS.md
}
