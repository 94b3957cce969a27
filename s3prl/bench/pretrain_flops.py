"""Benchmark 2: compute efficiency of one pre-training step (masked reconstruction, TERA).

FLOPs are counted analytically (multiply-add = 2 FLOPs) over the matmuls: input projection,
Q/K/V/output projections, attention scores and context, the two FFN matmuls, the SpecHead's two
matmuls; forward + backward = 3 x forward. Achieved FLOP/s = FLOPs / step time (forward, L1
loss, backward, BertAdam update as the base presets use), compared with the peak of a large torch.mm measured in the same
run on the same threads. A torch.profiler table says where the rest of the step goes.

`make bench` runs the base config at its real crop length (max_timestep 1500 frames) with 2
utterances per step; the optimizer update is timed alone, and the recipe's update (12 x 1500
frames, 3 accumulated forwards: conf/tera_base.yaml) is scored from the measured per-frame
forward+backward time and the measured update (`recipe_update_fraction_of_peak`).

Each size runs twice: with the presets' attention dropout (0.1) and without it. Torch's CPU
`scaled_dot_product_attention` has a fused (flash) kernel only without dropout; with dropout it
takes the math path that materialises the B x heads x T x T probabilities, draws a Bernoulli mask
for every one of them and multiplies (bench/README.md §2 has the numbers).

Each row runs in float32 and in bfloat16 autocast (`runner.amp: bf16`: the trainer's
torch.autocast, fp32 master weights and optimizer): the matmul peak is measured in both dtypes
(bf16 runs on AMX / AVX512-BF16 where the CPU has them), each row is scored against the peak of
its own dtype, and `bf16_over_fp32` holds the step-time ratios of the same size and dropout.
"""
from __future__ import annotations

import contextlib
import time

import torch

from s3prl.bench.common import SIZES, timed


def step_flops(batch: int, frames: int, hidden: int, inter: int, layers: int, in_dim: int,
               out_dim: int) -> dict:
    """Analytic FLOPs of one fwd+bwd step on (batch, frames) stacked input."""
    bt = batch * frames
    per_layer = (2 * bt * hidden * hidden * 4          # Q, K, V, attention output
                 + 2 * 2 * batch * frames * frames * hidden  # scores + context
                 + 2 * 2 * bt * hidden * inter)          # FFN in + out
    fwd = 2 * bt * in_dim * hidden + layers * per_layer + 2 * bt * hidden * hidden + 2 * bt * hidden * out_dim
    return {"forward": fwd, "step": 3 * fwd}


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """FLOP/s of an n x n x n torch.mm in `dtype` (best of `repeats`)."""
    a, b = torch.randn(n, n).to(DTYPES[dtype]), torch.randn(n, n).to(DTYPES[dtype])
    dt = timed(lambda: torch.mm(a, b), repeats=repeats, warmup=1)
    return 2 * n ** 3 / dt


def autograd_saved_mib(forward) -> float:
    """MiB of the distinct storages autograd keeps for the backward pass of `forward()` (a loss):
    the activation memory of a training step, independent of machine load."""
    storages = {}

    def pack(t):
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    loss.backward()
    return sum(storages.values()) / 2 ** 20


def _objective(size: str, seed: int, attention_dropout: float = 0.1):
    from s3prl.upstream.config import MaskConfig, TransformerConfig, UpstreamConfig
    from s3prl.upstream.objectives import MaskedReconstruction

    torch.manual_seed(seed)
    tcfg = TransformerConfig(**SIZES[size], attention_probs_dropout_prob=attention_dropout)
    cfg = UpstreamConfig(model="tera", transformer=tcfg,
                         mask=MaskConfig(mask_frequency=8, noise_proportion=0.15))
    return MaskedReconstruction(cfg, 80), cfg


def bench_pretrain(*, sizes=("base", "tiny"), batch: int = 4, frames: int = 500, repeats: int = 3, shapes=None,
                   peak_n: int = 2048, seed: int = 0, profile_top: int = 8, recipe_batch: int = 12,
                   accumulation: int = 3, attention_dropouts=(0.1, 0.0), dtypes=("float32", "bfloat16")) -> dict:
    """`shapes` {size: (batch, frames)} overrides `batch` and `frames` for a size."""
    from s3prl.precision import cpu_supports_bf16
    from s3prl.train.optim import BertAdam, param_groups

    note = None
    if "bfloat16" in dtypes and not cpu_supports_bf16():
        dtypes = tuple(d for d in dtypes if d != "bfloat16")
        note = "this CPU has no bf16 matrix units (AVX512-BF16 / AMX): bfloat16 rows skipped"
    batch0, frames0 = batch, frames
    peak_before = {d: matmul_peak(peak_n, dtype=d) for d in dtypes}
    rows = []
    for size, attn_p, dtype in [(s, p, d) for s in sizes for p in attention_dropouts for d in dtypes]:
        batch, frames = (shapes or {}).get(size, (batch0, frames0))
        amp = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16"
               else contextlib.nullcontext())
        obj, cfg = _objective(size, seed, attn_p)
        obj.train()
        # The optimizer of the base presets (egs/librispeech/conf/tera_base.yaml): BertAdam.
        opt = BertAdam(param_groups(obj.named_parameters(), 0.01), lr=2e-4, eps=1e-6, max_grad_norm=1.0)
        g = torch.Generator().manual_seed(seed)
        feats = torch.randn(batch, frames, 80, generator=g)
        lengths = torch.full((batch,), frames, dtype=torch.long)

        def fwd_bwd():
            opt.zero_grad(set_to_none=True)
            with amp:
                out = obj(feats, lengths, g)
            out.loss.backward()

        def step():
            fwd_bwd()
            opt.step()

        def loss():
            opt.zero_grad(set_to_none=True)
            with amp:
                return obj(feats, lengths, g).loss

        dt = timed(step, repeats=repeats, warmup=1)
        saved = autograd_saved_mib(loss)
        dt_fb = timed(fwd_bwd, repeats=repeats)
        dt_opt = timed(opt.step, repeats=max(3, repeats))   # the update alone (grads in place)
        t = cfg.transformer
        fl = step_flops(batch, frames, t.hidden_size, t.intermediate_size, t.num_hidden_layers, 80, 80)
        achieved = fl["step"] / dt
        # The recipe's step (conf/tera_base.yaml): `recipe_batch` x `frames` frames per forward,
        # `accumulation` forwards per update. Forward+backward time per frame at a fixed T does not
        # depend on the batch, so it is the measured per-frame time x frames; the update is measured.
        recipe_frames = recipe_batch * frames * accumulation
        recipe_fl = step_flops(recipe_batch, frames, t.hidden_size, t.intermediate_size, t.num_hidden_layers,
                               80, 80)["step"] * accumulation
        recipe_s = dt_fb * recipe_frames / (batch * frames) + dt_opt
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        ka = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ka) or 1.0
        top = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)[:profile_top]
        rows.append({"size": size, "attention_dropout": attn_p, "dtype": dtype, "batch": batch, "frames": frames, "step_seconds": dt,
                     "step_gflop": fl["step"] / 1e9, "achieved_gflops": achieved / 1e9,
                     "recipe_gflop": recipe_fl / 1e9, "recipe_update_seconds": recipe_s,
                     # the model alone (no optimizer update): what batch x frames can amortise
                     "fwd_bwd_seconds": dt_fb, "autograd_saved_mib": saved,
                     "optimizer_seconds": dt_opt, "optimizer_share": dt_opt / (dt_fb + dt_opt),
                     "recipe_batch": recipe_batch, "recipe_accumulation": accumulation,
                     "recipe_optimizer_share": dt_opt / recipe_s,
                     "params": sum(p.numel() for p in obj.parameters()),
                     "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / total} for e in top]})
    # The peak is measured before and after the steps and the higher one kept: a momentary load
    # spike during one short peak measurement would otherwise inflate every fraction.
    peak_after = {d: matmul_peak(peak_n, dtype=d) for d in dtypes}
    peaks = {d: max(peak_before[d], peak_after[d]) for d in dtypes}
    for r in rows:
        peak = peaks[r["dtype"]]
        fl = r["step_gflop"] * 1e9
        r["fraction_of_peak"] = fl / r["step_seconds"] / peak
        r["fwd_bwd_fraction_of_peak"] = fl / r["fwd_bwd_seconds"] / peak
        r["recipe_update_fraction_of_peak"] = r["recipe_gflop"] * 1e9 / r["recipe_update_seconds"] / peak
    ratios = []
    for r in rows:
        if r["dtype"] != "bfloat16":
            continue
        base = [x for x in rows if x["dtype"] == "float32" and x["size"] == r["size"]
                and x["attention_dropout"] == r["attention_dropout"]]
        if base:
            ratios.append({"size": r["size"], "attention_dropout": r["attention_dropout"],
                           "step_speedup": base[0]["step_seconds"] / r["step_seconds"],
                           "fwd_bwd_speedup": base[0]["fwd_bwd_seconds"] / r["fwd_bwd_seconds"]})
    out = {"peak_gflops": peaks["float32"] / 1e9 if "float32" in peaks else None,
           "peak_gflops_by_dtype": {d: v / 1e9 for d, v in peaks.items()},
           "peak_gflops_before_after": {d: [peak_before[d] / 1e9, peak_after[d] / 1e9] for d in dtypes},
           "peak_bf16_over_fp32": (peaks["bfloat16"] / peaks["float32"]
                                   if "bfloat16" in peaks and "float32" in peaks else None),
           "peak_matmul_n": peak_n, "rows": rows, "bf16_over_fp32": ratios}
    if note:
        out["note"] = note
    return out
