"""Feature configuration (`FeatureConfig`) and its conversion to/from S3PRL checkpoint layouts.

Feature types:

| feat_type    | what                                                       | default dim |
|--------------|------------------------------------------------------------|-------------|
| `fbank`      | Kaldi compute-fbank-feats, 80 bins, 25 ms / 10 ms           | 80          |
| `mfcc`       | Kaldi compute-mfcc-feats, 13 ceps, 23 bins + add-deltas 2   | 39          |
| `mel160`     | Mockingjay 2020 log-mel, 50 ms / 12.5 ms, 80 mels + delta   | 160         |
| `linear1025` | Mockingjay LARGE target, |STFT| n_fft 2048 in dB, [0, 1]    | 1025        |

Options keep Kaldi's names. Fields left at None take the default of the feature type in
`__post_init__` (frame_length/frame_shift 25/10 ms for Kaldi types and 50/12.5 ms for the
Mockingjay types; num_mel_bins 80, but 23 for mfcc as in Kaldi; low_freq 20 Hz for Kaldi types
and 0 for the librosa-style ones; delta_order 0 for fbank, 2 for mfcc, 1 for mel160, 0 for
linear1025; delta_window 2 (Kaldi) or 4 (librosa width 9); per_utt_cmvn true for mel160 only).

**dither defaults to 0.0** (Kaldi's default is 1.0) so features are reproducible; with dither > 0
the noise is seeded from `seed` (plus the utterance id when extracting a data dir).

Conversions for checkpoints in today's S3PRL layout (s3prl 0.4.x on PyPI, github.com/s3prl/s3prl:
`upstream/baseline/extracter.py` and `preprocessor.py` read ``Upstream_Config.audio``,
`upstream/apc/audio.py` reads APC's ``config.data.audio``): `to_s3prl_audio` / `from_s3prl_audio`
(Kaldi-style ``kaldi/delta/cmvn`` or OnlinePreprocessor style for mel160/linear1025) and
`to_apc_audio` / `from_apc_audio`. tests/upstream/test_s3prl_oracle.py runs s3prl 0.4.18 on our
files and us on its files and compares every hidden state.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal, Optional

from s3prl.errors import UserError

KALDI_TYPES = ("fbank", "mfcc")
MOCKINGJAY_TYPES = ("mel160", "linear1025")


@dataclass
class FeatureConfig:
    """Options of one feature pipeline (YAML: egs/*/conf/{fbank,mfcc,mel160,linear1025}.yaml)."""

    feat_type: Literal["fbank", "mfcc", "mel160", "linear1025"] = "fbank"
    sample_rate: int = 16000
    num_mel_bins: Optional[int] = None        # 80 (mfcc: 23)
    num_ceps: int = 13                        # mfcc only
    frame_length: Optional[float] = None      # ms: 25 (mel160/linear1025: 50)
    frame_shift: Optional[float] = None       # ms: 10 (mel160/linear1025: 12.5)
    dither: float = 0.0                       # Kaldi: 1.0; 0 here for reproducibility
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True             # Kaldi types only
    window_type: Literal["povey", "hamming", "hanning", "rectangular", "blackman"] = "povey"
    snip_edges: bool = True                   # Kaldi types only
    use_energy: bool = False
    energy_floor: float = 0.0                 # Kaldi's default (torchaudio's is 1.0)
    raw_energy: bool = True
    cepstral_lifter: float = 22.0
    low_freq: Optional[float] = None          # Hz: 20 (mel160: 0, as librosa)
    high_freq: float = 0.0                    # Hz; <= 0 is an offset from Nyquist
    n_fft: int = 2048                         # mel160 / linear1025 only
    delta_order: Optional[int] = None         # fbank 0, mfcc 2, mel160 1, linear1025 0
    delta_window: Optional[int] = None        # Kaldi 2; mel160 4 (librosa width 9)
    per_utt_cmvn: Optional[bool] = None       # mel160 true, others false
    seed: int = 0                             # dither noise

    def __post_init__(self) -> None:
        mj = self.feat_type in MOCKINGJAY_TYPES
        if self.frame_length is None:
            self.frame_length = 50.0 if mj else 25.0
        if self.frame_shift is None:
            self.frame_shift = 12.5 if mj else 10.0
        if self.num_mel_bins is None:
            self.num_mel_bins = 23 if self.feat_type == "mfcc" else 80
        if self.low_freq is None:
            self.low_freq = 0.0 if mj else 20.0
        if self.delta_order is None:
            self.delta_order = {"fbank": 0, "mfcc": 2, "mel160": 1, "linear1025": 0}[self.feat_type]
        if self.delta_window is None:
            self.delta_window = 4 if mj else 2
        if self.per_utt_cmvn is None:
            self.per_utt_cmvn = self.feat_type == "mel160"
        self.frame_length = float(self.frame_length)
        self.frame_shift = float(self.frame_shift)
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.frame_shift <= 0 or self.frame_length < self.frame_shift:
            raise ValueError(f"need 0 < frame_shift <= frame_length (got {self.frame_shift}, {self.frame_length})")
        if self.delta_order < 0 or self.delta_window < 1:
            raise ValueError(f"delta_order must be >= 0 and delta_window >= 1")
        if self.feat_type == "mfcc" and self.num_ceps > self.num_mel_bins:
            raise ValueError(f"num_ceps {self.num_ceps} > num_mel_bins {self.num_mel_bins}")
        if mj and self.n_fft < self.window_samples():
            raise ValueError(f"n_fft {self.n_fft} is shorter than the window ({self.window_samples()} samples)")

    # ----------------------------------------------------------------- framing
    def window_samples(self) -> int:
        """Window length in samples (Kaldi: int(sr * ms * 0.001))."""
        return int(self.sample_rate * self.frame_length * 0.001)

    def shift_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift * 0.001)

    def check_label_rate(self, frame_shift_ms: float = 10.0, what: str = "frame labels") -> None:
        """Refuse features whose frame rate differs from labels at `frame_shift_ms` per frame.

        mel160 (12.5 ms) with the 10 ms CPC phone labels is the known trap (S3PRL issue #44: 8 %
        accuracy), so it gets its own message.
        """
        if abs(self.frame_shift - frame_shift_ms) > 1e-9:
            hint = (" (mel160 uses a 12.5 ms hop and does not line up with the 10 ms CPC phone labels;"
                    " use fbank or another 10 ms feature)") if self.feat_type == "mel160" else ""
            raise UserError(f"feature '{self.feat_type}' has a {self.frame_shift:g} ms frame shift but the "
                            f"{what} are at {frame_shift_ms:g} ms per frame{hint}")

    # ------------------------------------------------------- S3PRL conversions
    def to_s3prl_audio(self) -> dict:
        """The ``Upstream_Config['audio']`` dict of today's S3PRL (plain values only).

        fbank/mfcc: Kaldi style; mel160/linear1025: OnlinePreprocessor style (its RMS
        normalisation to target_level is a constant log offset, removed by the per-utterance CMVN).
        """
        if self.feat_type in KALDI_TYPES:
            opts: dict[str, Any] = {
                "num_mel_bins": self.num_mel_bins,
                "frame_length": self.frame_length,
                "frame_shift": self.frame_shift,
                "dither": self.dither,
            }
            if self.feat_type == "fbank":
                opts["use_log_fbank"] = True
                opts["use_energy"] = self.use_energy
            else:
                opts["num_ceps"] = self.num_ceps
                opts["use_energy"] = self.use_energy
            for name, default in _KALDI_DEFAULTS.items():
                if getattr(self, name) != default:
                    opts[name] = getattr(self, name)
            return {
                "kaldi": {"feat_type": self.feat_type, self.feat_type: opts},
                "delta": {"order": self.delta_order, "win_length": 2 * self.delta_window + 1},
                "cmvn": {"use_cmvn": bool(self.per_utt_cmvn)},
            }
        spec = {
            "feat_type": "mel" if self.feat_type == "mel160" else "linear",
            "channel": 0,
            "log": True,
            "delta": self.delta_order,
            "cmvn": bool(self.per_utt_cmvn),
        }
        return {
            "target_level": -25,
            "win_ms": self.frame_length,
            "hop_ms": self.frame_shift,
            "n_freq": self.n_fft // 2 + 1,
            "n_mels": self.num_mel_bins,
            "n_mfcc": self.num_ceps,
            "input": spec,
        }

    @classmethod
    def from_s3prl_audio(cls, d: dict, source: str = "audio") -> "FeatureConfig":
        """Inverse of `to_s3prl_audio`; accepts both layouts, refuses what we cannot reproduce."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a mapping, got {type(d).__name__}")
        if "kaldi" in d:
            k = d["kaldi"]
            ft = k.get("feat_type", "fbank")
            if ft not in KALDI_TYPES:
                raise UserError(f"{source}.kaldi.feat_type: '{ft}' is not supported (use fbank or mfcc)")
            opts = dict(k.get(ft, {}) or {})
            if ft == "fbank" and not opts.pop("use_log_fbank", True):
                raise UserError(f"{source}.kaldi.fbank.use_log_fbank: false is not supported")
            if not opts.pop("use_power", True):
                raise UserError(f"{source}.kaldi.{ft}.use_power: false is not supported")
            if "sample_frequency" in opts:
                opts["sample_rate"] = int(opts.pop("sample_frequency"))
            kw = _take_kaldi_opts(opts, f"{source}.kaldi.{ft}")
            delta = d.get("delta", {}) or {}
            win = int(delta.get("win_length", 5))
            if win < 3 or win % 2 == 0:
                raise UserError(f"{source}.delta.win_length: {win} must be odd and >= 3")
            cmvn = d.get("cmvn", {}) or {}
            return _build(cls, source, feat_type=ft, delta_order=int(delta.get("order", 0)),
                          delta_window=(win - 1) // 2, per_utt_cmvn=bool(cmvn.get("use_cmvn", False)), **kw)
        if "input" in d:
            spec = d["input"] or {}
            ft = spec.get("feat_type")
            n_freq = int(d.get("n_freq", 1025))
            if ft == "mel":
                our = "mel160"
            elif ft == "linear":
                our = "linear1025"
            else:
                raise UserError(f"{source}.input.feat_type: '{ft}' is not supported (use mel or linear)")
            if not spec.get("log", True):
                raise UserError(f"{source}.input.log: false is not supported")
            return _build(cls, source, feat_type=our, frame_length=float(d.get("win_ms", 50)),
                          frame_shift=float(d.get("hop_ms", 12.5)), n_fft=(n_freq - 1) * 2,
                          num_mel_bins=int(d.get("n_mels", 80)), delta_order=int(spec.get("delta", 0)),
                          per_utt_cmvn=bool(spec.get("cmvn", False)))
        raise UserError(f"{source}: neither Kaldi style ('kaldi' key) nor OnlinePreprocessor style ('input' key)")

    def to_apc_audio(self) -> dict:
        """APC's ``config['data']['audio']``, as S3PRL's APC extracter reads it.

        s3prl 0.4.x `upstream/apc/audio.py` (`create_transform` / `FeatureExtractor`) pops
        ``feat_type`` (fbank only), ``feat_dim`` (= num_mel_bins), ``cmvn`` (per utterance,
        (x - mean) / (1e-10 + unbiased std)) and ``decode_wav``, and passes every other key to
        `torchaudio.compliance.kaldi.fbank` together with its fixed ``sample_frequency=16000`` and
        ``window_type="hamming"``. So a hamming window is written as no key at all (that is how
        S3PRL's files say it), and the other Kaldi options only when they differ from the
        defaults both sides share. What S3PRL's extracter cannot express (another window, mfcc,
        deltas, energy, another sample rate) is written under our own key names; such a file is
        read by this toolkit only (`apc_s3prl_incompatibility` says why; pre-training logs it).
        """
        if self.feat_type not in KALDI_TYPES:
            raise UserError(f"APC checkpoints take Kaldi features (fbank/mfcc), not '{self.feat_type}'")
        out: dict[str, Any] = {
            "feat_type": self.feat_type,
            "feat_dim": self.num_mel_bins if self.feat_type == "fbank" else self.num_ceps,
            "cmvn": bool(self.per_utt_cmvn),
            "frame_length": self.frame_length,
            "frame_shift": self.frame_shift,
            "dither": self.dither,
        }
        if self.feat_type == "mfcc":
            out["num_mel_bins"] = self.num_mel_bins
        if self.delta_order:
            out["delta_order"] = self.delta_order
            out["delta_window_size"] = self.delta_window
        if self.use_energy:
            out["use_energy"] = True
        if self.sample_rate != 16000:
            out["sample_rate"] = self.sample_rate
        if self.window_type != APC_WINDOW:
            out["window_type"] = self.window_type
        for name, default in _KALDI_DEFAULTS.items():
            if name != "window_type" and getattr(self, name) != default:
                out[name] = getattr(self, name)
        return out

    def apc_s3prl_incompatibility(self) -> str | None:
        """Why s3prl 0.4.x's `apc_local` could not reproduce these features, or None."""
        if self.feat_type != "fbank":
            return f"its APC extracter computes fbank only, not {self.feat_type}"
        if self.window_type != APC_WINDOW:
            return f"its APC extracter always uses a {APC_WINDOW} window, not {self.window_type}"
        if self.delta_order:
            return "its APC extracter adds no deltas"
        if self.use_energy:
            return "its APC extracter has no energy term"
        if self.sample_rate != 16000:
            return f"its APC extracter runs at 16 kHz, not {self.sample_rate} Hz"
        if self.cepstral_lifter != _KALDI_DEFAULTS["cepstral_lifter"]:
            return "cepstral_lifter is not an fbank option"
        return None

    @classmethod
    def from_apc_audio(cls, d: dict, source: str = "config.data.audio") -> "FeatureConfig":
        """Inverse of `to_apc_audio`: a file without ``window_type`` was written for S3PRL's
        extracter and gets its hamming window."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: expected a mapping, got {type(d).__name__}")
        opts = dict(d)
        ft = opts.pop("feat_type", "fbank")
        if ft not in KALDI_TYPES:
            raise UserError(f"{source}.feat_type: '{ft}' is not supported (use fbank or mfcc)")
        if "feat_dim" not in opts:
            raise UserError(f"{source}: missing key 'feat_dim'")
        feat_dim = int(opts.pop("feat_dim"))
        cmvn = bool(opts.pop("cmvn", opts.pop("apply_cmvn", True)))
        opts.pop("apply_cmvn", None)
        opts.pop("decode_wav", None)
        delta_order = int(opts.pop("delta_order", 0))
        delta_window = int(opts.pop("delta_window_size", 2))
        if "sample_frequency" in opts:
            opts["sample_rate"] = int(opts.pop("sample_frequency"))
        opts.setdefault("window_type", APC_WINDOW)
        if ft == "fbank":
            opts["num_mel_bins"] = feat_dim
        else:
            opts["num_ceps"] = feat_dim
        kw = _take_kaldi_opts(opts, source)
        return _build(cls, source, feat_type=ft, delta_order=delta_order, delta_window=delta_window,
                      per_utt_cmvn=cmvn, **kw)


# S3PRL's APC extracter (s3prl 0.4.x upstream/apc/audio.py WINDOW_TYPE) fixes the window.
APC_WINDOW = "hamming"

# Options written only when they differ from these (Kaldi / torchaudio agree on them).
_KALDI_DEFAULTS = {
    "preemphasis_coefficient": 0.97, "remove_dc_offset": True, "window_type": "povey",
    "snip_edges": True, "low_freq": 20.0, "high_freq": 0.0, "raw_energy": True,
    "energy_floor": 0.0, "cepstral_lifter": 22.0,
}
_KALDI_OPT_NAMES = {"num_mel_bins", "num_ceps", "frame_length", "frame_shift", "dither", "use_energy",
                    "sample_rate", *_KALDI_DEFAULTS}


def _take_kaldi_opts(opts: dict, source: str) -> dict:
    unknown = sorted(k for k in opts if k not in _KALDI_OPT_NAMES)
    if unknown:
        raise UserError(f"{source}.{unknown[0]}: option not supported (supported: {', '.join(sorted(_KALDI_OPT_NAMES))})")
    return dict(opts)


def _build(cls, source: str, **kw) -> FeatureConfig:
    from s3prl.config import ConfigError, from_dict

    try:
        return from_dict(cls, kw, source)
    except ConfigError as e:
        raise UserError(str(e)) from None



def base_dim(cfg: FeatureConfig) -> int:
    """Dimension before deltas."""
    if cfg.feat_type == "fbank":
        return cfg.num_mel_bins + int(cfg.use_energy)
    if cfg.feat_type == "mfcc":
        return cfg.num_ceps
    if cfg.feat_type == "mel160":
        return cfg.num_mel_bins
    return cfg.n_fft // 2 + 1


def feature_dim(cfg: FeatureConfig) -> int:
    """D of `compute_features` (fbank 80, mfcc 39, mel160 160, linear1025 1025 by default)."""
    return base_dim(cfg) * (cfg.delta_order + 1)


def num_frames(num_samples: int, cfg: FeatureConfig) -> int:
    """T of `compute_features` for `num_samples` samples.

    Kaldi types: 0 if shorter than a window (in both snip-edges modes), else 1 + (N - L) // S with
    snip-edges and (N + S // 2) // S without. mel160/linear1025 (centred STFT): 1 + N // hop.
    """
    if num_samples <= 0:
        return 0
    L, S = cfg.window_samples(), cfg.shift_samples()
    if cfg.feat_type in MOCKINGJAY_TYPES:
        return 1 + num_samples // S
    if num_samples < L:
        return 0
    if cfg.snip_edges:
        return 1 + (num_samples - L) // S
    return (num_samples + S // 2) // S


def frame_shift_seconds(cfg: FeatureConfig) -> float:
    return cfg.frame_shift / 1000.0


def utterance_seed(cfg: FeatureConfig, utt_id: str) -> int:
    """Seed for an utterance's dither noise: the config seed mixed with a hash of the id."""
    return (cfg.seed * 1000003 + zlib.crc32(utt_id.encode())) % (2**63)
