#!/usr/bin/env bash
# utils/run_pytorch_kaldi.sh: run a PyTorch-Kaldi experiment cfg (written by
# `python -m s3prl.bin.make_pytorch_kaldi_cfg`), the hybrid DNN/HMM stage shared by the recipes.
#
# Usage: utils/run_pytorch_kaldi.sh [--pytorch-kaldi-root DIR] <exp.cfg>
#   --pytorch-kaldi-root DIR   PyTorch-Kaldi checkout (default: $S3PRL_ROOT/tools/pytorch-kaldi,
#                              made by tools/install_pytorch_kaldi.sh)
#
# Needs KALDI_ROOT (a compiled Kaldi: copy-feats, hmm-info, ali-to-pdf, latgen-faster-mapped ...)
# and the checkout; without them it stops with a one-line message saying what to install (exit 1).
# PyTorch-Kaldi runs from its own directory with our repository on PYTHONPATH (the cfg may name
# s3prl.downstream.pk_arch). It exits 0 even on errors (mravanelli/pytorch-kaldi, utils.py), so
# success is judged from <out_folder>/log.log and the res.res it writes at the end.
set -euo pipefail

pytorch_kaldi_root=
help_message="Usage: $0 [--pytorch-kaldi-root DIR] <exp.cfg>"

utils_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
. "$utils_dir/lib.sh"
. "$utils_dir/parse_options.sh"
prog=${0##*/}

if [ $# -ne 1 ]; then
  echo "$help_message" >&2
  exit 1
fi
cfg=$1
pk=${pytorch_kaldi_root:-$S3PRL_ROOT/tools/pytorch-kaldi}

if [ -z "${KALDI_ROOT:-}" ] || [ ! -d "${KALDI_ROOT:-}/src" ]; then
  echo "$prog: PyTorch-Kaldi needs a compiled Kaldi: install Kaldi (https://github.com/kaldi-asr/kaldi) and export KALDI_ROOT=/path/to/kaldi" >&2
  exit 1
fi
if [ ! -f "$pk/run_exp.py" ]; then
  echo "$prog: no PyTorch-Kaldi checkout at $pk: run tools/install_pytorch_kaldi.sh (or pass --pytorch-kaldi-root)" >&2
  exit 1
fi

[ -f "$cfg" ] || { echo "$prog: $cfg: no such cfg file (run s3prl.bin.make_pytorch_kaldi_cfg first)" >&2; exit 1; }
cfg=$(cd "$(dirname "$cfg")" && pwd)/$(basename "$cfg")

# Kaldi's binaries, as Kaldi's path.sh puts them on PATH.
for d in "$KALDI_ROOT"/src/*bin "$KALDI_ROOT/tools/openfst/bin"; do
  [ -d "$d" ] && PATH="$d:$PATH"
done
export PATH
for b in copy-feats hmm-info ali-to-pdf analyze-counts latgen-faster-mapped; do
  command -v "$b" >/dev/null || { echo "$prog: Kaldi binary '$b' not found under $KALDI_ROOT/src (is Kaldi compiled?)" >&2; exit 1; }
done

out_folder=$("$S3PRL_PYTHON" - "$cfg" <<'EOF'
import configparser, sys
c = configparser.ConfigParser(interpolation=None)
c.read(sys.argv[1])
print(c["exp"]["out_folder"])
EOF
)
mkdir -p "$out_folder"
echo "$prog: running PyTorch-Kaldi on $cfg (out_folder $out_folder)" >&2
rc=0
(cd "$pk" && "$S3PRL_PYTHON" run_exp.py "$cfg") || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "$prog: run_exp.py failed with status $rc; see $out_folder/log.log" >&2
  exit 1
fi
if [ -f "$out_folder/log.log" ] && grep -q "ERROR" "$out_folder/log.log"; then
  echo "$prog: PyTorch-Kaldi reported an error: $(grep -m1 "ERROR" "$out_folder/log.log")" >&2
  exit 1
fi
if [ ! -s "$out_folder/res.res" ]; then
  echo "$prog: no results in $out_folder/res.res; see $out_folder/log.log" >&2
  exit 1
fi
echo "$prog: done; results:" >&2
cat "$out_folder/res.res"
