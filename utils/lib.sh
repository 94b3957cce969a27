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
