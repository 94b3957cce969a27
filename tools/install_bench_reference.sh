#!/usr/bin/env bash
# Creates tools/bench-venv: a SEPARATE virtual environment holding the reference implementation
# (s3prl 0.4.18 from PyPI) that `make bench` compares our extractor against. It is never
# imported by the toolkit; the benchmark harness (bench/reference_extract.py) runs it in a
# subprocess and installs the torchaudio compatibility shims described in
# docs/dependencies.md (CUDA-linked torchaudio 2.11 wheel, removed set_audio_backend and
# sox_effects) before importing s3prl.hub.
#
# Usage: tools/install_bench_reference.sh [--venv DIR]
# A second run finds the venv complete and does nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/tools/bench-venv"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --venv) venv="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install_bench_reference.sh: unknown option '$1'" >&2; exit 1 ;;
  esac
done
py=${PYTHON:-python3}
stamp="$venv/.s3prl-0.4.18-installed"
if [ -f "$stamp" ]; then
  echo "install_bench_reference.sh: $venv already holds s3prl 0.4.18; nothing to do"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
# Exact pins (a bare torch pulls a multi-GB build of another version; docs/dependencies.md).
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  "torch==2.14.1" "torchaudio==2.11.0" "s3prl==0.4.18" numpy
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
print("install_bench_reference.sh: s3prl", md.version("s3prl"), "torch", md.version("torch"))
PY
touch "$stamp"
echo "install_bench_reference.sh: reference venv ready at $venv"
