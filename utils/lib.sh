# utils/lib.sh: helpers shared by the utils/*.sh wrappers (sourced, not run).
# Sets S3PRL_ROOT (the repository root, found from this file's real location) and S3PRL_PYTHON
# (the toolkit venv's python when installed, else python3), and puts the repository on PYTHONPATH
# so `python -m s3prl.bin.<verb>` works from any directory.
S3PRL_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export S3PRL_ROOT
if [ -z "${S3PRL_PYTHON:-}" ]; then
  if [ -x "$S3PRL_ROOT/tools/venv/bin/python" ]; then S3PRL_PYTHON="$S3PRL_ROOT/tools/venv/bin/python"
  else S3PRL_PYTHON=python3; fi
fi
export PYTHONPATH="$S3PRL_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export LC_ALL=C

# s3prl_bare_flags "<flag var> ..." args...: Kaldi scripts take some boolean options as bare flags
# (--no-feats). Rewrite each bare flag among the leading options into "--flag true" so that
# parse_options.sh can handle it; the result is in the array S3PRL_ARGS.
s3prl_bare_flags() {
  local flags=" $1 " a
  shift
  S3PRL_ARGS=()
  while [ "$#" -gt 0 ]; do
    a=$1
    case "$a" in
      --) S3PRL_ARGS+=("$@"); return ;;
      --*)
        if [[ "$flags" == *" ${a#--} "* ]] && { [ "$#" -lt 2 ] || { [ "$2" != true ] && [ "$2" != false ]; }; }; then
          S3PRL_ARGS+=("$a" true); shift
        elif [ "$a" = --help ] || [[ "$a" == *=* ]]; then
          S3PRL_ARGS+=("$a"); shift
        else
          S3PRL_ARGS+=("$a"); shift
          if [ "$#" -gt 0 ]; then S3PRL_ARGS+=("$1"); shift; fi
        fi ;;
      *) S3PRL_ARGS+=("$@"); return ;;
    esac
  done
}

# s3prl_yaml_options "OPTION ..." ARGS...: take each --config FILE (into S3PRL_CONFIG) and, where
# OPTION names it, each --override K=V (into the array S3PRL_OVERRIDES as --override K=V pairs) out
# of ARGS before parse_options.sh, which would source a --config file as shell; the other
# arguments are left, in order, in the array S3PRL_ARGS. Only the OPTIONs listed are taken.
s3prl_yaml_options() {
  local take=" $1 "
  shift
  S3PRL_CONFIG=
  S3PRL_OVERRIDES=()
  S3PRL_ARGS=()
  while [ "$#" -gt 0 ]; do
    if [[ "$take" == *" ${1#--} "* ]] && [[ "$1" == --* ]]; then
      [ "$#" -ge 2 ] || { echo "${prog:-${0##*/}}: option $1 requires a value" >&2; exit 1; }
      if [ "$1" = --config ]; then S3PRL_CONFIG=$2; else S3PRL_OVERRIDES+=(--override "$2"); fi
      shift 2
    else
      S3PRL_ARGS+=("$1"); shift
    fi
  done
}

# s3prl_check_args N NARGS: print $help_message and exit 1 unless NARGS (the script's $#, after
# parse_options.sh) is N.
s3prl_check_args() {
  [ "$2" -eq "$1" ] || { echo "$help_message" >&2; exit 1; }
}

# s3prl_prep_verb VERB NARGS USAGE ARGS...: the body of a recipe's local/ data-prep script (Kaldi's
# local/*_data_prep.sh): exec `python -m s3prl.bin.VERB ARGS...`, its --options (each with a value)
# passed through but those given an empty value (left to the verb's default), or print USAGE and
# exit 1 unless ARGS hold exactly NARGS positional arguments.
s3prl_prep_verb() {
  local verb=$1 nargs=$2 usage=$3 n=0 args=()
  shift 3
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --*=*) args+=("$1"); shift ;;
      --*) [ "$#" -ge 2 ] || { echo "$usage" >&2; exit 1; }
           [ -z "$2" ] || args+=("$1" "$2"); shift 2 ;;
      *) args+=("$1"); n=$((n + 1)); shift ;;
    esac
  done
  [ "$n" -eq "$nargs" ] || { echo "$usage" >&2; exit 1; }
  exec "$S3PRL_PYTHON" -m "s3prl.bin.$verb" "${args[@]}"
}

# s3prl_flag_opts "<flag var> ...": the array S3PRL_OPTS of the flags (as s3prl_bare_flags takes
# them) whose variable is true, as bare --flag options for a python verb.
s3prl_flag_opts() {
  local pairs=($1) i
  S3PRL_OPTS=()
  for ((i = 0; i + 1 < ${#pairs[@]}; i += 2)); do
    [ "${!pairs[i + 1]}" != true ] || S3PRL_OPTS+=("--${pairs[i]}")
  done
}

# s3prl_data_dir_verb VERB NARGS "<flag var> ..." ARGS...: the body of the data-dir wrappers
# (split_data.sh, validate_data_dir.sh): bare flags as Kaldi takes them (s3prl_bare_flags), the
# script's options (parse_options.sh, sourced here: the option variables are the script's globals),
# NARGS positional arguments, then exec `python -m s3prl.bin.data_dir VERB --flag... ARGS`.
s3prl_data_dir_verb() {
  local __dv_verb=$1 __dv_nargs=$2 __dv_flags=$3
  shift 3
  s3prl_bare_flags "$__dv_flags" "$@"
  set -- "${S3PRL_ARGS[@]+"${S3PRL_ARGS[@]}"}"
  . "$S3PRL_ROOT/utils/parse_options.sh"
  s3prl_check_args "$__dv_nargs" $#
  s3prl_flag_opts "$__dv_flags"
  exec "$S3PRL_PYTHON" -m s3prl.bin.data_dir "$__dv_verb" "${S3PRL_OPTS[@]+"${S3PRL_OPTS[@]}"}" "$@"
}

# The job array shared by compute_feats.sh and dump_feats.sh (Kaldi's steps/make_fbank.sh
# sequence): s3prl_check_nj, s3prl_lock, s3prl_check_speakers, s3prl_validate_inputs,
# s3prl_job_array (split_data.sh + `$cmd JOB=1:$nj`), then s3prl_job_cat to merge the per-job
# lists. Errors are one line "$prog: ..." on stderr and exit 1; $prog is the calling script's name.

# s3prl_check_nj NJ: exit 1 unless NJ (the --nj option) is a positive integer.
s3prl_check_nj() {
  case "$1" in ''|*[!0-9]*|0) echo "${prog:-${0##*/}}: --nj must be a positive integer, got '$1'" >&2; exit 1 ;; esac
}

# s3prl_lock LOCKFILE LABEL: hold an exclusive flock on LOCKFILE on file descriptor 9 for the rest
# of the script (the kernel drops it when the holder dies, so a killed run leaves no stale lock),
# or exit 1 naming LABEL and the holder written in LOCKFILE. Children must get `9>&-` so that only
# this shell holds the lock.
s3prl_lock() {
  exec 9>>"$1"
  flock -n 9 || s3prl_locked "$1" "$2"
  printf 'host=%s pid=%s started=%s %s\n' "$(hostname)" "$$" "$(date '+%Y-%m-%d %H:%M:%S')" \
    "${prog:-${0##*/}}" > "$1"
}

# s3prl_refuse_if_locked LOCKFILE LABEL: exit 1 naming LABEL and the holder if another process
# holds a flock on LOCKFILE (an existing file; e.g. the <dir>/.lock a verb run holds by itself).
s3prl_refuse_if_locked() {
  if [ -f "$1" ] && ! flock -n "$1" true 9>&-; then s3prl_locked "$1" "$2"; fi
}

# s3prl_locked LOCKFILE LABEL: the refusal of s3prl_lock and s3prl_refuse_if_locked (exit 1).
s3prl_locked() {
  echo "${prog:-${0##*/}}: $2: locked by another run ($(cat "$1" 2>/dev/null || true))" >&2
  exit 1
}

# s3prl_with_lock DIR COMMAND...: run COMMAND holding DIR/log/.run.lock (s3prl_lock), refusing at
# once when another run holds it or a verb run started directly holds DIR/.lock, before COMMAND or
# its job runner touched anything (run.pl truncates its log when it starts); COMMAND runs without
# the lock's file descriptor and its exit status is returned. utils/with_lock.sh is the verb.
s3prl_with_lock() {
  local dir=$1 rc=0
  shift
  mkdir -p "$dir/log"
  s3prl_lock "$dir/log/.run.lock" "$dir"
  s3prl_refuse_if_locked "$dir/.lock" "$dir"
  "$@" 9>&- || rc=$?
  return "$rc"
}

# s3prl_check_speakers NJ DATA: exit 1 if NJ is more than the number of speakers of the data dir
# (Kaldi's split_data.sh splits per speaker and refuses more parts than speakers).
s3prl_check_speakers() {
  local nj=$1 data=$2 nspk
  nspk=$(cut -d' ' -f2 "$data/utt2spk" | LC_ALL=C sort -u | wc -l)
  if [ "$nj" -gt "$nspk" ]; then
    echo "${prog:-${0##*/}}: --nj $nj is more than the number of speakers ($nspk) in $data" >&2
    exit 1
  fi
}

# s3prl_validate_inputs DATA: validate the data dir as a whole before any job runs (features may be
# absent; text and wav.scp are checked when present).
s3prl_validate_inputs() {
  local data=$1 vopts=(--no-feats)
  [ -f "$data/text" ] || vopts+=(--no-text)
  [ -f "$data/wav.scp" ] || vopts+=(--no-wav)
  "$S3PRL_ROOT/utils/validate_data_dir.sh" "${vopts[@]}" "$data" 9>&-
}

# s3prl_job_array NJ DATA LOG WHAT COMMAND...: split DATA into DATA/splitNJ/{1..NJ} (per speaker)
# and run COMMAND as `$cmd JOB=1:NJ LOG COMMAND` (JOB in LOG and COMMAND is the job number); $cmd
# may carry options ("run.pl --mem 4G") and run.pl/slurm.pl are found in utils/ when not on PATH.
# When a job fails: exit 1 with "WHAT failed; see LOG" (JOB shown as *).
s3prl_job_array() {
  local nj=$1 data=$2 log=$3 what=$4 runner
  shift 4
  "$S3PRL_ROOT/utils/split_data.sh" "$data" "$nj" 9>&-
  read -r -a runner <<< "$cmd"
  if ! command -v "${runner[0]}" > /dev/null && [ -x "$S3PRL_ROOT/utils/${runner[0]}" ]; then
    runner[0]="$S3PRL_ROOT/utils/${runner[0]}"
  fi
  "${runner[@]}" JOB=1:"$nj" "$log" "$@" 9>&- || {
    echo "${prog:-${0##*/}}: $what failed; see ${log//JOB/*}" >&2; exit 1; }
}

# s3prl_job_cat NJ PATTERN: the files PATTERN (JOB replaced by 1..NJ) concatenated and sorted (the
# merge of per-job Kaldi lists such as feats.scp).
s3prl_job_cat() {
  local nj=$1 pattern=$2 n
  for n in $(seq "$nj"); do
    cat "${pattern//JOB/$n}"
  done | LC_ALL=C sort
}

# s3prl_replace_if_changed NEW DEST: move NEW onto DEST unless DEST has the same bytes (then NEW is
# removed and DEST keeps its mtime); returns 0 when DEST changed, 1 when not.
s3prl_replace_if_changed() {
  if cmp -s "$1" "$2"; then rm -f "$1"; return 1; fi
  mv "$1" "$2"
}
