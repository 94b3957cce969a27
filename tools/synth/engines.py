"""Speech synthesizers with exact phone timings: espeak-ng, flite clustergen and festival -> hts_engine.

Every engine call returns ``(waveform, segments)``: a float32 waveform at 16 kHz and a list of
``(phone, start_sample, end_sample)`` with ARPAbet phones of ``phones.PHONES``, in samples of the
returned waveform. The timings come from the synthesizers themselves (docs/synthetic-corpus.md §1):

* **espeak-ng** (``libespeak-ng1``, C API via ctypes): ``espeakEVENT_PHONEME`` events carry the
  sample index at 22050 Hz. Four deterministic fix-ups turn espeak's conventions into dictionary
  style segments (`fix_espeak_segments`). Speakers are generated voice variant files.
* **flite** 2.2 clustergen voices (awb, rms, slt): ``-psdur`` prints each segment's end time.
  F0/formants are shifted by resampling (the time warp is exactly known), since flite's f0
  options do nothing for clustergen voices.
* **HTS**: festival (front end, CMU lexicon) dumps full-context labels, the ``hts_engine`` CLI
  renders them with festvox-us-slt-hts and writes state durations (``-od``, 5 ms frames).

Resampling uses `scipy.signal.resample_poly` with a rational ratio, so segment times scale by an
exactly known factor. Nothing here draws random numbers: callers pass every parameter.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from phones import (ESPEAK_PAUSES, ESPEAK_STOPS, ESPEAK_VOWEL_SYMBOLS, SR, map_espeak, map_festival,
                    split_segment)

try:  # inside the repository the project's one-line error type; standalone a plain exception
    from s3prl.errors import UserError
except ImportError:  # pragma: no cover
    class UserError(Exception):
        pass

ENGINES = ("hts", "flite", "espeak")
ESPEAK_DATA = "/usr/lib/x86_64-linux-gnu/espeak-ng-data"
ESPEAK_LIB = "libespeak-ng.so.1"
HTS_VOICE = "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts/hts/cmu_us_slt_arctic_hts.htsvoice"
FLITE_VOICES = ("awb", "rms", "slt")
ESPEAK_ACCENTS = ("en-us", "en-us-nyc", "en-gb-x-rp", "en-gb-scotland")
# espeak's voice list holds at most 349 entries, 131 of them language files in 1.51
# (docs/synthetic-corpus.md §1.1)
MAX_ESPEAK_VARIANTS = 200

Segments = list[tuple[str, int, int]]


# ------------------------------------------------------------------ availability
def _have_lib(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def _requirements(engine: str) -> list[tuple[bool, str, str]]:
    """(present?, what, apt package) for each thing `engine` needs."""
    if engine == "hts":
        return [(shutil.which("festival") is not None, "festival", "festival"),
                (os.path.isdir("/usr/share/festival/dicts/cmu"), "the CMU lexicon for festival", "festlex-cmu"),
                (os.path.isfile(HTS_VOICE), HTS_VOICE, "festvox-us-slt-hts"),
                (shutil.which("hts_engine") is not None, "hts_engine", "htsengine")]
    if engine == "flite":
        return [(shutil.which("flite") is not None, "flite", "flite")]
    if engine == "espeak":
        return [(_have_lib(ESPEAK_LIB), ESPEAK_LIB, "libespeak-ng1"),
                (os.path.isfile(os.path.join(ESPEAK_DATA, "phontab")), ESPEAK_DATA, "espeak-ng-data")]
    raise UserError(f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")


def check_engines(engines: list[str] | tuple[str, ...]) -> None:
    """Raise UserError naming the apt package to install if an engine's binary/data is missing."""
    for engine in engines:
        for ok, what, pkg in _requirements(engine):
            if not ok:
                raise UserError(f"engine '{engine}' needs {what}: install it with `apt-get install {pkg}`")


def package_versions() -> dict[str, str]:
    """Installed Debian versions of the TTS packages (output is bit-exact only for the same ones)."""
    pkgs = ["festival", "festlex-cmu", "festvox-us-slt-hts", "htsengine", "flite", "espeak-ng-data", "libespeak-ng1"]
    out = {}
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", p], capture_output=True, text=True)
        out[p] = r.stdout.strip() if r.returncode == 0 else "not installed"
    return out


# ------------------------------------------------------------------ shared signal helpers
def resample_to_16k(x: np.ndarray, sr_in: int, speed: float = 1.0) -> tuple[np.ndarray, float]:
    """Resample `x` (recorded at `sr_in`) to 16 kHz; `speed` > 1 also plays it faster (treating it as
    recorded at ``sr_in * speed``), which raises F0 and formants by `speed`.

    Returns ``(y, scale)``: output sample = input sample index * `scale` (exact ratio used)."""
    ratio = Fraction(SR, 1) / (Fraction(sr_in) * Fraction(speed).limit_denominator(400))
    ratio = ratio.limit_denominator(2000)
    if ratio == 1:
        return x.astype(np.float32), 1.0
    y = signal.resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator)
    return y.astype(np.float32), float(ratio)


def _to_samples(segs_sec: list[tuple[list[str], float, float]], sr_in: int, scale: float, n: int) -> Segments:
    """[(phones, start_s, end_s)] at the engine's rate -> [(phone, start, end)] in output samples."""
    out: Segments = []
    for phones, s, e in segs_sec:
        for ph, a, b in split_segment(phones, s * sr_in * scale, e * sr_in * scale):
            a, b = min(int(round(a)), n), min(int(round(b)), n)
            if b > a:
                out.append((ph, a, b))
    return out


# ------------------------------------------------------------------ HTS (festival front end + hts_engine)
_FESTIVAL_DUMP = r"""
(voice_cmu_us_slt_arctic_hts)
(define (dumplab text fn)
  (let ((u (eval (list (quote Utterance) (quote Text) text))))
    (Initialize u) (Text u) (Token_POS u) (Token u) (POS u) (Phrasify u) (Word u) (Pauses u)
    (Intonation u) (PostLex u) (Duration u) (Int_Targets u)
    (let ((fd (fopen fn "w")))
      (mapcar (lambda (l) (format fd "%s\n" l)) (hts_dump_feats_string_list u hts_feats_list))
      (fclose fd))))
"""


def festival_labels(texts: list[str], workdir: str | Path, prefix: str = "u") -> list[Path]:
    """Full-context HTS labels for `texts`, one festival process for the whole batch.

    The front-end modules run up to Int_Targets (no Wave_Synth); labels are written by
    ``hts_dump_feats_string_list`` exactly as festival's own HTS module would pass them."""
    workdir = Path(workdir)
    scm = workdir / f"{prefix}_dump.scm"
    labs = [workdir / f"{prefix}{i:05d}.lab" for i in range(len(texts))]
    with open(scm, "w", encoding="utf-8") as f:
        f.write(_FESTIVAL_DUMP)
        for t, lab in zip(texts, labs):
            clean = t.replace("\\", " ").replace('"', " ")
            f.write(f'(dumplab "{clean}" "{lab}")\n')
    r = subprocess.run(["festival", "-b", str(scm)], capture_output=True, text=True)
    missing = [str(p) for p in labs if not p.is_file()]
    if r.returncode != 0 or missing:
        raise RuntimeError(f"festival failed on {scm}: {r.stderr.strip()[-300:]}")
    return labs


def synth_hts(label: str | Path, workdir: str | Path, alpha: float, half_tones: float, speed: float,
              gv_mgc: float, gv_lf0: float) -> tuple[np.ndarray, Segments]:
    """Render a festival label file with hts_engine and the slt voice.

    alpha: all-pass constant (frequency warp ~ vocal-tract length, voice default 0.42-0.45);
    half_tones: F0 shift (``-fm``); speed: ``-r``; gv_mgc / gv_lf0: global-variance weights
    (``-jm`` / ``-jf``). Phone times come from the state durations (``-od``)."""
    workdir = Path(workdir)
    wav, dur = workdir / "hts.wav", workdir / "hts.dur"
    cmd = ["hts_engine", "-m", HTS_VOICE, "-a", f"{alpha:.4f}", "-fm", f"{half_tones:.3f}", "-r", f"{speed:.4f}",
           "-jm", f"{gv_mgc:.3f}", "-jf", f"{gv_lf0:.3f}", "-ow", str(wav), "-od", str(dur), str(label)]
    subprocess.run(cmd, check=True, capture_output=True)
    x, sr = sf.read(str(wav), dtype="float32")
    segs = []
    with open(dur, encoding="utf-8") as f:
        for line in f:
            s, e, full = line.split()
            phone = full.split("-", 1)[1].split("+", 1)[0]  # p1^p2-CURRENT+p4=p5...
            segs.append((map_festival(phone), int(s) * 1e-7, int(e) * 1e-7))
    y, scale = resample_to_16k(x, sr)
    return y, _to_samples(segs, sr, scale, len(y))


# ------------------------------------------------------------------ flite
def synth_flite(text: str, workdir: str | Path, voice: str, duration_stretch: float,
                speed: float = 1.0) -> tuple[np.ndarray, Segments]:
    """flite clustergen `voice` with ``duration_stretch``; `speed` resamples (F0 and formants x speed,
    times / speed). Phone times from ``-psdur`` (segment end times in seconds)."""
    if voice not in FLITE_VOICES:
        raise UserError(f"unknown flite voice '{voice}' (choose from {', '.join(FLITE_VOICES)})")
    wav = Path(workdir) / "flite.wav"
    r = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.4f}", "-psdur",
                        "-t", text, "-o", str(wav)], check=True, capture_output=True, text=True)
    x, sr = sf.read(str(wav), dtype="float32")
    segs, t0 = [], 0.0
    for tok in r.stdout.split():
        phone, end = tok.rsplit(":", 1)
        segs.append((map_festival(phone), t0, float(end)))
        t0 = float(end)
    y, scale = resample_to_16k(x, sr, speed)
    return y, _to_samples(segs, sr, scale, len(y))


# ------------------------------------------------------------------ espeak-ng
def espeak_variant_text(name: str, p: dict) -> str:
    """An espeak-ng voice variant file (``voices/!v/<name>``) for the parameters `p` drawn by
    voices.py: formant scaling per formant, pitch, breath, roughness, voicing, consonant level,
    flutter, and optionally a Klatt voice source."""
    lines = ["language variant", f"name {name}", f"gender {p['gender']}",
             f"pitch {p['pitch_base']} {p['pitch_base'] + p['pitch_range']}"]
    for k in range(9):
        lines.append(f"formant {k} {p['formant'][min(k, len(p['formant']) - 1)]} "
                     f"{p['fheight'][min(k, len(p['fheight']) - 1)]} {p['fwidth']}")
    lines += ["breath " + " ".join(str(p["breath"]) for _ in range(8)), f"roughness {p['rough']}",
              f"voicing {p['voicing']}", f"consonants {p['cons']} {p['cons']}", f"flutter {p['flutter']}"]
    if p.get("klatt"):
        lines.append(f"klatt {p['klatt']}")
    return "\n".join(lines) + "\n"


def make_espeak_data(directory: str | Path, variants: dict[str, str]) -> Path:
    """A private espeak-ng data dir: symlinks to the system one, with the shipped variants replaced
    by `variants` (name -> file text). Only our variants are kept because espeak's voice list
    overflows (349 entries) and then silently resolves names to other voices."""
    if len(variants) > MAX_ESPEAK_VARIANTS:
        raise UserError(f"{len(variants)} espeak speakers: at most {MAX_ESPEAK_VARIANTS} fit in one espeak "
                        f"voice list; use fewer speakers or give --engines more hts/flite")
    dst = Path(directory) / "espeak-ng-data"
    subprocess.run(["cp", "-rs", ESPEAK_DATA, str(dst)], check=True)
    vdir = dst / "voices" / "!v"
    for f in vdir.iterdir():
        f.unlink()
    for name, text in sorted(variants.items()):
        (vdir / name).write_text(text, encoding="utf-8")
    return dst


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class _EspeakVoice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte)]


_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_AUDIO_OUTPUT_SYNCHRONOUS, _INITIALIZE_PHONEME_EVENTS = 2, 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_CHARS_UTF8 = 1


class Espeak:
    """libespeak-ng in this process (one instance per process: the library is a singleton).

    `synth` returns the raw 22050 Hz int16-scaled waveform and the phoneme events
    ``[(mnemonic, sample)]``; use `synth_espeak` for 16 kHz audio with ARPAbet segments."""

    _instance: "Espeak | None" = None

    @classmethod
    def get(cls, data_dir: str | Path) -> "Espeak":
        if cls._instance is None or cls._instance.data_dir != str(data_dir):
            cls._instance = cls(str(data_dir))
        return cls._instance

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.lib = ctypes.CDLL(ESPEAK_LIB)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_EspeakVoice)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(),
                                                      _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed for {data_dir}")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.POINTER(_EspeakEvent))
        self._callback = callback_type(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = events[i].id.split(b"\0")[0].decode("utf-8", "replace")
                self._events.append((name, events[i].sample))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        """Select ``accent+variant`` and verify espeak really loaded that language file and variant."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak cannot load voice {voice}")
        ident = self.lib.espeak_GetCurrentVoice().contents.identifier.decode()
        if not ident.lower().endswith("/" + voice.lower()):
            raise RuntimeError(f"espeak resolved voice {voice} to {ident}")

    def synth(self, text: str, voice: str, rate: float, pitch: float, prange: float) -> tuple[np.ndarray, list]:
        """rate in words/minute, pitch and range on espeak's 0-100 scale."""
        self._chunks, self._events = [], []
        self.set_voice(voice)
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_PARAM_RANGE, int(prange), 0)
        b = text.encode("utf-8")
        if self.lib.espeak_Synth(b, len(b) + 1, 0, 0, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed on {text!r}")
        self.lib.espeak_Synchronize()
        x = np.concatenate(self._chunks).astype(np.float32) / 32768.0 if self._chunks else np.zeros(0, np.float32)
        return x, list(self._events)


def fix_espeak_segments(x: np.ndarray, events: list[tuple[str, int]], accent: str,
                        sr: int) -> list[tuple[list[str], float, float]]:
    """espeak phoneme events -> ``[(arpabet_phones, start_s, end_s)]`` with the fix-ups of
    docs/synthetic-corpus.md §1.1 (checked on spectrograms):

    1. the ``;`` hiatus glide after i/I is merged into the vowel;
    2. a stop's closure (the run of exact-zero samples before its event, at most 120 ms, never
       into a pause) belongs to the stop, not to the previous phone;
    3. a zero-length liquid/nasal after a vowel gets the last 35 % of that vowel;
    4. r-coloured vowels follow the accent's rhoticity (phones.map_espeak).
    """
    xi = np.round(x * 32768).astype(np.int32)
    events = [ev for ev in events if ev[0] != ";"]
    names = [n for n, _ in events]
    starts = [s for _, s in events]
    ends = starts[1:] + [len(x)]
    for i in range(1, len(starts)):
        if names[i].rstrip(";") in ESPEAK_STOPS and names[i - 1] not in ESPEAK_PAUSES:
            j = starts[i]
            limit = max(starts[i - 1] + int(0.02 * sr), starts[i] - int(0.12 * sr))
            while j > limit and xi[j - 1] == 0:
                j -= 1
            if starts[i] - j >= int(0.005 * sr):
                starts[i] = j
                ends[i - 1] = j
    for i in range(1, len(starts)):
        if ends[i] - starts[i] < int(0.004 * sr) and names[i - 1].rstrip(";") in ESPEAK_VOWEL_SYMBOLS:
            cut = starts[i - 1] + int(0.65 * (ends[i - 1] - starts[i - 1]))
            ends[i - 1] = cut
            starts[i] = cut
    segs = []
    if starts and starts[0] > 0:
        segs.append((["SIL"], 0.0, starts[0] / sr))
    for n, s, e in zip(names, starts, ends):
        if e > s:
            segs.append((map_espeak(n, accent), s / sr, e / sr))
    return segs


def synth_espeak(text: str, data_dir: str | Path, accent: str, variant: str, rate: float, pitch: float,
                 prange: float) -> tuple[np.ndarray, Segments]:
    """espeak-ng `accent` + `variant` (a file of `make_espeak_data`'s dir) at `rate` words/minute,
    pitch/range on the 0-100 scale -> 16 kHz waveform and ARPAbet segments."""
    if accent not in ESPEAK_ACCENTS:
        raise UserError(f"unknown espeak accent '{accent}' (choose from {', '.join(ESPEAK_ACCENTS)})")
    es = Espeak.get(data_dir)
    x, events = es.synth(text, f"{accent}+{variant}", rate, pitch, prange)
    segs = fix_espeak_segments(x, events, accent, es.sample_rate)
    y, scale = resample_to_16k(x, es.sample_rate)
    return y, _to_samples(segs, es.sample_rate, scale, len(y))
