#!/usr/bin/env bash
# tools/install_pytorch_kaldi.sh: the optional PyTorch-Kaldi checkout for the hybrid DNN/HMM
# hand-off (mravanelli/pytorch-kaldi, README; utils/run_pytorch_kaldi.sh runs it).
#
# Usage: tools/install_pytorch_kaldi.sh [--repo URL] [--ref REF] [--dir DIR]
#   --repo URL   git repository (default https://github.com/mravanelli/pytorch-kaldi.git)
#   --ref REF    branch, tag or commit to check out (default master)
#   --dir DIR    checkout location (default tools/pytorch-kaldi)
#
# Clones PyTorch-Kaldi and pip-installs its requirements into our venv (tools/venv), keeping the
# installed torch/torchaudio pinned (a bare `torch` would otherwise pull a multi-GB build; see
# docs/dependencies.md). Needs network access. Idempotent: an existing checkout at the requested ref
# whose requirements are already installed is left alone. PyTorch-Kaldi also needs Kaldi itself
# (KALDI_ROOT with copy-feats, hmm-info, latgen-faster-mapped ...), which this script does not build.
set -euo pipefail

repo=https://github.com/mravanelli/pytorch-kaldi.git
ref=master
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
dir=$root/tools/pytorch-kaldi

while [ "$#" -gt 0 ]; do
  case "$1" in
    --repo) repo=${2:?--repo needs a value}; shift 2 ;;
    --ref) ref=${2:?--ref needs a value}; shift 2 ;;
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install_pytorch_kaldi.sh: unknown option '$1' (see --help)" >&2; exit 1 ;;
  esac
done

python=$root/tools/venv/bin/python
if [ ! -x "$python" ]; then
  echo "install_pytorch_kaldi.sh: $python not found; run tools/install.sh first" >&2
  exit 1
fi
command -v git >/dev/null || { echo "install_pytorch_kaldi.sh: git is not installed" >&2; exit 1; }

if [ -d "$dir/.git" ]; then
  echo "install_pytorch_kaldi.sh: using the existing checkout $dir"
elif [ -e "$dir" ]; then
  echo "install_pytorch_kaldi.sh: $dir exists but is not a git checkout; move it away" >&2
  exit 1
else
  mkdir -p "$(dirname "$dir")"
  tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  git clone --quiet "$repo" "$tmp"
  mv "$tmp" "$dir"
  trap - EXIT
fi

# Check out the requested ref (fetch only when it is not known locally).
if ! git -C "$dir" rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
  git -C "$dir" fetch --quiet origin "$ref"
fi
want=$(git -C "$dir" rev-parse "$ref^{commit}" 2>/dev/null || git -C "$dir" rev-parse FETCH_HEAD)
have=$(git -C "$dir" rev-parse HEAD)
if [ "$want" != "$have" ]; then
  git -C "$dir" checkout --quiet "$want"
fi

# Requirements, once per (commit, requirements) pair; torch/torchaudio stay at our pinned versions.
stamp=$dir/.s3prl_requirements_done
req=$dir/requirements.txt
key=$want
if [ -f "$req" ]; then
  key="$want $(sha256sum "$req" | cut -d' ' -f1)"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  echo "install_pytorch_kaldi.sh: requirements already installed for $want"
else
  if [ -f "$req" ]; then
    constraints=$(mktemp)
    trap 'rm -f "$constraints"' EXIT
    "$python" - > "$constraints" <<'EOF'
import importlib.metadata as m
for name in ("torch", "torchaudio", "numpy"):
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pass
EOF
    "$python" -m pip install -q --disable-pip-version-check -r "$req" -c "$constraints"
    rm -f "$constraints"
    trap - EXIT
  fi
  printf '%s\n' "$key" > "$stamp"
fi

for f in run_exp.py proto/global.proto kaldi_decoding_scripts/decode_dnn.sh; do
  [ -e "$dir/$f" ] || { echo "install_pytorch_kaldi.sh: $dir/$f missing; not a PyTorch-Kaldi checkout?" >&2; exit 1; }
done
echo "install_pytorch_kaldi.sh: PyTorch-Kaldi $want ready in $dir"
if [ -z "${KALDI_ROOT:-}" ]; then
  echo "install_pytorch_kaldi.sh: note: set KALDI_ROOT to a compiled Kaldi before running utils/run_pytorch_kaldi.sh"
fi
