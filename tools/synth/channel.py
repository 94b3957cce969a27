"""Recording-session effects for synthetic speech: channel filter, room, noise, padding, gain.

Each chapter (a LibriSpeech "recording session") gets one `ChannelParams`: a zero-phase Butterworth
band-pass, a zero-phase first-order spectral tilt, optionally a synthetic exponential-decay room
impulse response with its direct path at t = 0, and a mean SNR (docs/synthetic-corpus.md §2). Every
utterance then gets pink-ish noise at that SNR +-5 dB, 0.1-0.45 s leading and trailing silence and
a random gain. Nothing here moves phone boundaries: all filters are zero-phase or causal with the
direct path at sample 0, and the leading pad is returned so segments can be shifted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from phones import SR


@dataclass
class ChannelParams:
    hp: float        # band-pass lower edge, Hz
    lp: float        # band-pass upper edge, Hz
    tilt: float      # first-order pre/de-emphasis coefficient (+ brightens, - darkens)
    rt60: float      # room reverberation time in s, 0 = no room
    snr_mid: float   # chapter mean SNR in dB

    def to_dict(self) -> dict:
        return asdict(self)


def draw_channel(rng: np.random.Generator) -> ChannelParams:
    """One recording session: HP 40-250 Hz, LP 4.5-7.8 kHz, tilt +-0.6, a room (RT60 0.15-0.6 s)
    for half of the sessions, mean SNR 15-35 dB."""
    tilt = float(rng.uniform(-0.6, 0.6))
    lp = float(rng.uniform(4500, 7800))
    hp = float(rng.uniform(40, 250))
    rt60 = float(rng.uniform(0.15, 0.6)) if rng.random() < 0.5 else 0.0
    snr = float(rng.uniform(15, 35))
    return ChannelParams(hp=hp, lp=lp, tilt=tilt, rt60=rt60, snr_mid=snr)


def room_impulse_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Exponentially decaying Gaussian tail (-60 dB after `rt60` s) after a unit direct path at t=0
    and a 2 ms gap: shape (rt60 * 16000,)."""
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 0.3
    h[: int(0.002 * SR)] = 0.0
    h[0] = 1.0
    return h


def apply_channel(y: np.ndarray, ch: ChannelParams, room_rng: np.random.Generator,
                  rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Apply the session `ch` to the 16 kHz waveform `y` (shape (n,)).

    `room_rng` draws the room impulse response and must be seeded per chapter, so a chapter keeps
    one room; `rng` draws the per-utterance padding, SNR, noise and gain.
    Returns the float32 waveform (shape (lead + n + trail,)) and `lead`, the samples prepended."""
    x = np.asarray(y, dtype=np.float64)
    sos = signal.butter(2, [ch.hp, ch.lp], btype="band", fs=SR, output="sos")
    x = signal.sosfiltfilt(sos, x)
    x = signal.filtfilt([1.0, -ch.tilt], [1.0], x)
    if ch.rt60 > 0:
        x = signal.fftconvolve(x, room_impulse_response(room_rng, ch.rt60))[: len(x)]
    lead, trail = int(rng.uniform(0.1, 0.45) * SR), int(rng.uniform(0.1, 0.45) * SR)
    x = np.concatenate([np.zeros(lead), x, np.zeros(trail)])
    snr = ch.snr_mid + rng.uniform(-5, 5)
    # integrated white noise with a leaky differentiator: about 1/f over the speech band
    noise = signal.filtfilt([1.0, -1.0], [1.0, -0.97], np.cumsum(rng.standard_normal(len(x))))
    noise -= noise.mean()
    p_speech = np.mean(x[lead:len(x) - trail] ** 2) + 1e-12
    x = x + noise * np.sqrt(p_speech / (np.mean(noise ** 2) * 10 ** (snr / 10)))
    x = x / (np.max(np.abs(x)) + 1e-9) * rng.uniform(0.3, 0.9)
    return x.astype(np.float32), lead
