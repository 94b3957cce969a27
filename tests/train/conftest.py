"""Fixtures: tiny Kaldi data dirs of synthetic audio (sines + noise, 1-2 s at 16 kHz)."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def make_data_dir(root: Path, n_utts: int = 12, seed: int = 0, min_s: float = 1.0, max_s: float = 2.0) -> Path:
    """Write `root` as a Kaldi data dir (wav.scp, utt2spk, spk2utt, utt2dur) with n_utts wavs."""
    rng = np.random.default_rng(seed)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    utt2spk, wav, dur = {}, {}, {}
    for i in range(n_utts):
        spk = f"spk{i % 2}"
        utt = f"{spk}-utt{i:03d}"
        n = int(rng.uniform(min_s, max_s) * 16000)
        t = np.arange(n) / 16000
        f0 = rng.uniform(100, 300)
        # a harmonic tone with a slowly moving pitch, amplitude envelope and a little noise
        x = sum(np.sin(2 * np.pi * k * f0 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))) / k for k in range(1, 25))
        x = x * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t)) + 0.002 * rng.standard_normal(n)
        x = (0.3 * x / np.abs(x).max()).astype(np.float32)
        path = wav_dir / f"{utt}.wav"
        sf.write(path, x, 16000, subtype="PCM_16")
        utt2spk[utt], wav[utt], dur[utt] = spk, str(path), n / 16000
    utts = sorted(utt2spk)
    (root / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u in utts))
    (root / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in utts))
    (root / "utt2dur").write_text("".join(f"{u} {dur[u]:.4f}\n" for u in utts))
    spk2utt = {}
    for u in utts:
        spk2utt.setdefault(utt2spk[u], []).append(u)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(v)}\n" for s, v in sorted(spk2utt.items())))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data") / "train")
