#!/usr/bin/env bash
# Installs the toolkit: Debian packages for the corpus synthesizer (when missing, as root),
# then tools/venv with the pinned Python dependencies and this package in editable mode.
# A second run finds everything in place and does nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

debs=(festival festvox-us-slt-hts festlex-cmu htsengine flite espeak-ng libespeak-ng1 flac)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "install.sh: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install.sh: the corpus synthesizer needs Debian packages; run as root:" >&2
    echo "  apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

venv="$root/tools/venv"
# torch's wheel unpacks to ~6 GB; a full disk would otherwise fail deep inside pip (Errno 28) and
# leave a half-installed venv. Check first, name the place, stop.
need_gb=${S3PRL_INSTALL_NEED_GB:-8}
if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch, torchaudio" 2>/dev/null; }; then
  for place in "$root/tools" "${TMPDIR:-/tmp}"; do
    free_kb=$(df -Pk "$place" | awk 'NR == 2 {print $4}')
    if [ -n "$free_kb" ] && [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
      echo "install.sh: $place has $((free_kb / 1024 / 1024)) GB free; installing torch needs about $need_gb GB (free some space or set TMPDIR)" >&2
      exit 1
    fi
  done
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Exact pins: a bare torch or a range pulls a multi-GB build (see docs/dependencies.md).
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test]"
"$venv/bin/python" -c "import torch, torchaudio, kaldiio, soundfile, sentencepiece, yaml, tqdm, kaldi_hmm_gmm, kaldifst, kaldilm, kaldialign; print('install.sh: torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
