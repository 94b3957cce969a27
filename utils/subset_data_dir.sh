#!/usr/bin/env bash
# utils/subset_data_dir.sh: copy part of a Kaldi data directory, like Kaldi's
# utils/subset_data_dir.sh, through `python -m s3prl.bin.data_dir subset`.
set -euo pipefail
first=""; last=""; utt_list=""; spk_list=""; seed=0
help_message="Usage: $0 [options] <src-data> [<num-utts>] <dest-data>
 --first N        the first N utterances (C order)      (Kaldi form: --first <src> <N> <dest>)
 --last N         the last N utterances (C order)       (Kaldi form: --last <src> <N> <dest>)
 --utt-list FILE  the utterances listed in FILE (first field)
 --spk-list FILE  all utterances of the speakers listed in FILE
 --seed S         seed of the random draw in the form <src> <num-utts> <dest> (default 0)
With none of --first/--last/--utt-list/--spk-list, <num-utts> utterances are drawn at random."
utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
# Kaldi writes --first/--last as bare flags with N as a positional; accept "--first N" too.
args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --first|--last)
      if [ "$#" -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]]; then args+=("$1" "$2"); shift 2
      else args+=("$1" bare); shift; fi ;;
    --) args+=("$@"); break ;;
    --*) args+=("$1"); shift; if [ "$#" -gt 0 ]; then args+=("$1"); shift; fi ;;
    *) args+=("$@"); break ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"
. "$utils_dir/parse_options.sh"
opts=()
if [ "$first" = bare ] || [ "$last" = bare ]; then
  if [ "$#" -ne 3 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
  if [ "$first" = bare ]; then opts+=(--first "$2"); else opts+=(--last "$2"); fi
  set -- "$1" "$3"
elif [ -n "$first" ]; then opts+=(--first "$first")
elif [ -n "$last" ]; then opts+=(--last "$last")
elif [ -n "$utt_list" ]; then opts+=(--utt-list "$utt_list")
elif [ -n "$spk_list" ]; then opts+=(--spk-list "$spk_list")
else
  if [ "$#" -ne 3 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
  opts+=(--num-utts "$2" --seed "$seed")
  set -- "$1" "$3"
fi
if [ "$#" -ne 2 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
exec "$S3PRL_PYTHON" -m s3prl.bin.data_dir subset "${opts[@]}" "$1" "$2"
