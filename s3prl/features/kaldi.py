"""Kaldi-compatible fbank and MFCC via ``torchaudio.compliance.kaldi``.

`fbank` matches ``compute-fbank-feats`` and `mfcc` matches ``compute-mfcc-feats`` with the same
options (Kaldi src/featbin/compute-fbank-feats.cc, src/feat/feature-fbank.cc, feature-window.cc):
the waveform is scaled to the int16 range as Kaldi reads it, `sample_frequency` and `dither` are
always passed, and `energy_floor` defaults to Kaldi's 0.
Input shorter than one window gives zero frames (torchaudio asserts instead; Kaldi warns and
skips the utterance).

`compute_fbank_batch` frames a list of utterances and runs them through the FFT in groups of about
`GROUP_FRAMES` frames (several short utterances share one call); it repeats torchaudio's per-frame
steps in the same order (DC removal, pre-emphasis against the frame's first sample, povey window,
zero padding to a power of two, power spectrum, mel, log floored at float epsilon). Those steps
are row-wise and the mel matmul runs per utterance with torchaudio's shapes, so its output is
bit-identical to per-utterance `fbank` (tested with 1 and 2 threads, tests/features).
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
    """Fbank for several utterances, a few per FFT call; returns a list of (T_i, num_mel_bins).

    Bit-identical to ``[fbank(w, cfg) for w in wavs]``. Requires dither 0 (the noise
    of the per-utterance path comes from the global RNG in a per-utterance order) and
    use_energy false; otherwise it falls back to per-utterance calls.
    """
    tensors = [torch.as_tensor(w).to(torch.float32) for w in wavs]
    if cfg.dither != 0.0 or cfg.use_energy or cfg.feat_type != "fbank":
        return [fbank(w, cfg) for w in tensors]
    L, S = cfg.window_samples(), cfg.shift_samples()
    n_fft = 1 << (L - 1).bit_length()
    window = ta_kaldi._feature_window_function(cfg.window_type, L, 0.42, torch.device("cpu"), torch.float32)
    mel, _ = ta_kaldi.get_mel_banks(cfg.num_mel_bins, n_fft, float(cfg.sample_rate), cfg.low_freq,
                                    cfg.high_freq, 100.0, -500.0, 1.0)
    mel_t = torch.nn.functional.pad(mel.to(torch.float32), (0, 1), mode="constant", value=0).T
    eps = ta_kaldi._get_epsilon(torch.device("cpu"), torch.float32)
    out: list = [None] * len(tensors)
    group: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if group:
            feats = _fbank_frames([f for _, f in group], cfg, window, n_fft, mel_t, eps)
            for (i, _), m in zip(group, feats):
                out[i] = m
            group.clear()

    n_group = 0
    for i, w in enumerate(tensors):
        if w.shape[0] < L:
            out[i] = torch.zeros((0, cfg.num_mel_bins))
            continue
        f = _frames(w * INT16_SCALE, L, S, cfg.snip_edges)
        if group and n_group + f.shape[0] > GROUP_FRAMES:
            flush()
            n_group = 0
        group.append((i, f))
        n_group += f.shape[0]
    flush()
    return out


# Frames run through one FFT together: a group this size stays in the CPU caches (frames, spectrum
# and power about 1 MB each), which one FFT over a whole batch of long utterances does not: on a
# shared 2-core machine one FFT over 32 utterances ran at 0.4x the per-utterance loop, groups of
# 128-1024 frames at 1.2-1.4x (s3prl.bench.fbank).
GROUP_FRAMES = 512


def _fbank_frames(frames: list[torch.Tensor], cfg: FeatureConfig, window: torch.Tensor, n_fft: int,
                  mel_t: torch.Tensor, eps: torch.Tensor) -> list[torch.Tensor]:
    """Log mel fbank of the framed utterances `frames` (each (T_i, L)) through one FFT."""
    counts = [f.shape[0] for f in frames]
    x = torch.cat(frames, dim=0)
    L = x.shape[1]
    if cfg.remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    if cfg.preemphasis_coefficient != 0.0:
        prev = torch.cat((x[:, :1], x[:, :-1]), dim=1)  # torchaudio's replicate pad, by slicing
        x = x - cfg.preemphasis_coefficient * prev
    x = x * window.unsqueeze(0)
    if n_fft != L:
        x = torch.nn.functional.pad(x, (0, n_fft - L))
    power = torch.fft.rfft(x).abs().pow(2.0)
    # The mel matmul runs per utterance, on exactly the (T_i, n_fft/2+1) x (n_fft/2+1, bins)
    # shapes of torchaudio's per-utterance call: a BLAS kernel may round a row differently when
    # it sits in a product of another shape (other blocking, another thread split, or a gemv
    # path for few rows), so one matmul over all frames is equal only within float rounding.
    # Everything before it is row-wise, so each utterance's frames go through the same
    # operations as alone.
    out, pos = [], 0
    for c in counts:
        out.append(torch.max(torch.mm(power[pos:pos + c], mel_t), eps).log())
        pos += c
    return out
