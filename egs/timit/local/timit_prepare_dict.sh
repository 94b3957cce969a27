#!/usr/bin/env bash
# egs/timit/local/timit_prepare_dict.sh: the phone "lexicon" of a TIMIT system, as Kaldi's
# egs/timit/s5/local/timit_prepare_dict.sh makes it: TIMIT's transcripts are phone strings, so every
# phone of the data dirs' `text` is a word pronounced as itself ("aa aa"), plus "<UNK> SPN" for the
# lang builder's unknown word (python -m s3prl.bin.hybrid_lang). Written atomically; a lexicon
# already there with the same content is left alone.
#
# Usage: local/timit_prepare_dict.sh <lexicon-out> <data-dir>...
#   e.g. local/timit_prepare_dict.sh data/local/dict/lexicon.txt data/train data/dev data/test
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "Usage: $0 <lexicon-out> <data-dir>..." >&2
  exit 1
fi
out=$1; shift
for d in "$@"; do
  [ -f "$d/text" ] || { echo "$0: $d/text: no such file (run stage 0 first)" >&2; exit 1; }
done
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
for d in "$@"; do cut -d' ' -f2- "$d/text"; done | tr ' \t' '\n\n' | LC_ALL=C sort -u \
  | awk 'NF { print $1, $1 }' > "$tmp"
[ -s "$tmp" ] || { echo "$0: no phone in the text of $*" >&2; exit 1; }
echo "<UNK> SPN" >> "$tmp"
if [ -f "$out" ] && cmp -s "$tmp" "$out"; then exit 0; fi
chmod 644 "$tmp"
mv -f "$tmp" "$out"
