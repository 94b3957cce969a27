"""CUDA paths that the CPU suite cannot reach (`pytest -m cuda`, run by bench/gpu_check.sh on a
machine with a GPU; skipped elsewhere and not counted as passing there)."""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_upstream_on_cuda_matches_cpu(tmp_path):
    from s3prl.bench.common import make_transformer_ckpt, synth_wav
    from s3prl.upstream.hub import load_upstream

    ckpt = make_transformer_ckpt(tmp_path / "t.ckpt", size="tiny")
    wav = torch.from_numpy(synth_wav(3.0, 0))
    cpu = load_upstream(ckpt)([wav]).hidden_states
    gpu_up = load_upstream(ckpt, device="cuda")
    gpu = gpu_up([wav]).hidden_states
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=1e-3)   # TF32 / kernel differences
    gpu_up.dtype = "bfloat16"
    assert gpu_up.dtype == torch.bfloat16
    bf = gpu_up([wav]).hidden_states
    assert all(x.dtype == torch.float32 for x in bf)
    assert max(float((x.cpu() - y).abs().max()) for x, y in zip(bf, cpu)) < 0.1 * float(cpu[-1].abs().max())


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_pretrain_step_on_cuda_each_precision(amp):
    from s3prl.bench.gpu import bench_pretrain_cuda
    from s3prl.train.trainer import resolve_amp

    assert resolve_amp(amp, torch.device("cuda")) == amp
    amps = ("fp32",) if amp == "none" else ("fp32", amp)
    res = bench_pretrain_cuda(sizes=("tiny",), shapes={"tiny": (4, 100)}, amps=amps, steps=2)
    assert [r["amp"] for r in res["rows"]] == list(amps)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in res["rows"])
