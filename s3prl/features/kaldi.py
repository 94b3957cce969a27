"""Kaldi-compatible fbank and MFCC via ``torchaudio.compliance.kaldi``.

`fbank` matches ``compute-fbank-feats`` and `mfcc` matches ``compute-mfcc-feats`` with the same
options (Kaldi src/featbin/compute-fbank-feats.cc, src/feat/feature-fbank.cc, feature-window.cc):
the waveform is scaled to the int16 range as Kaldi reads it, `sample_frequency` and `dither` are
always passed, and `energy_floor` defaults to Kaldi's 0.
Input shorter than one window gives zero frames (torchaudio asserts instead; Kaldi warns and
skips the utterance).

`compute_fbank_batch` frames a list of utterances at once and runs one FFT over all frames; it
repeats torchaudio's per-frame steps in the same order (DC removal, pre-emphasis against the
frame's first sample, povey window, zero padding to a power of two, power spectrum, mel, log
floored at float epsilon). Those steps are row-wise and the mel matmul runs per utterance with
torchaudio's shapes, so its output is bit-identical to per-utterance `fbank` (tested with 1 and 2
threads, tests/features/test_features.py).
"""
from __future__ import annotations

import torch
import torchaudio.compliance.kaldi as ta_kaldi

from s3prl.features.config import FeatureConfig

INT16_SCALE = 32768.0


def _kaldi_kwargs(cfg: FeatureConfig) -> dict:
    return dict(
        sample_frequency=float(cfg.sample_rate),
        frame_length=cfg.frame_length,
        frame_shift=cfg.frame_shift,
        dither=cfg.dither,
        preemphasis_coefficient=cfg.preemphasis_coefficient,
        remove_dc_offset=cfg.remove_dc_offset,
        window_type=cfg.window_type,
        snip_edges=cfg.snip_edges,
        use_energy=cfg.use_energy,
        energy_floor=cfg.energy_floor,
        raw_energy=cfg.raw_energy,
        low_freq=cfg.low_freq,
        high_freq=cfg.high_freq,
        num_mel_bins=cfg.num_mel_bins,
    )


def _prepare(wav: torch.Tensor) -> torch.Tensor:
    return (wav.to(torch.float32) * INT16_SCALE).unsqueeze(0)


def fbank(wav: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Log mel filterbank (T, num_mel_bins [+1 with use_energy]) from (N,) float samples in [-1, 1]."""
    dim = cfg.num_mel_bins + int(cfg.use_energy)
    if wav.shape[0] < cfg.window_samples():
        return torch.zeros((0, dim))
    return ta_kaldi.fbank(_prepare(wav), use_log_fbank=True, use_power=True, **_kaldi_kwargs(cfg))


def mfcc(wav: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """MFCC (T, num_ceps) from (N,) float samples in [-1, 1] (C0 = log energy with use_energy)."""
    if wav.shape[0] < cfg.window_samples():
        return torch.zeros((0, cfg.num_ceps))
    return ta_kaldi.mfcc(_prepare(wav), num_ceps=cfg.num_ceps, cepstral_lifter=cfg.cepstral_lifter,
                         **_kaldi_kwargs(cfg))


def _frames(wav: torch.Tensor, L: int, S: int, snip_edges: bool) -> torch.Tensor:
    """(m, L) frames exactly as torchaudio's _get_strided (reflection padding without snip-edges)."""
    N = wav.shape[0]
    if snip_edges:
        m = 1 + (N - L) // S
        return wav.as_strided((m, L), (S, 1))
    m = (N + S // 2) // S
    pad = L // 2 - S // 2
    rev = torch.flip(wav, (0,))
    if pad > 0:
        padded = torch.cat((rev[-pad:], wav, rev), dim=0)
    else:
        padded = torch.cat((wav[-pad:], rev), dim=0)
    return padded.as_strided((m, L), (S, 1))


def compute_fbank_batch(wavs: list, cfg: FeatureConfig) -> list[torch.Tensor]:
    """Fbank for several utterances in one FFT; returns a list of (T_i, num_mel_bins).

    Bit-identical to ``[fbank(w, cfg) for w in wavs]``. Requires dither 0 (the noise
    of the per-utterance path comes from the global RNG in a per-utterance order) and
    use_energy false; otherwise it falls back to per-utterance calls.
    """
    tensors = [torch.as_tensor(w).to(torch.float32) for w in wavs]
    if cfg.dither != 0.0 or cfg.use_energy or cfg.feat_type != "fbank":
        return [fbank(w, cfg) for w in tensors]
    L, S = cfg.window_samples(), cfg.shift_samples()
    frames, counts = [], []
    for w in tensors:
        if w.shape[0] < L:
            counts.append(0)
            continue
        f = _frames(w * INT16_SCALE, L, S, cfg.snip_edges)
        frames.append(f)
        counts.append(f.shape[0])
    if not frames:
        return [torch.zeros((0, cfg.num_mel_bins)) for _ in tensors]
    x = torch.cat(frames, dim=0)
    if cfg.remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    if cfg.preemphasis_coefficient != 0.0:
        prev = torch.nn.functional.pad(x.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
        x = x - cfg.preemphasis_coefficient * prev[:, :-1]
    window = ta_kaldi._feature_window_function(cfg.window_type, L, 0.42, x.device, x.dtype)
    x = x * window.unsqueeze(0)
    n_fft = 1 << (L - 1).bit_length()
    if n_fft != L:
        x = torch.nn.functional.pad(x, (0, n_fft - L))
    power = torch.fft.rfft(x).abs().pow(2.0)
    mel, _ = ta_kaldi.get_mel_banks(cfg.num_mel_bins, n_fft, float(cfg.sample_rate), cfg.low_freq,
                                    cfg.high_freq, 100.0, -500.0, 1.0)
    mel = torch.nn.functional.pad(mel.to(x.dtype), (0, 1), mode="constant", value=0)
    # The mel matmul runs per utterance, on exactly the (T_i, n_fft/2+1) x (n_fft/2+1, bins)
    # shapes of torchaudio's per-utterance call: a BLAS kernel may round a row differently when
    # it sits in a product of another shape (other blocking, or a gemv path for few rows), so
    # one matmul over all frames is equal only within float rounding. Everything before it is
    # row-wise, so each utterance's frames go through the same operations as alone.
    mel_t = mel.T
    eps = ta_kaldi._get_epsilon(x.device, x.dtype)
    out, pos = [], 0
    for c in counts:
        if c:
            out.append(torch.max(torch.mm(power[pos:pos + c], mel_t), eps).log())
        else:
            out.append(torch.zeros((0, cfg.num_mel_bins)))
        pos += c
    return out
