"""Phone sets, engine-phone -> ARPAbet mappings and CPC-style frame labels.

Labels use the 41 classes of Kaldi's LibriSpeech ``data/lang/phones/sets.txt`` (SIL, SPN and the 39
ARPAbet phones without stress), in that order: 0 = SIL, 1 = SPN, 2 = AA ... 40 = ZH. The integer
mapping of the real CPC ``converted_aligned_phones.txt`` was never published, so our ids match it
only up to a permutation (docs/synthetic-corpus.md §1.2).

Frames follow Kaldi's 25 ms / 10 ms framing with snip-edges (the project's fbank): an utterance of
``n`` samples has ``1 + (n - 400) // 160`` frames and frame ``i`` takes the phone covering its
centre, sample ``160 * i + 200``.

Engine phone sets:
  * festival/flite/HTS use the radio/CMU set (aa ... zh, ax, pau): almost 1:1 (``FESTIVAL``).
  * espeak-ng phoneme mnemonics need a table (``ESPEAK_CONSONANTS``, ``ESPEAK_VOWELS``,
    ``ESPEAK_RVOWELS``); r-coloured vowels depend on the accent's rhoticity
    (docs/synthetic-corpus.md §1.1).
A symbol that maps to several ARPAbet phones is split in time: the first phone gets 60 %, the rest
share the remainder.
"""
from __future__ import annotations

import numpy as np

SR = 16000
WIN = 400  # 25 ms
HOP = 160  # 10 ms

PHONES = ["SIL", "SPN", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F",
          "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
          "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"]
PHONE_ID = {p: i for i, p in enumerate(PHONES)}

# festival / flite radio phone set: everything not listed is the upper-cased ARPAbet name
FESTIVAL = {"ax": ["AH"], "axr": ["ER"], "pau": ["SIL"], "h#": ["SIL"], "brth": ["SIL"], "ssil": ["SIL"],
            "el": ["AH", "L"], "em": ["AH", "M"], "en": ["AH", "N"], "dx": ["T"]}

ESPEAK_CONSONANTS = {
    "p": "P", "b": "B", "t": "T", "t#": "T", "t2": "T", "t[": "T", "?": "T", "d": "D", "d#": "D", "d[": "D",
    "k": "K", "g": "G", "f": "F", "v": "V", "T": "TH", "D": "DH", "s": "S", "z": "Z", "S": "SH", "Z": "ZH",
    "h": "HH", "x": "K", "m": "M", "n": "N", "n-": "N", "N": "NG", "l": "L", "l/": "L", "r": "R", "r-": "R",
    "w": "W", "w#": "W", "j": "Y", "tS": "CH", "dZ": "JH", "C": "HH", "z#": "Z", "s#": "S"}
ESPEAK_VOWELS = {
    "a": ["AE"], "aa": ["AE"], "a#": ["AH"], "A:": ["AA"], "A": ["AA"], "0": ["AA"], "O:": ["AO"], "O": ["AO"],
    "O2": ["AO"], "oU": ["OW"], "o": ["OW"], "OI": ["OY"], "V": ["AH"], "@": ["AH"], "@2": ["AH"], "@5": ["AH"],
    "@-": ["AH"], "@L": ["AH", "L"], "3:": ["ER"], "I": ["IH"], "I2": ["IH"], "I#": ["IH"], "i": ["IY"],
    "i:": ["IY"], "i@": ["IY", "AH"], "E": ["EH"], "e": ["EH"], "eI": ["EY"], "aI": ["AY"], "aI2": ["AY"],
    "aU": ["AW"], "U": ["UH"], "u:": ["UW"], "u": ["UW"], "IR": ["ER"], "VR": ["ER"], "eI@": ["EY", "ER"]}
# r-coloured vowels: rhotic accents (no explicit r symbol follows) get an R appended
ESPEAK_RVOWELS = {"A@": ["AA"], "O@": ["AO"], "o@": ["AO"], "e@": ["EH"], "i@3": ["IH"], "U@": ["UH"],
                  "aI@": ["AY", "AH"], "aI3": ["AY", "ER"], "aU@": ["AW", "AH"], "3": ["ER"]}
ESPEAK_PAUSES = {"_", "_:", "_!", "_|", "_^_", "||", "|"}
ESPEAK_STOPS = {"p", "b", "t", "d", "k", "g", "tS", "dZ", "t2", "t#", "?", "t[", "d["}
ESPEAK_VOWEL_SYMBOLS = set(ESPEAK_VOWELS) | set(ESPEAK_RVOWELS)
RHOTIC_ACCENTS = {"en-us", "en-us-nyc"}


def map_festival(phone: str) -> list[str]:
    """A festival/flite/HTS phone name -> ARPAbet phones (SPN if unknown)."""
    if phone in FESTIVAL:
        return FESTIVAL[phone]
    up = phone.upper()
    return [up] if up in PHONE_ID else ["SPN"]


def map_espeak(symbol: str, accent: str) -> list[str]:
    """An espeak-ng phoneme mnemonic -> ARPAbet phones for `accent` (SPN if unknown)."""
    n = symbol.rstrip(";")
    if n in ESPEAK_PAUSES:
        return ["SIL"]
    if n in ESPEAK_CONSONANTS:
        return [ESPEAK_CONSONANTS[n]]
    if n in ESPEAK_VOWELS:
        return ESPEAK_VOWELS[n]
    if n in ESPEAK_RVOWELS:
        base = ESPEAK_RVOWELS[n]
        if accent in RHOTIC_ACCENTS:
            return base if n in ("3", "aI3") else base + ["R"]
        if n == "3":  # non-rhotic "butter" schwa
            return ["AH"]
        return base
    return ["SPN"]


def split_segment(phones: list[str], start: float, end: float) -> list[tuple[str, float, float]]:
    """Spread a multi-phone symbol over [start, end): first phone 60 %, the rest share the remainder."""
    if len(phones) == 1:
        return [(phones[0], start, end)]
    cut = start + 0.6 * (end - start)
    k = len(phones) - 1
    step = (end - cut) / k
    return [(phones[0], start, cut)] + [(p, cut + j * step, cut + (j + 1) * step) for j, p in enumerate(phones[1:])]


def num_frames(num_samples: int) -> int:
    """Kaldi snip-edges frame count for 25 ms windows every 10 ms at 16 kHz."""
    return 0 if num_samples < WIN else 1 + (num_samples - WIN) // HOP


def frame_labels(segments: list[tuple[str, int, int]], num_samples: int) -> np.ndarray:
    """Phone ids (int16, shape (num_frames,)) of `segments` = [(phone, start, end)] in samples at
    16 kHz; frame i gets the segment whose [start, end) holds sample 160 i + 200, else SIL."""
    n = num_frames(num_samples)
    centres = np.arange(n) * HOP + WIN // 2
    lab = np.full(n, PHONE_ID["SIL"], dtype=np.int16)
    for phone, s, e in segments:
        i0, i1 = np.searchsorted(centres, s, side="left"), np.searchsorted(centres, e, side="left")
        lab[i0:i1] = PHONE_ID[phone]
    return lab
