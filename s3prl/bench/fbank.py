"""Benchmark 3: fbank over a corpus, `compute_fbank_batch` (framing and FFT shared by groups of
utterances) vs a plain per-utterance loop over torchaudio.compliance.kaldi.fbank."""
from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as ta_kaldi

from s3prl.bench.common import SAMPLE_RATE, synth_corpus, timed


def bench_fbank(*, num_utts: int = 100, min_s: float = 2.0, max_s: float = 12.0, chunk: int = 32,
                repeats: int = 3, seed: int = 1) -> dict:
    from s3prl.features.config import FeatureConfig
    from s3prl.features.kaldi import compute_fbank_batch

    cfg = FeatureConfig(feat_type="fbank", num_mel_bins=80)
    wavs = [torch.from_numpy(w) for w in synth_corpus(num_utts, min_s, max_s, seed)]
    audio_s = sum(len(w) for w in wavs) / SAMPLE_RATE

    def loop():
        return [ta_kaldi.fbank((w * 32768.0).unsqueeze(0), sample_frequency=16000.0, num_mel_bins=80,
                               frame_length=25.0, frame_shift=10.0, dither=0.0, window_type="povey",
                               snip_edges=True, use_log_fbank=True, use_power=True) for w in wavs]

    def ours():
        out = []
        for i in range(0, len(wavs), chunk):  # bounded memory: `chunk` utterances per FFT
            out.extend(compute_fbank_batch(wavs[i:i + chunk], cfg))
        return out

    a, b = loop(), ours()
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
    same_shapes = all(x.shape == y.shape for x, y in zip(a, b))
    t_loop = timed(loop, repeats=repeats)
    t_ours = timed(ours, repeats=repeats)
    return {"num_utts": num_utts, "audio_seconds": audio_s, "loop_seconds": t_loop, "ours_seconds": t_ours,
            "speedup": t_loop / t_ours, "max_abs_diff": diff, "same_shapes": same_shapes,
            "identical": bool(same_shapes and diff == 0.0)}
