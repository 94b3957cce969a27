"""Benchmark: our pre-training step vs s3prl 0.4.18's own (`run_pretrain.py`'s model, loss and
BertAdam update; bench/reference_pretrain.py runs it in tools/bench-venv) on the same config.

Same transformer config (TERA/Mockingjay, dropout 0.1 in attention and hidden states), same
(B, T, 80) input, same threads, BertAdam with gradient clipping 1.0 on both sides. Our step
includes the masking (s3prl.upstream.objectives, done in the reference's data loader, which is
not timed); ours runs in float32 and in bf16 autocast where the CPU has bf16 units, the reference
in float32 (its runner's only CPU precision). The two sides alternate for `rounds` rounds and the
best time of each is kept.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import torch

from s3prl.bench.common import SIZES, timed
from s3prl.bench.extraction import DEFAULT_REF_VENV, INSTALL_HINT, reference_python

REPO = Path(__file__).resolve().parents[2]
REFERENCE_SCRIPT = REPO / "bench" / "reference_pretrain.py"


def ours_step_seconds(size: str, batch: int, frames: int, dtype: str, repeats: int) -> float:
    from s3prl.bench.pretrain_flops import _objective
    from s3prl.train.optim import BertAdam, param_groups

    obj, _ = _objective(size, 0, 0.1)
    obj.train()
    opt = BertAdam(param_groups(obj.named_parameters(), 0.01), lr=2e-4, eps=1e-6, max_grad_norm=1.0)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, 80, generator=g)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with amp:
            out = obj(feats, lengths, g)
        out.loss.backward()
        opt.step()

    return timed(step, repeats=repeats, warmup=1)


def reference_step_seconds(py: Path, size: str, batch: int, frames: int, repeats: int, threads: int) -> float:
    s = SIZES[size]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [str(py), str(REFERENCE_SCRIPT), "--hidden", str(s["hidden_size"]), "--layers", str(s["num_hidden_layers"]),
           "--heads", str(s["num_attention_heads"]), "--inter", str(s["intermediate_size"]), "--batch", str(batch),
           "--frames", str(frames), "--repeats", str(repeats), "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=REPO / "bench", env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reference pre-training step failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["step_seconds"])


def bench_pretrain_ref(*, shapes=(("base", 2, 1500), ("tera_tiny", 32, 50)), repeats: int = 2, rounds: int = 2,
                       threads: int = 2, ref_venv: Path = DEFAULT_REF_VENV) -> dict:
    from s3prl.precision import cpu_supports_bf16

    py = reference_python(Path(ref_venv))
    dtypes = ["float32", "bfloat16"] if cpu_supports_bf16() else ["float32"]
    res: dict = {"reference": "s3prl 0.4.18 run_pretrain.py step" if py else None, "threads": threads, "rows": []}
    if py is None:
        res["note"] = f"reference venv {ref_venv} is absent: measured ours only; install it with {INSTALL_HINT}"
    for size, batch, frames in shapes:
        best: dict = {}
        for _ in range(max(1, rounds)):
            for d in dtypes:
                t = ours_step_seconds(size, batch, frames, d, repeats)
                best[d] = min(best.get(d, t), t)
            if py is not None:
                t = reference_step_seconds(py, size, batch, frames, repeats, threads)
                best["reference"] = min(best.get("reference", t), t)
        for d in dtypes:
            row = {"size": size, "batch": batch, "frames": frames, "dtype": d, "ours_step_seconds": best[d]}
            if "reference" in best:
                row["reference_step_seconds"] = best["reference"]
                row["speedup"] = best["reference"] / best[d]
            res["rows"].append(row)
    return res
