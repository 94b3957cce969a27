"""Benchmark 5: extraction cost per second of audio against utterance length.

Self-attention is quadratic in length; the encoder splits inputs longer than `sequence_length`
stacked frames into torch.chunk pieces (today's S3PRL behaviour), after which cost grows linearly.
Each length is timed with chunking at the checkpoint's size and without chunking.
"""
from __future__ import annotations

from pathlib import Path

import torch

from s3prl.bench.common import make_transformer_ckpt, synth_wav, timed


def bench_scaling(work: Path, *, lengths=(5, 10, 20, 40, 80), size: str = "base", sequence_length: int = 1500,
                  unchunked_max_s: float = 40.0, repeats: int = 1, seed: int = 4) -> dict:
    from s3prl.upstream.hub import load_upstream

    ckpt = make_transformer_ckpt(Path(work) / f"scaling_{size}.ckpt", size=size, seed=seed,
                                 sequence_length=sequence_length)
    up = load_upstream(ckpt)
    rows = []
    for s in lengths:
        w = torch.from_numpy(synth_wav(float(s), seed + int(s)))
        row = {"seconds": s, "frames": 1 + (len(w) - 400) // 160}
        for name, seq in (("chunked", sequence_length), ("unchunked", 0)):
            if name == "unchunked" and s > unchunked_max_s:
                continue
            up.sequence_length = seq
            dt = timed(lambda: up([w]), repeats=repeats, warmup=1 if s <= 10 else 0)
            row[f"{name}_ms_per_audio_s"] = 1000.0 * dt / s
        rows.append(row)
    up.sequence_length = sequence_length
    return {"model": size, "sequence_length": sequence_length, "rows": rows}
