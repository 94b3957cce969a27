"""GPU checks of the benchmarks (bench/gpu_check.sh): pre-training step time on CUDA in float32,
bf16 autocast and fp16 autocast with a GradScaler, each scored against a same-dtype CUDA matmul
peak, and the bf16 / fp16 step-time ratios to float32 of the same run.

Same model, masking objective and optimizer as the CPU benchmark (s3prl.bench.pretrain_flops);
FLOPs counted by its `step_flops`. Never imported by the toolkit.
"""
from __future__ import annotations

import contextlib
import time

import torch

from s3prl.bench.pretrain_flops import _objective, step_flops

AMP_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_matmul_peak(dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n torch.mm on the current CUDA device (float32 without TF32)."""
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    torch.mm(a, b)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0)


def bench_pretrain_cuda(*, sizes=("base", "tera_tiny"), shapes=None, amps=("fp32", "bf16", "fp16"),
                        steps: int = 10, seed: int = 0) -> dict:
    """Mean step time over `steps` steps after 3 warm-up steps, per size and precision."""
    from s3prl.bench.common import SIZES

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    shapes = shapes or {"base": (12, 1500), "tera_tiny": (32, 50)}
    peaks = {a: cuda_matmul_peak(AMP_DTYPES[a]) for a in amps}
    rows = []
    for size in sizes:
        batch, frames = shapes[size]
        for amp in amps:
            obj, cfg = _objective(size, seed, 0.1)
            obj.cuda().train()
            opt = torch.optim.AdamW(obj.parameters(), lr=2e-4, fused=True)
            scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
            g = torch.Generator().manual_seed(seed)
            feats = torch.randn(batch, frames, 80, device="cuda")
            lengths = torch.full((batch,), frames, dtype=torch.long)
            ctx = (torch.autocast("cuda", dtype=AMP_DTYPES[amp]) if amp != "fp32" else contextlib.nullcontext())

            def step():
                opt.zero_grad(set_to_none=True)
                with ctx:
                    out = obj(feats, lengths, g)
                scaler.scale(out.loss).backward()
                scaler.step(opt)
                scaler.update()
                return out.loss

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = step()
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / steps
            t = cfg.transformer
            fl = step_flops(batch, frames, t.hidden_size, t.intermediate_size, t.num_hidden_layers, 80, 80)["step"]
            rows.append({"size": size, "amp": amp, "batch": batch, "frames": frames, "step_seconds": dt,
                         "loss": float(loss), "achieved_tflops": fl / dt / 1e12,
                         "fraction_of_peak": fl / dt / peaks[amp]})
    for r in rows:
        fp32 = [x for x in rows if x["size"] == r["size"] and x["amp"] == "fp32"]
        if fp32 and r["amp"] != "fp32":
            r["speedup_over_fp32"] = fp32[0]["step_seconds"] / r["step_seconds"]
    return {"device": torch.cuda.get_device_name(0), "peak_tflops": {a: v / 1e12 for a, v in peaks.items()},
            "rows": rows, "size_params": {s: SIZES[s] for s in sizes}}
