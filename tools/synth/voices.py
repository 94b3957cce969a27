"""Synthetic speakers: per-speaker parameter draws and per-utterance rendering with jitter.

A `Speaker` is one engine plus parameters drawn once from a seeded generator
(docs/synthetic-corpus.md §2), and one `channel.ChannelParams` per recording session (chapter).
`difficulty` scales how far apart speakers are drawn (1 = the prototype's spread; the recommended
0.5 halves the ranges):

* hts: all-pass alpha 0.45 + d*U(-0.06, 0.05) (-0.02 for male), F0 shift U(-3, 2.5) half-tones
  (female) or U(-11, -6) (male) scaled by 0.5 + 0.5 d, speed 0.85-1.15, GV weights.
  Per utterance: F0 +-1 half-tone, speed +-6 %.
* flite: voice awb/rms/slt (round robin), resampling factor 1 + d*U(-0.12, 0.12) shifting F0 and
  formants together, duration stretch U(0.9, 1.15) x factor. Per utterance: factor x 2^(+-0.5/12),
  stretch +-6 %.
* espeak: accent en-us/en-us-nyc/en-gb-x-rp/en-gb-scotland (round robin) and a generated variant
  file (formants scaled 0.88-1.18 by sex, pitch, breath, roughness, Klatt source in 2/5 of speakers),
  rate 140-190 wpm. Per utterance: rate +-7 %, pitch/range +-8/+-10 on the 0-100 scale.

`SpeakerVoice.render` returns clean 16 kHz audio with exact ARPAbet segments; session effects are
applied by channel.apply_channel. Other corpus generators reuse this module as it is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import engines
from channel import ChannelParams, draw_channel


@dataclass
class Speaker:
    id: int
    engine: str
    sex: str                      # "F" or "M"
    params: dict                  # engine parameters (json-serialisable)
    channels: list[ChannelParams] = field(default_factory=list)  # one per recording session

    @property
    def espeak_variant(self) -> str:
        return f"s{self.id}"

    def params_json(self) -> str:
        return json.dumps({"engine": self.params, "channels": [c.to_dict() for c in self.channels]},
                          sort_keys=True, separators=(",", ":"))


def draw_speaker(rng: np.random.Generator, spk_id: int, engine: str, engine_index: int,
                 difficulty: float, sessions: int) -> Speaker:
    """Draw one speaker of `engine`; `engine_index` (the speaker's rank among this engine's speakers)
    picks the flite voice / espeak accent round robin so every family is represented."""
    d = difficulty
    if engine == "hts":
        female = bool(rng.random() < 0.5)
        p = {"alpha": 0.45 + d * rng.uniform(-0.06, 0.05) + (0.0 if female else -0.02),
             "half_tones": (rng.uniform(-3, 2.5) if female else rng.uniform(-11, -6)) * (0.5 + 0.5 * d),
             "speed": rng.uniform(0.85, 1.15), "gv_mgc": rng.uniform(0.7, 1.2), "gv_lf0": rng.uniform(0.6, 1.3)}
        sex = "F" if female else "M"
    elif engine == "flite":
        voice = engines.FLITE_VOICES[engine_index % len(engines.FLITE_VOICES)]
        p = {"voice": voice, "speed": 1.0 + d * rng.uniform(-0.12, 0.12), "stretch": rng.uniform(0.9, 1.15)}
        sex = "F" if voice == "slt" else "M"
    elif engine == "espeak":
        female = bool(rng.random() < 0.5)
        scale = rng.uniform(1.04, 1.18) if female else rng.uniform(0.88, 1.02)
        formant = [int(round(100 * (1 + d * (scale - 1)) * rng.uniform(0.97, 1.03))) for _ in range(6)]
        pitch_base = int(rng.uniform(150, 215) if female else rng.uniform(75, 125))
        p = {"accent": engines.ESPEAK_ACCENTS[engine_index % len(engines.ESPEAK_ACCENTS)],
             "gender": "female" if female else "male", "pitch_base": pitch_base,
             "pitch_range": int(rng.uniform(0.4, 1.0) * pitch_base), "formant": formant,
             "fheight": [int(rng.uniform(80, 120)) for _ in range(4)], "fwidth": int(rng.uniform(80, 150)),
             "breath": int(rng.choice([0, 0, 1, 2, 3])), "rough": int(rng.integers(0, 4)),
             "voicing": int(rng.uniform(80, 120)), "cons": int(rng.uniform(80, 120)),
             "flutter": int(rng.integers(0, 6)), "rate": int(rng.uniform(140, 190)),
             "klatt": int(rng.choice([0, 0, 0, 3, 4]))}
        sex = "F" if female else "M"
    else:
        raise engines.UserError(f"unknown engine '{engine}' (choose from {', '.join(engines.ENGINES)})")
    p = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in p.items()}
    channels = [draw_channel(rng) for _ in range(sessions)]
    return Speaker(id=int(spk_id), engine=engine, sex=sex, params=p, channels=channels)


def espeak_variants(speakers: list[Speaker]) -> dict[str, str]:
    """Variant files (name -> text) of the espeak speakers, for engines.make_espeak_data."""
    return {s.espeak_variant: engines.espeak_variant_text(s.espeak_variant, s.params)
            for s in speakers if s.engine == "espeak"}


class SpeakerVoice:
    """Renders texts in one speaker's voice, with per-utterance jitter drawn from the caller's rng.

    workdir: a private scratch directory (engines write their temporary files there);
    espeak_data: the data dir from engines.make_espeak_data holding this speaker's variant."""

    def __init__(self, speaker: Speaker, workdir: str | Path, espeak_data: str | Path | None = None):
        if speaker.engine == "espeak" and espeak_data is None:
            raise ValueError("an espeak speaker needs espeak_data")
        self.speaker = speaker
        self.workdir = Path(workdir)
        self.espeak_data = espeak_data
        self._batches = 0

    def render(self, texts: list[str], rng: np.random.Generator) -> list[tuple[np.ndarray, list]]:
        """Synthesize `texts` -> [(waveform (n,) float32 at 16 kHz, [(phone, start, end)])].

        HTS texts go through festival as one batch (one process start for all of them)."""
        sp, p = self.speaker, self.speaker.params
        out = []
        if sp.engine == "hts":
            labels = engines.festival_labels(texts, self.workdir, prefix=f"b{self._batches}_")
            self._batches += 1
            for lab in labels:
                out.append(engines.synth_hts(lab, self.workdir, alpha=p["alpha"],
                                             half_tones=p["half_tones"] + rng.uniform(-1, 1),
                                             speed=p["speed"] * rng.uniform(0.94, 1.06),
                                             gv_mgc=p["gv_mgc"], gv_lf0=p["gv_lf0"]))
        elif sp.engine == "flite":
            for text in texts:
                stretch = p["stretch"] * p["speed"] * rng.uniform(0.94, 1.06)
                speed = p["speed"] * 2 ** (rng.uniform(-0.5, 0.5) / 12)
                out.append(engines.synth_flite(text, self.workdir, p["voice"], stretch, speed))
        else:
            for text in texts:
                rate = p["rate"] * rng.uniform(0.93, 1.07)
                pitch, prange = 50 + rng.uniform(-8, 8), 50 + rng.uniform(-10, 10)
                out.append(engines.synth_espeak(text, self.espeak_data, p["accent"], sp.espeak_variant,
                                                rate, pitch, prange))
        return out
