#!/usr/bin/env bash
# Build the synthetic LibriSpeech stand-in (tools/synth/librispeech.py) at OUT.
# Usage: tools/make_synthetic_corpus.sh [--preset tiny|default|large] [--seed N] [--jobs N] OUT
# A complete OUT with the same preset and seed is left alone.
set -euo pipefail

help_message="Usage: $0 [--preset tiny|default|large] [--seed N] [--jobs N] OUT
  --preset P   corpus size (default: default, about 100 speakers x 10 utterances)
  --seed N     random seed (default: 1); the same seed gives byte-identical output
  --jobs N     parallel speaker jobs (default: number of CPUs; output does not depend on it)"

preset=default
seed=1
jobs=
# Options are parsed by hand (like utils/parse_options.sh: --name value, unknown options are errors).
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) echo "$help_message"; exit 0 ;;
    --preset|--seed|--jobs)
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      name=${1#--}
      printf -v "$name" '%s' "$2"
      shift 2 ;;
    --*) echo "$0: unknown option $1" >&2; echo "$help_message" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -ne 1 ]; then
  echo "$help_message" >&2
  exit 1
fi
out=$1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC1091
. "$root/path.sh"
args=(--out "$out" --preset "$preset" --seed "$seed")
if [ -n "$jobs" ]; then
  args+=(--jobs "$jobs")
fi
exec python "$root/tools/synth/librispeech.py" "${args[@]}"
