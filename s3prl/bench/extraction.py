"""Benchmark 1: representation extraction, ours (s3prl.upstream.hub) vs s3prl 0.4.x `tera_local`.

Both sides load the same checkpoint (written by our `save_upstream_checkpoint` in today's S3PRL
layout), get the same waveforms in the same length-sorted batches, the same thread count and the
same device. The reference runs in tools/bench-venv through bench/reference_extract.py (a
subprocess, because that venv holds the PyPI `s3prl` package). Reported: seconds of audio per
second for each, their ratio, and the largest |difference| of any hidden state on valid frames;
for batches > 1 also the reference fed in corpus order (its users' default, more padding). Ours
runs in float32 and, where the CPU has bf16 units (or on CUDA), in bfloat16 (`Upstream.dtype`,
`--dtype bfloat16`); the bf16 rows' differences are against the float32 reference.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from s3prl.bench.common import SAMPLE_RATE, make_transformer_ckpt, synth_corpus

REPO = Path(__file__).resolve().parents[2]
REFERENCE_SCRIPT = REPO / "bench" / "reference_extract.py"
DEFAULT_REF_VENV = REPO / "tools" / "bench-venv"
INSTALL_HINT = "tools/install_bench_reference.sh"


def sorted_batches(wavs: list, batch_size: int) -> list[list[int]]:
    """Longest first, consecutive groups of batch_size: minimal padding inside a batch."""
    order = sorted(range(len(wavs)), key=lambda i: (-len(wavs[i]), i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def reference_python(venv: Path) -> Path | None:
    py = Path(venv) / "bin" / "python"
    return py if py.is_file() and (Path(venv) / ".s3prl-0.4.18-installed").is_file() else None


def run_ours(ckpt: str, wavs: list, batches: dict, device: str, check: set[int],
             dtype: str = "float32") -> tuple[dict, dict]:
    from s3prl.upstream.hub import load_upstream

    up = load_upstream(ckpt, device=device)
    up.dtype = dtype
    tw = [torch.from_numpy(w) for w in wavs]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    up([tw[0]])  # warm-up, as the reference side does
    seconds, states = {}, {}
    for bs, blist in batches.items():
        sync()
        t0 = time.perf_counter()
        outs = [(b, up([tw[i] for i in b])) for b in blist]
        sync()
        seconds[bs] = time.perf_counter() - t0
        for b, out in outs:
            for j, i in enumerate(b):
                if i in check:
                    n = int(out.lengths[j])
                    for k, h in enumerate(out.hidden_states):
                        states[f"b{bs}_u{i}_l{k}"] = h[j, :n].float().cpu().numpy()
    return seconds, states


def run_reference(py: Path, ckpt: str, wavs: list, batches: dict, device: str, threads: int,
                  check: set[int], work: Path) -> tuple[dict, dict, str]:
    np.savez(work / "wavs.npz", **{f"w{i}": w for i, w in enumerate(wavs)})
    (work / "batches.json").write_text(json.dumps(batches))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [str(py), str(REFERENCE_SCRIPT), "--ckpt", str(Path(ckpt).resolve()), "--wavs", str(work / "wavs.npz"),
           "--batches", str(work / "batches.json"), "--threads", str(threads), "--device", device,
           "--out", str(work / "ref.json"), "--states", str(work / "ref_states.npz"),
           "--check-utts", ",".join(str(i) for i in sorted(check))]
    # cwd = the work dir, so the toolkit's own `s3prl` is not importable from the reference side.
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    res = json.loads((work / "ref.json").read_text())
    st = np.load(work / "ref_states.npz")
    return res["seconds"], {k: st[k] for k in st.files}, res.get("s3prl_version", "?")


def bench_extraction(work: Path, *, num_utts: int = 20, min_s: float = 4.0, max_s: float = 16.0,
                     batch_sizes=(1, 8), size: str = "base", threads: int = 2, devices=None,
                     ref_venv: Path = DEFAULT_REF_VENV, seed: int = 0, check_utts: int = 3,
                     rounds: int = 2, dtypes=("float32", "bfloat16")) -> dict:
    """Times ours and the reference alternately for `rounds` rounds and keeps each side's best
    time per batch size (shared machines drift; alternating exposes both sides to the same drift)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    wavs = synth_corpus(num_utts, min_s, max_s, seed)
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE
    ckpt = make_transformer_ckpt(work / f"tera_{size}.ckpt", size=size, seed=seed)
    batches = {str(bs): sorted_batches(wavs, bs) for bs in batch_sizes}
    # The reference as its users run it: batches in corpus order (padding to the longest member).
    corpus = {f"{bs}-corpus": [list(range(i, min(i + bs, num_utts))) for i in range(0, num_utts, bs)]
              for bs in batch_sizes if bs > 1}
    check = set(range(min(check_utts, num_utts)))
    devices = devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    py = reference_python(Path(ref_venv))
    result = {"model": size, "num_utts": num_utts, "audio_seconds": audio_s, "threads": threads,
              "reference": "s3prl 0.4.18 tera_local" if py else None, "rows": []}
    if py is None:
        result["note"] = (f"reference venv {ref_venv} is absent: measured ours only; install it with "
                          f"{INSTALL_HINT}")
    result["rounds"] = rounds
    from s3prl.precision import resolve_dtype

    for device in devices:
        dts = list(dict.fromkeys(resolve_dtype(d, device) for d in dtypes))
        ours_s: dict = {d: None for d in dts}
        ours_states: dict = {}
        ref_s = ref_states = None
        for _ in range(max(1, rounds)):
            for d in dts:
                s, ours_states[d] = run_ours(ckpt, wavs, batches, device, check, d)
                ours_s[d] = s if ours_s[d] is None else {k: min(v, ours_s[d][k]) for k, v in s.items()}
            if py is not None:
                s, ref_states, ver = run_reference(py, ckpt, wavs, {**batches, **corpus}, device, threads,
                                                   check, work)
                ref_s = s if ref_s is None else {k: min(v, ref_s[k]) for k, v in s.items()}
                result["reference"] = f"s3prl {ver} tera_local"
        for d, bs in [(d, bs) for d in dts for bs in batches]:
            row = {"device": device, "dtype": d, "batch_size": int(bs), "ours_audio_s_per_s": audio_s / ours_s[d][bs]}
            first = next(iter(batches))
            if bs != first:   # batching must not lose: throughput at this batch size / at the first one
                row["ours_over_first_batch_size"] = ours_s[d][first] / ours_s[d][bs]
            if d != "float32" and "float32" in ours_s:
                row["ours_speedup_over_float32"] = ours_s["float32"][bs] / ours_s[d][bs]
            if ref_s is not None:
                row["ref_audio_s_per_s"] = audio_s / ref_s[bs]
                row["speedup"] = ref_s[bs] / ours_s[d][bs]
                if f"{bs}-corpus" in ref_s:
                    row["ref_corpus_order_audio_s_per_s"] = audio_s / ref_s[f"{bs}-corpus"]
                    row["speedup_vs_corpus_order"] = ref_s[f"{bs}-corpus"] / ours_s[d][bs]
                diffs = []
                for k, a in ours_states[d].items():
                    if k.startswith(f"b{bs}_") and k in ref_states:
                        b = ref_states[k]
                        if a.shape != b.shape:
                            raise RuntimeError(f"{k}: ours {a.shape} vs reference {b.shape}")
                        diffs.append(float(np.abs(a - b).max()))
                row["max_abs_diff"] = max(diffs)
            result["rows"].append(row)
    return result
