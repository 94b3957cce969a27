"""Shared helpers of the benchmarks: deterministic audio, timing, checkpoints, thread control."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000

# Model sizes the benchmarks use: "base" is TERA/Mockingjay base (arXiv 2007.06028), "tiny" the
# recipe's tiny preset scale.
SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=3, num_attention_heads=12, intermediate_size=3072),
    # base width, one layer: dumps as much data per frame as base at a third of the compute
    "wide1": dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    # the demo recipe's tiny presets (egs/librispeech/conf/tera_tiny.yaml: batch 32 of 50-frame crops)
    "tera_tiny": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256),
}


def synth_wav(seconds: float, seed: int) -> np.ndarray:
    """A speech-like deterministic waveform (float32 in [-1, 1]): harmonic tones with a moving
    pitch, an amplitude envelope and white noise, all from `seed`."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    f0 = 100 + 60 * rng.random() + 20 * np.sin(2 * math.pi * 0.5 * t + rng.random() * 6)
    phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * math.pi * 3.0 * t + rng.random() * 6) ** 2
    # The noise floor and a 35 Hz hum keep every mel bin (the lowest one is nearly cancelled by
    # pre-emphasis) above torchaudio's log floor (float eps) even for waveforms in [-1, 1], the
    # scale s3prl 0.4's extracter feeds to kaldi.fbank; where a bin hits that floor the two
    # toolkits' features differ by design (bench/README.md).
    hum = 0.05 * np.sin(2 * math.pi * 35.0 * t + rng.random() * 6)
    x = 0.1 * x * env + hum + 0.02 * rng.standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)


def synth_corpus(num: int, min_s: float, max_s: float, seed: int) -> list[np.ndarray]:
    """`num` waveforms with lengths spread evenly over [min_s, max_s] seconds in a seeded order."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(min_s, max_s, num) if num > 1 else np.array([min_s])
    rng.shuffle(lengths)
    return [synth_wav(float(s), seed * 1000 + i) for i, s in enumerate(lengths)]


def timed(fn, repeats: int = 1, warmup: int = 0) -> float:
    """Best wall time of `repeats` calls of fn() after `warmup` untimed calls (best-of filters
    out the noise of a shared machine)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_transformer_ckpt(path: str | Path, size: str = "base", seed: int = 0, sequence_length: int = 1500,
                          model: str = "tera") -> str:
    """A random-weight transformer checkpoint written by our save_upstream_checkpoint (today's
    S3PRL layout, readable by s3prl 0.4.x's `tera_local`), features: fbank 80, per-utterance CMVN."""
    from s3prl.features.config import FeatureConfig
    from s3prl.upstream.checkpoint import save_upstream_checkpoint
    from s3prl.upstream.config import TransformerConfig, UpstreamConfig
    from s3prl.upstream.objectives import MaskedReconstruction

    torch.manual_seed(seed)
    tcfg = TransformerConfig(**SIZES[size], sequence_length=sequence_length)
    cfg = UpstreamConfig(model=model, transformer=tcfg)
    fcfg = FeatureConfig(feat_type="fbank", num_mel_bins=80, per_utt_cmvn=True)
    obj = MaskedReconstruction(cfg, 80)
    save_upstream_checkpoint(path, objective=obj, optimizer_state=None, scheduler_state=None, step=1,
                             runner_config={"runner": {"total_steps": 1}}, upstream_cfg=cfg,
                             audio=fcfg.to_s3prl_audio())
    return str(path)
