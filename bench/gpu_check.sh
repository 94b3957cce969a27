#!/usr/bin/env bash
# bench/gpu_check.sh: the CUDA paths of the toolkit in a few minutes on one GPU machine.
#
# Usage: bench/gpu_check.sh [OUT_DIR]     (default: bench/results/gpu; any working directory)
#   1. environment: the GPU, driver, torch and CUDA versions          -> OUT/env.txt
#   2. the CUDA-marked tests (pytest -m cuda: tests/gpu/)              -> OUT/pytest.log
#   3. extraction, ours float32 / bf16 on CUDA vs s3prl 0.4.18 tera_local on CUDA when
#      tools/bench-venv is installed (s3prl.bench.extraction)         -> OUT/extraction.json
#   4. pre-training step, base at 12 x 1500 frames and tera_tiny at 32 x 50, in float32, bf16
#      autocast and fp16 autocast with GradScaler (s3prl.bench.gpu)   -> OUT/pretrain.json
#   5. a 1-GPU torchrun pre-training (tera_tiny, 300 steps) on a synthetic data dir, then a resume
#      to 400 steps; the resumed run must end at step 400             -> OUT/torchrun/
# Without a CUDA device it prints one line and exits 2 before doing anything.
set -euo pipefail

repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
out=${1:-$repo/bench/results/gpu}
# The toolkit's python and the repository on PYTHONPATH without path.sh, as the utils/ verbs do.
. "$repo/utils/lib.sh"
py=$S3PRL_PYTHON
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check.sh: no CUDA device (torch.cuda.is_available() is False); nothing run" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo"

{ nvidia-smi -L 2>/dev/null || true
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))'
} > "$out/env.txt"
cat "$out/env.txt"

echo "== pytest -m cuda"
"$py" -m pytest -m cuda tests/gpu -q -rs > "$out/pytest.log" 2>&1 || { tail -20 "$out/pytest.log"; echo "gpu_check.sh: CUDA tests failed; see $out/pytest.log" >&2; exit 1; }
tail -3 "$out/pytest.log"

echo "== extraction (float32 / bf16 on CUDA)"
"$py" - "$out" <<'PY'
import json, sys, tempfile
from pathlib import Path
from s3prl.bench.extraction import bench_extraction
with tempfile.TemporaryDirectory() as tmp:
    r = bench_extraction(Path(tmp), num_utts=16, min_s=4.0, max_s=12.0, batch_sizes=(1, 8), size="base",
                         devices=["cuda"], rounds=2)
Path(sys.argv[1], "extraction.json").write_text(json.dumps(r, indent=1) + "\n")
for row in r["rows"]:
    print(row["dtype"], "bs", row["batch_size"], "ours audio-s/s %.1f" % row["ours_audio_s_per_s"],
          "vs reference %.2fx" % row["speedup"] if "speedup" in row else "(no reference venv)")
PY

echo "== pre-training step (fp32 / bf16 AMP / fp16 AMP + GradScaler)"
"$py" - "$out" <<'PY'
import json, sys
from pathlib import Path
from s3prl.bench.gpu import bench_pretrain_cuda
r = bench_pretrain_cuda()
Path(sys.argv[1], "pretrain.json").write_text(json.dumps(r, indent=1) + "\n")
print(r["device"], "peak TFLOP/s", {k: round(v, 1) for k, v in r["peak_tflops"].items()})
for row in r["rows"]:
    print(row["size"], row["amp"], "step %.4f s" % row["step_seconds"], "%.0f %% of peak" % (100 * row["fraction_of_peak"]),
          "x%.2f vs fp32" % row["speedup_over_fp32"] if "speedup_over_fp32" in row else "")
PY

echo "== torchrun --nproc_per_node 1 pre-training, 300 steps, then resume to 400"
run_dir="$out/torchrun"
rm -rf "$run_dir"
mkdir -p "$run_dir"
"$py" - "$run_dir/data" <<'PY'
import sys
from pathlib import Path
import soundfile as sf
from s3prl.bench.common import synth_corpus
d = Path(sys.argv[1]); (d / "wav").mkdir(parents=True)
utts = {}
for i, w in enumerate(synth_corpus(40, 2.0, 6.0, seed=1)):
    spk = f"{100 + i % 4}"
    utt = f"{spk}-0-{i:04d}"
    sf.write(d / "wav" / f"{utt}.wav", w, 16000, subtype="PCM_16")
    utts[utt] = spk
(d / "wav.scp").write_text("".join(f"{u} {d.resolve() / 'wav' / (u + '.wav')}\n" for u in sorted(utts)))
(d / "utt2spk").write_text("".join(f"{u} {utts[u]}\n" for u in sorted(utts)))
spk2utt = {}
for u in sorted(utts):
    spk2utt.setdefault(utts[u], []).append(u)
(d / "spk2utt").write_text("".join(f"{s} {' '.join(v)}\n" for s, v in sorted(spk2utt.items())))
PY
torchrun=$(dirname "$py")/torchrun
[ -x "$torchrun" ] || torchrun=torchrun
conf="$repo/egs/librispeech/conf/tera_tiny.yaml"
ov=(--override runner.save_step=100 --override runner.log_step=50 --override runner.plot_step=1000)
"$torchrun" --standalone --nproc_per_node 1 -m s3prl.bin.pretrain --config "$conf" --device cuda \
  --override runner.total_steps=300 "${ov[@]}" --no-progress "$run_dir/data" "$run_dir/exp" > "$run_dir/train.log" 2>&1 \
  || { tail -5 "$run_dir/train.log"; echo "gpu_check.sh: torchrun pre-training failed; see $run_dir/train.log" >&2; exit 1; }
[ -f "$run_dir/exp/states-300.ckpt" ] || { echo "gpu_check.sh: no states-300.ckpt after 300 steps" >&2; exit 1; }
"$torchrun" --standalone --nproc_per_node 1 -m s3prl.bin.pretrain --config "$conf" --device cuda --resume \
  --override runner.total_steps=400 "${ov[@]}" --no-progress "$run_dir/data" "$run_dir/exp" > "$run_dir/resume.log" 2>&1 \
  || { tail -5 "$run_dir/resume.log"; echo "gpu_check.sh: resumed pre-training failed; see $run_dir/resume.log" >&2; exit 1; }
[ -f "$run_dir/exp/states-400.ckpt" ] || { echo "gpu_check.sh: no states-400.ckpt after the resume" >&2; exit 1; }
echo "torchrun: states-300.ckpt, resumed to states-400.ckpt"
echo "gpu_check.sh: done; results in $out"
