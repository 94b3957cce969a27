"""The hybrid DNN/HMM hand-off: write a complete PyTorch-Kaldi experiment cfg over our features.

PyTorch-Kaldi (Ravanelli et al., ICASSP 2019, github.com/mravanelli/pytorch-kaldi) trains a
frame classifier on Kaldi features against Kaldi GMM/DNN alignments and decodes with a Kaldi
graph. Its experiment is an INI file (configparser) checked against `proto/global.proto`; the
sections and fields written here follow PyTorch-Kaldi's `proto/*.proto` and
`cfg/TIMIT_baselines/*.cfg` (github.com/mravanelli/pytorch-kaldi, commit 9773257):

- `[cfg_proto]`, `[exp]` (out_folder, seed, use_cuda, multi_gpu, save_gpumem, n_epochs_tr, ...)
- `[dataset1..3]` train / dev / test: `fea` = our dumped `feats.scp` (`fea_lst`, absolute path)
  with `fea_opts` = `apply-cmvn [--norm-vars=true] --utt2spk=ark:UTT2SPK scp:CMVN.scp ark:- ark:- |
  add-deltas --delta-order=N ark:- ark:- |` (our per-speaker cmvn.scp), `cw_left`/`cw_right`;
  `n_chunks` sized from the set (`resolve_n_chunks`; a count that leaves one of PyTorch-Kaldi's
  chunk lists empty is refused); `lab` = `lab_cd` from `ali-to-pdf` over the alignment dir
  (`lab_count_file=auto` for the priors), optionally `lab_mono` from `ali-to-phones
  --per-frame=true`; `lab_data_folder` (the data dir whose `text` scores the WER) and
  `lab_graph` (the HCLG graph dir).
- `[data_use]`, `[batches]`, `[architectureN]` (an MLP over the features by default, or our
  `s3prl.downstream.pk_arch.S3PRLUpstream` under it to fine-tune an upstream on acoustic
  features: the role of the 2020 S3PRL `nn_transformer.py`), `[model]` (the op graph),
  `[forward]` (posteriors / priors for decoding), `[decoding]` (`decode_dnn.sh` options).

Upstream input (`type: upstream`): the architecture must see what the checkpoint was trained on,
`s3prl.features.compute_features` with its audio section (base features, then deltas, then
per-utterance CMVN). Over a dump of the plain base features (utils/compute_feats.sh, its
conf/feats.yaml checked against the checkpoint's options) `fea_opts` is
`add-deltas --delta-order=N --delta-window=W ark:- ark:- | apply-cmvn --norm-vars=true
scp:STATS ark:- ark:- |` with the checkpoint's deltas and per-utterance stats written here
(`utterance_cmvn_stats`: they make Kaldi's apply-cmvn compute the hub's (x - mean) / (std + eps)).
The chain runs on whole utterances before PyTorch-Kaldi cuts long ones to max_seq_length, so
training pieces are normalised with their utterance's statistics, as on the hub. No speaker CMVN.
Checkpoints trained on external features (no audio section) take feats.scp as configured.

Scoring: `decode_dnn.sh` cds into `kaldi_decoding_scripts/` and runs `scoring_script <data>
<graph> <decode-dir>` with `<data>` = the decoded set's `lab_data_folder`, which must hold
feats.scp and text. A relative scorer is one of PyTorch-Kaldi's own scripts; its `local/score.sh`
(our default) is the **TIMIT** phone scorer and also reads `<data>/stm` and `<data>/glm`
(s3prl.data.timit writes them). Word-level corpora name Kaldi's scorer of their recipe, e.g.
`$KALDI_ROOT/egs/librispeech/s5/local/score.sh` (what PyTorch-Kaldi's LibriSpeech cfgs use);
a leading `$KALDI_ROOT` is the one variable resolved here, from `kaldi_root`.

Refused combinations, which PyTorch-Kaldi accepts and then fails on (or silently gets wrong):
`type: upstream` with deltas or a context window (the chain adds the upstream's own deltas), with
speaker CMVN over a checkpoint with an audio section, with
`exp.multi_gpu` (DataParallel splits dim 0, the time axis of sequential input), and
`exp.use_cuda: false` (run_exp.py then forwards in subprocesses with dict batches, which the
`run_nn.py` script we name cannot read).

PyTorch-Kaldi takes paths literally (no `$VAR`, relative paths break when its CWD changes:
pytorch-kaldi#197), so every path written is absolute; its `fea_name` may hold only [A-Za-z0-9].
The options come from a YAML file mapped onto `PyTorchKaldiConfig` (egs/*/conf/pytorch_kaldi.yaml),
never from hand edits of the cfg.
"""
from __future__ import annotations

import configparser
import io
import logging
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from s3prl.errors import UserError

PK_ARCH_PROTO = Path(__file__).resolve().with_name("pk_arch.proto")
PK_ARCH_LIBRARY = "s3prl.downstream.pk_arch"
PK_ARCH_CLASS = "S3PRLUpstream"
# PyTorch-Kaldi's TIMIT scorers (kaldi_decoding_scripts/local/): besides <data>/text they read
# <data>/stm and <data>/glm, the sclite reference Kaldi's egs/timit/s5 data prep writes.
PK_STM_SCORERS = ("local/score.sh", "local/score_sclite.sh", "local/score_phrich.sh",
                  "local/score_combine.sh")


# ----------------------------------------------------------------------------------- configs
@dataclass
class ExpConfig:
    """`[exp]`: PyTorch-Kaldi's run settings."""

    cmd: str = ""                      # prefix to submit the chunk jobs (HPC), "" = local
    seed: int = 1234
    use_cuda: bool = True
    multi_gpu: bool = False
    save_gpumem: bool = False
    n_epochs_tr: int = 24

    def __post_init__(self) -> None:
        if self.n_epochs_tr < 1:
            raise ValueError(f"n_epochs_tr must be >= 1, got {self.n_epochs_tr}")


@dataclass
class DataConfig:
    """`[datasetN]` / `[data_use]` naming and chunking.

    PyTorch-Kaldi loads one chunk of a set into memory at a time: its create_lists shuffles the
    feats.scp lines and splits them into `n_chunks` lists (utils.split_chunks), so a set needs at
    least as many utterances as chunks (an empty list crashes the chunk's job). n_chunks_* = 0
    sizes each set from its data: ceil(frames / max_chunk_frames), at most one chunk per
    utterance. The default 720000 frames (2 h of 10 ms frames) is what PyTorch-Kaldi's
    cfg/Librispeech_baselines use for train-clean-100 (N_chunks=50 over 100 h).
    """

    train_name: str = "train"
    dev_name: str = "dev"
    test_name: str = "test"
    n_chunks_train: int = 0            # 0 = sized from the data
    n_chunks_dev: int = 0
    n_chunks_test: int = 0
    max_chunk_frames: int = 720000     # frames per chunk when sizing from the data

    def __post_init__(self) -> None:
        names = [self.train_name, self.dev_name, self.test_name]
        for n in names:
            if not re.fullmatch(r"[A-Za-z0-9_]+", n):
                raise ValueError(f"dataset name {n!r} may hold only letters, digits and '_'")
        if len(set(names)) != 3:
            raise ValueError(f"train/dev/test names must differ, got {names}")
        if min(self.n_chunks_train, self.n_chunks_dev, self.n_chunks_test) < 0:
            raise ValueError("n_chunks_* must be >= 1, or 0 to size them from the data")
        if self.max_chunk_frames < 1:
            raise ValueError(f"max_chunk_frames must be >= 1, got {self.max_chunk_frames}")


@dataclass
class FeatureConfig:
    """The `fea` block: name, Kaldi CMVN/delta chain and context window."""

    name: str = "s3prl"                # fea_name: [A-Za-z0-9] only (PyTorch-Kaldi rule)
    # apply-cmvn with the data dir's per-speaker cmvn.scp. None (default): yes, except for an
    # upstream checkpoint with its own audio section (type upstream), whose own normalisation
    # the chain reproduces instead (see `plan_upstream_input`); true is then refused.
    apply_cmvn: Optional[bool] = None
    norm_vars: bool = False            # apply-cmvn --norm-vars=true
    delta_order: int = 0               # add-deltas --delta-order (0 = none, as S3PRL did)
    cw_left: int = 0
    cw_right: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]+", self.name):
            raise ValueError(f"features.name {self.name!r} may hold only [A-Za-z0-9] "
                             f"(PyTorch-Kaldi splits names on '_')")
        if not 0 <= self.delta_order <= 3:
            raise ValueError(f"delta_order must be in 0..3, got {self.delta_order}")
        if self.cw_left < 0 or self.cw_right < 0:
            raise ValueError("cw_left and cw_right must be >= 0")


@dataclass
class LabelConfig:
    """The `lab` block: context-dependent states (pdfs) and, optionally, monophones."""

    count_file: str = "auto"           # lab_count_file of lab_cd: auto | none | a path
    mono: bool = False                 # add lab_mono (ali-to-phones --per-frame=true), TIMIT style
    mono_weight: float = 1.0           # loss = nll_cd + mono_weight * nll_mono


@dataclass
class BatchConfig:
    """`[batches]` (names as PyTorch-Kaldi spells them, `multply` included)."""

    batch_size_train: int = 16
    max_seq_length_train: int = 1000
    increase_seq_length_train: bool = True
    start_seq_len_train: int = 100
    multply_factor_seq_len_train: int = 2
    batch_size_valid: int = 8
    max_seq_length_valid: int = 1000

    def __post_init__(self) -> None:
        if min(self.max_seq_length_train, self.start_seq_len_train, self.max_seq_length_valid) < 20:
            raise ValueError("sequence lengths must be >= 20 (global.proto: int(20,inf))")
        if self.batch_size_train < 1 or self.batch_size_valid < 1:
            raise ValueError("batch sizes must be >= 1")


@dataclass
class OptimConfig:
    """`arch_lr`, `arch_opt` and the optimizer's proto fields (sgd / rmsprop / adam)."""

    lr: float = 0.0004
    opt: Literal["sgd", "rmsprop", "adam"] = "rmsprop"
    halving_factor: float = 0.5
    improvement_threshold: float = 0.001
    momentum: float = 0.0
    alpha: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class MLPConfig:
    """PyTorch-Kaldi's `neural_networks.MLP` hidden stack over the features."""

    layers: list[int] = field(default_factory=lambda: [1024, 1024, 1024, 1024])
    dropout: float = 0.15
    batchnorm: bool = True
    layernorm: bool = False
    act: str = "relu"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.08, opt="sgd"))

    def __post_init__(self) -> None:
        if any(n < 1 for n in self.layers):
            raise ValueError(f"mlp.layers must be positive sizes, got {self.layers}")


@dataclass
class UpstreamArchConfig:
    """Options of `S3PRLUpstream` (s3prl/downstream/pk_arch.proto), used when model.type=upstream."""

    no_grad: bool = True               # frozen upstream (eval mode, no gradients)
    dropout: str = "default"           # 'default' or a float overriding the upstream's dropouts
    weighted_sum: bool = False         # learnable softmax-weighted sum of the layers
    select_layer: int = -1             # -1 = last layer; otherwise that hidden state
    spec_aug: bool = False
    spec_aug_prev: bool = True         # SpecAugment on the input (True) or the output (False)
    spec_aug_seed: int = 1337
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.0001, opt="adam"))

    def __post_init__(self) -> None:
        if self.dropout != "default":
            try:
                p = float(self.dropout)
            except ValueError:
                raise ValueError(f"upstream.dropout {self.dropout!r} is not 'default' or a float") from None
            if not 0.0 <= p < 1.0:
                raise ValueError(f"upstream.dropout must be in [0, 1), got {p}")
        if self.select_layer < -1:
            raise ValueError(f"upstream.select_layer must be >= -1, got {self.select_layer}")


@dataclass
class ForwardConfig:
    normalize_posteriors: bool = True
    save_out_file: bool = False
    require_decoding: bool = True


@dataclass
class DecodingConfig:
    """`[decoding]`: options of PyTorch-Kaldi's `decode_dnn.sh` (latgen-faster-mapped + scoring).
    scoring_script: see the module docstring. No num_threads: decode_dnn.sh sets it to 1 itself."""

    min_active: int = 200
    max_active: int = 7000
    max_mem: int = 50000000
    beam: float = 13.0
    latbeam: float = 8.0
    acwt: float = 0.2
    max_arcs: int = -1
    skip_scoring: bool = False
    scoring_script: str = "local/score.sh"
    scoring_opts: str = "--min-lmwt 1 --max-lmwt 10"
    norm_vars: bool = False


@dataclass
class PyTorchKaldiConfig:
    """Everything the cfg writer takes (egs/<dataset>/conf/pytorch_kaldi.yaml)."""

    # mlp: an MLP on the features (dumped SSL representations: the frozen route).
    # upstream: S3PRLUpstream (pk_arch) on acoustic features, then the MLP: fine-tuning route.
    type: Literal["mlp", "upstream"] = "mlp"
    exp: ExpConfig = field(default_factory=ExpConfig)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    batches: BatchConfig = field(default_factory=BatchConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)
    output: OptimConfig = field(default_factory=OptimConfig)   # softmax layer(s) optimiser
    upstream: UpstreamArchConfig = field(default_factory=UpstreamArchConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)


# ------------------------------------------------------------------------------------ inputs
@dataclass
class DatasetInputs:
    """One dataset of the experiment: its features data dir and its alignment dir."""

    feats_dir: Path
    ali_dir: Path
    # The data dir holding `text` for scoring; defaults to feats_dir (dumps copy `text`).
    text_dir: Optional[Path] = None


def _b(v: bool) -> str:
    return "True" if v else "False"


def _abs(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()


def check_feats_dir(d: Path, cfg: FeatureConfig) -> None:
    if not d.is_dir():
        raise UserError(f"{d}: feature data directory does not exist")
    need = ["feats.scp", "utt2spk"] + (["cmvn.scp"] if cfg.apply_cmvn is not False else [])
    for name in need:
        if not (d / name).is_file():
            raise UserError(f"{d}: missing {name} (PyTorch-Kaldi reads features from feats.scp"
                            f"{' with per-speaker cmvn.scp' if cfg.apply_cmvn is not False else ''})")


def check_ali_dir(d: Path) -> None:
    """A Kaldi alignment dir as PyTorch-Kaldi reads it: final.mdl + ali.*.gz."""
    if not d.is_dir():
        raise UserError(f"{d}: alignment directory does not exist (run Kaldi's align_si.sh / "
                        f"align_fmllr.sh for this set)")
    if not (d / "final.mdl").is_file():
        raise UserError(f"{d}: alignment directory has no final.mdl (needed by ali-to-pdf and hmm-info)")
    if not any(d.glob("ali.*.gz")):
        raise UserError(f"{d}: alignment directory has no ali.*.gz")


def check_graph_dir(d: Path) -> None:
    if not d.is_dir():
        raise UserError(f"{d}: decoding graph directory does not exist (run Kaldi's utils/mkgraph.sh)")
    for name in ("HCLG.fst", "words.txt"):
        if not (d / name).is_file():
            raise UserError(f"{d}: graph directory has no {name}")


def check_options(cfg: PyTorchKaldiConfig) -> None:
    """Refuse option combinations PyTorch-Kaldi accepts but cannot run (module docstring)."""
    # Refused rather than warned about: with use_cuda=False run_exp.py always forwards through
    # _run_forwarding_in_subprocesses, which hands run_nn.py dict batches it cannot index, so the
    # experiment dies after the whole training; no shipped config or test relies on CPU runs.
    if not cfg.exp.use_cuda:
        raise UserError("exp.use_cuda: false is not supported: PyTorch-Kaldi then forwards in subprocesses "
                        "with batches run_nn.py cannot read, and fails after training (run it on a GPU)")
    if cfg.type != "upstream":
        return
    f = cfg.features
    for key, value in (("delta_order", f.delta_order), ("cw_left", f.cw_left), ("cw_right", f.cw_right)):
        if value != 0:
            raise UserError(f"features.{key}: {value} with type upstream: the upstream takes the features it "
                            f"was trained on (fea_opts adds its own deltas), so deltas and context windows must be 0")
    if cfg.exp.multi_gpu:
        raise UserError("exp.multi_gpu: true with type upstream: PyTorch-Kaldi's DataParallel splits dim 0, "
                        "the time axis of the (T, B, D) input, so each GPU would see a slice of every utterance")


# ------------------------------------------------------------------------------- chunking
def split_chunk_sizes(n_items: int, n_chunks: int) -> list[int]:
    """Lengths of the lists PyTorch-Kaldi's utils.split_chunks cuts n_items lines into (its own
    float arithmetic and rounding: seq[round(i * n / k) : round((i + 1) * n / k)])."""
    size = 1.0 / n_chunks * n_items
    return [len(range(int(round(i * size)), int(round((i + 1) * size)))) for i in range(n_chunks)]


def resolve_n_chunks(requested: int, feats_dir: Path, option: str, max_chunk_frames: int) -> int:
    """`n_chunks` of one set: `requested`, or (0) ceil(frames / max_chunk_frames) capped at the
    set's utterance count. A count that leaves a chunk list empty is a UserError naming `option`."""
    scp = feats_dir / "feats.scp"
    with open(scp, encoding="utf-8") as f:
        n_utts = sum(1 for line in f if line.strip())
    if n_utts == 0:
        raise UserError(f"{scp}: no utterances")
    n = requested
    if n == 0:
        from s3prl.data.alignments import read_frame_counts

        frames, _ = read_frame_counts(feats_dir)
        n = min(n_utts, max(1, math.ceil(sum(frames.values()) / max_chunk_frames)))
    empty = split_chunk_sizes(n_utts, n).count(0)
    if empty:
        raise UserError(f"{option}: {n} chunks for the {n_utts} utterances of {scp} would leave {empty} of "
                        f"PyTorch-Kaldi's chunk lists empty (create_lists splits the utterance list into "
                        f"n_chunks parts): use at most {n_utts}, or 0 to size it from the data")
    return n


# ------------------------------------------------------------------- upstream input chain
@dataclass
class UpstreamInput:
    """What `fea_opts` adds to one set's feats.scp so that S3PRLUpstream gets exactly the input
    the checkpoint was trained on (`s3prl.features.compute_features` with its audio section)."""

    feats_dim: int                            # the dim feats.scp must have
    delta_order: int = 0                      # add-deltas --delta-order (Kaldi fbank / mfcc)
    delta_window: int = 2                     # add-deltas --delta-window
    cmvn: Optional[tuple[float, bool]] = None  # per-utterance CMVN (eps, unbiased), or None


# The fields of the audio section applied after the base features (and the dither seed).
_POST_FIELDS = ("delta_order", "delta_window", "per_utt_cmvn", "seed")


def plan_upstream_input(audio, ckpt: Path, feats_dir: Path) -> UpstreamInput:
    """The chain from `feats_dir`'s features to the input of a checkpoint trained on `audio`
    (an `s3prl.features.FeatureConfig`).

    `<feats_dir>/conf/feats.yaml` (utils/compute_feats.sh writes it) says what feats.scp holds:
    its base options (framing, mel bins, ...) must equal the checkpoint's; features that already
    have the checkpoint's deltas and CMVN go in as they are; plain ones (no deltas, no CMVN) get
    them in the chain. Without that file feats.scp is taken as plain Kaldi features (e.g.
    compute-fbank-feats output) and only its dim is checked. Raises UserError otherwise.
    """
    from s3prl.config import load_config, to_dict
    from s3prl.features.compute import utterance_cmvn_definition
    from s3prl.features.config import FeatureConfig as AudioConfig
    from s3prl.features.config import base_dim, feature_dim

    conf = feats_dir / "conf" / "feats.yaml"
    if conf.is_file():
        dumped = load_config(AudioConfig, conf)
        have, want = to_dict(dumped), to_dict(audio)
        for key in sorted(have):
            if key not in _POST_FIELDS and have[key] != want.get(key):
                raise UserError(f"{conf}: {key}: {have[key]!r}, but {ckpt} was trained on {key}: "
                                f"{want.get(key)!r} (dump the features with the checkpoint's audio settings)")
        if (dumped.per_utt_cmvn == audio.per_utt_cmvn and dumped.delta_order == audio.delta_order
                and (audio.delta_order == 0 or dumped.delta_window == audio.delta_window)):
            return UpstreamInput(feats_dim=feature_dim(audio))
        if dumped.delta_order or dumped.per_utt_cmvn:
            raise UserError(f"{conf}: delta_order {dumped.delta_order}, per_utt_cmvn {dumped.per_utt_cmvn}, but "
                            f"{ckpt} takes delta_order {audio.delta_order}, per_utt_cmvn {audio.per_utt_cmvn}: "
                            f"give features without deltas and CMVN, or with the checkpoint's own")
    if audio.delta_order and audio.feat_type not in ("fbank", "mfcc"):
        raise UserError(f"{ckpt}: its {audio.feat_type} deltas are librosa's, which Kaldi's add-deltas cannot "
                        f"make: dump the features with the checkpoint's own audio settings")
    cmvn = utterance_cmvn_definition(audio) if audio.per_utt_cmvn else None
    return UpstreamInput(feats_dim=base_dim(audio), delta_order=audio.delta_order,
                         delta_window=audio.delta_window, cmvn=cmvn)


def utterance_cmvn_stats(feats: np.ndarray, eps: float, unbiased: bool) -> np.ndarray:
    """(2, D+1) float64 stats in Kaldi's layout with which `apply-cmvn --norm-vars=true` computes
    `s3prl.features.cmvn.utterance_cmvn(feats, eps, unbiased)` = (x - mean) / (std + eps).

    Kaldi's ApplyCmvn (src/transform/cmvn.cc) takes mean = s0 / n, var = s1 / n - mean^2 (the
    biased variance, no eps) and scales by 1 / sqrt(var); so row 1 holds n * (mean^2 + (std +
    eps)^2) instead of the sum of squares, with std the checkpoint's own estimate. A constant
    dimension (std 0) gets var 1, which maps it to x - mean = 0 as the hub does.
    """
    x = np.asarray(feats, dtype=np.float64)
    n, dim = x.shape
    mean = x.mean(axis=0)
    ddof = 1 if unbiased and n > 1 else 0
    std = np.sqrt(((x - mean) ** 2).sum(axis=0) / (n - ddof))
    scale = np.where(std > 0, std + eps, 1.0)
    stats = np.zeros((2, dim + 1))
    stats[0, :dim], stats[0, dim] = mean * n, n
    stats[1, :dim] = n * (mean * mean + scale * scale)
    return stats


def write_upstream_cmvn(feats_dir: Path, plan: UpstreamInput, ark: Path) -> Path:
    """Per-utterance stats (`utterance_cmvn_stats`) of feats.scp after the plan's deltas, written to
    `ark` and its .scp (keyed by utterance) unless they are up to date; returns the scp path."""
    import torch

    from s3prl.atomic import atomic_write_text
    from s3prl.data.ark import iter_scp, write_cmvn_ark
    from s3prl.features.deltas import add_deltas

    assert plan.cmvn is not None
    scp, stamp = ark.with_suffix(".scp"), ark.with_suffix(".conf")
    src = feats_dir / "feats.scp"
    eps, unbiased = plan.cmvn
    meta = (f"feats {src}\nsize {src.stat().st_size}\nmtime_ns {src.stat().st_mtime_ns}\n"
            f"delta_order {plan.delta_order}\ndelta_window {plan.delta_window}\n"
            f"eps {eps!r}\nunbiased {unbiased}\n")
    if scp.is_file() and ark.is_file() and stamp.is_file() and stamp.read_text() == meta:
        logging.getLogger(__name__).info("%s: up to date", scp)
        return scp
    stats = {}
    for utt, mat in iter_scp(src):
        if mat.shape[1] != plan.feats_dim:
            raise UserError(f"{src}: utterance {utt} has dim {mat.shape[1]}, the upstream takes {plan.feats_dim}")
        if mat.shape[0] == 0:
            raise UserError(f"{src}: utterance {utt} has no frames")
        x = add_deltas(torch.from_numpy(np.asarray(mat, dtype=np.float32)), plan.delta_order, plan.delta_window)
        stats[utt] = utterance_cmvn_stats(x.numpy(), eps, unbiased)
    if not stats:
        raise UserError(f"{src}: no utterances")
    ark.parent.mkdir(parents=True, exist_ok=True)
    write_cmvn_ark(ark, scp, stats)
    atomic_write_text(stamp, meta)
    return scp


def feats_dim(d: Path) -> int:
    """Feature dim of a data dir: its feats_dim file, else the first matrix of feats.scp."""
    if (d / "feats_dim").is_file():
        text = (d / "feats_dim").read_text().split()
        if len(text) == 1 and text[0].isdigit():
            return int(text[0])
        raise UserError(f"{d / 'feats_dim'}: expected one integer")
    import kaldiio

    with open(d / "feats.scp", encoding="utf-8") as f:
        line = f.readline().split(None, 1)
    if len(line) != 2:
        raise UserError(f"{d / 'feats.scp'}: empty or malformed first line")
    try:
        return int(kaldiio.load_mat(line[1].strip()).shape[1])
    except (OSError, ValueError, KeyError, IndexError) as e:  # what kaldiio raises on a bad entry
        raise UserError(f"{d / 'feats.scp'}: cannot read {line[0]}: {e}") from None


def _needs_stm(script: str) -> bool:
    """Whether `script` is one of the TIMIT scorers that read <data>/stm and <data>/glm."""
    parts = Path(script).parts
    return ("/".join(parts[-2:]) in PK_STM_SCORERS
            and (len(parts) == 2 or "kaldi_decoding_scripts" in parts or "timit" in parts))


def resolve_scoring_script(d: DecodingConfig, *, kaldi_root: str | Path | None,
                           pytorch_kaldi_root: str | Path | None, check: bool) -> str:
    """The `[decoding] scoring_script` to write: `$KALDI_ROOT/` resolved from `kaldi_root`; a relative
    path kept (decode_dnn.sh runs it from kaldi_decoding_scripts/). With `check` (scoring will run)
    it must exist: absolute ones always, relative ones under `<pytorch_kaldi_root>` when given."""
    script = d.scoring_script.strip()
    if not script:
        raise UserError("decoding.scoring_script: empty")
    for prefix in ("$KALDI_ROOT/", "${KALDI_ROOT}/"):
        if script.startswith(prefix):
            if not kaldi_root:
                if not check:
                    return script
                raise UserError(f"decoding.scoring_script: {script} needs the Kaldi root: pass --kaldi-root "
                                f"or export KALDI_ROOT")
            script = str(_abs(kaldi_root) / script[len(prefix):])
    if "$" in script:
        raise UserError(f"decoding.scoring_script: {script}: only a leading $KALDI_ROOT is resolved "
                        f"(PyTorch-Kaldi takes paths literally)")
    if Path(script).expanduser().is_absolute():
        path = _abs(script)
        if check and not path.is_file():
            raise UserError(f"decoding.scoring_script: {path} does not exist")
        if check and not os.access(path, os.X_OK):
            raise UserError(f"decoding.scoring_script: {path} is not executable (decode_dnn.sh needs -x)")
        return str(path)
    script = os.path.normpath(script)
    if check and pytorch_kaldi_root:
        folder = _abs(pytorch_kaldi_root) / "kaldi_decoding_scripts"
        if not (folder / script).is_file():
            raise UserError(f"decoding.scoring_script: {script} is not in {folder} (relative scorers are "
                            f"PyTorch-Kaldi's; give Kaldi's as $KALDI_ROOT/egs/<corpus>/s5/local/score.sh)")
    return script


def check_scoring_dir(d: Path, *, score: bool, needs_stm: bool, scorer: str) -> None:
    """The decoded set's lab_data_folder as decode_dnn.sh and the scorer read it."""
    need = {"feats.scp": "decode_dnn.sh checks it"}
    if score:
        need["text"] = "the reference to score against"
    if score and needs_stm:
        need["stm"] = need["glm"] = (f"the sclite reference {scorer} reads; s3prl.bin.prepare_timit "
                                     f"writes it into data/<set> and the dump copies it")
    for name, why in need.items():
        if not (d / name).is_file():
            raise UserError(f"{d}: no {name} in the scoring data dir ({why})")


def fea_opts(feats_dir: Path, cfg: FeatureConfig, upstream: Optional[UpstreamInput] = None,
             cmvn_scp: Optional[Path] = None) -> str:
    """The Kaldi command chain PyTorch-Kaldi appends to `copy-feats scp:<fea_lst> ark:- |`.

    Without `upstream`: per-speaker CMVN (unless cfg.apply_cmvn is false), then cfg's deltas.
    With it: the upstream's deltas, then its per-utterance CMVN from `cmvn_scp` (keyed by
    utterance; `write_upstream_cmvn`), the order of `s3prl.features.compute_features`.
    """
    parts = []
    if upstream is not None:
        window = f" --delta-window={upstream.delta_window}" if upstream.delta_order else ""
        parts.append(f"add-deltas --delta-order={upstream.delta_order}{window} ark:- ark:- |")
        if upstream.cmvn is not None:
            if cmvn_scp is None:
                raise ValueError("fea_opts: the upstream's per-utterance CMVN needs its stats scp")
            parts.append(f"apply-cmvn --norm-vars=true scp:{cmvn_scp} ark:- ark:- |")
        return " ".join(parts)
    if cfg.apply_cmvn is not False:
        nv = " --norm-vars=true" if cfg.norm_vars else ""
        parts.append(f"apply-cmvn{nv} --utt2spk=ark:{feats_dir / 'utt2spk'} "
                     f"scp:{feats_dir / 'cmvn.scp'} ark:- ark:- |")
    parts.append(f"add-deltas --delta-order={cfg.delta_order} ark:- ark:- |")
    return " ".join(parts)


def _block(lines: list[str]) -> str:
    """A multi-line configparser value (ConfigParser.write indents continuation lines with a tab)."""
    return "\n".join(lines)


def _fea_block(ds: DatasetInputs, cfg: FeatureConfig, upstream: Optional[UpstreamInput] = None,
               cmvn_scp: Optional[Path] = None) -> str:
    return _block([f"fea_name={cfg.name}",
                   f"fea_lst={ds.feats_dir / 'feats.scp'}",
                   f"fea_opts={fea_opts(ds.feats_dir, cfg, upstream, cmvn_scp)}",
                   f"cw_left={cfg.cw_left}",
                   f"cw_right={cfg.cw_right}"])


def _lab_block(ds: DatasetInputs, graph: Path, cfg: LabelConfig) -> str:
    text_dir = ds.text_dir or ds.feats_dir
    lines = ["lab_name=lab_cd", f"lab_folder={ds.ali_dir}", "lab_opts=ali-to-pdf",
             f"lab_count_file={cfg.count_file}", f"lab_data_folder={text_dir}/",
             f"lab_graph={graph}"]
    if cfg.mono:
        lines += ["", "lab_name=lab_mono", f"lab_folder={ds.ali_dir}",
                  "lab_opts=ali-to-phones --per-frame=true", "lab_count_file=none",
                  f"lab_data_folder={text_dir}/", f"lab_graph={graph}"]
    return _block(lines)


def _optim_fields(o: OptimConfig) -> dict[str, str]:
    out = {"arch_lr": repr(o.lr), "arch_halving_factor": repr(o.halving_factor),
           "arch_improvement_threshold": repr(o.improvement_threshold), "arch_opt": o.opt}
    if o.opt == "sgd":
        out.update(opt_momentum=repr(o.momentum), opt_weight_decay=repr(o.weight_decay),
                   opt_dampening="0.0", opt_nesterov="False")
    elif o.opt == "rmsprop":
        out.update(opt_momentum=repr(o.momentum), opt_alpha=repr(o.alpha), opt_eps=repr(o.eps),
                   opt_centered="False", opt_weight_decay=repr(o.weight_decay))
    else:
        out.update(opt_betas=f"{o.betas[0]!r},{o.betas[1]!r}", opt_eps=repr(o.eps),
                   opt_weight_decay=repr(o.weight_decay), opt_amsgrad="False")
    return out


def _mlp_arch(name: str, proto: str, sizes: list[str], drop: float, bn: bool, ln: bool,
              acts: list[str], optim: OptimConfig) -> dict[str, str]:
    n = len(sizes)
    sec = {"arch_name": name, "arch_proto": proto, "arch_library": "neural_networks",
           "arch_class": "MLP", "arch_pretrain_file": "none", "arch_freeze": "False",
           "arch_seq_model": "False", "dnn_lay": ",".join(sizes),
           "dnn_drop": ",".join([repr(drop)] * n), "dnn_use_laynorm_inp": "False",
           "dnn_use_batchnorm_inp": "False", "dnn_use_batchnorm": ",".join([_b(bn)] * n),
           "dnn_use_laynorm": ",".join([_b(ln)] * n), "dnn_act": ",".join(acts)}
    sec.update(_optim_fields(optim))
    return sec


def build_cfg(cfg: PyTorchKaldiConfig, *, out_folder: str | Path, train: DatasetInputs,
              dev: DatasetInputs, test: DatasetInputs, graph: str | Path,
              upstream_ckpt: str | Path | None = None,
              pytorch_kaldi_root: str | Path | None = None,
              kaldi_root: str | Path | None = None,
              cmvn_dir: str | Path | None = None) -> configparser.ConfigParser:
    """Build the PyTorch-Kaldi experiment as a ConfigParser (checks every input dir first).

    Args:
        out_folder: PyTorch-Kaldi's `[exp] out_folder` (made absolute).
        train/dev/test: features data dir + alignment dir of each set.
        graph: Kaldi graph dir (HCLG.fst, words.txt), e.g. exp/tri4b/graph_tgsmall.
        upstream_ckpt: our upstream checkpoint; required when cfg.type == "upstream".
        pytorch_kaldi_root: the PyTorch-Kaldi checkout; its proto/ and kaldi_decoding_scripts/
            paths are written absolute under it (relative to its root otherwise, which is where
            utils/run_pytorch_kaldi.sh runs run_exp.py).
        kaldi_root: the Kaldi checkout a `$KALDI_ROOT/...` decoding.scoring_script is resolved in.
        cmvn_dir: where the per-utterance CMVN stats of an upstream trained with per-utterance
            CMVN are written (`write_upstream_cmvn`; default <out_folder>/upstream_cmvn).
    Raises UserError naming the missing dir/file or the bad option.
    """
    check_options(cfg)
    sets = {"train": train, "dev": dev, "test": test}
    ckpt = up = None
    if cfg.type == "upstream":
        if upstream_ckpt is None:
            raise UserError("--upstream-ckpt: required when the config's type is 'upstream'")
        ckpt = _abs(upstream_ckpt)
        if not ckpt.is_file():
            raise UserError(f"{ckpt}: upstream checkpoint does not exist")
        from s3prl.upstream.hub import load_upstream

        up = load_upstream(ckpt)
    # An upstream with its own audio section gets its own normalisation in the chain (below),
    # never the speaker CMVN (which would change what it sees when it was trained without CMVN).
    own_audio = up is not None and up.feature_config is not None
    if own_audio and cfg.features.apply_cmvn:
        raise UserError(f"features.apply_cmvn: true with type upstream: {ckpt} was trained on its own features "
                        f"({up.feature_config.feat_type}, per-utterance CMVN {up.feature_config.per_utt_cmvn}), "
                        f"which fea_opts reproduces; speaker CMVN would change them (leave apply_cmvn unset)")
    fcfg = replace(cfg.features, apply_cmvn=(not own_audio) if cfg.features.apply_cmvn is None
                   else cfg.features.apply_cmvn)
    for ds in sets.values():
        ds.feats_dir, ds.ali_dir = _abs(ds.feats_dir), _abs(ds.ali_dir)
        ds.text_dir = _abs(ds.text_dir) if ds.text_dir is not None else None
        check_feats_dir(ds.feats_dir, fcfg)
        check_ali_dir(ds.ali_dir)
        if ds.text_dir is not None and not (ds.text_dir / "text").is_file():
            raise UserError(f"{ds.text_dir}: no text file (needed to score the WER)")
    graph = _abs(graph)
    check_graph_dir(graph)
    chunks = {key: resolve_n_chunks(getattr(cfg.data, f"n_chunks_{key}"), ds.feats_dir,
                                    f"data.n_chunks_{key}", cfg.data.max_chunk_frames)
              for key, ds in sets.items()}
    plans: dict[str, Optional[UpstreamInput]] = {key: None for key in sets}
    cmvn_scps: dict[str, Optional[Path]] = {key: None for key in sets}
    if up is not None:
        for key, ds in sets.items():
            if own_audio:
                plans[key] = plan_upstream_input(up.feature_config, ckpt, ds.feats_dir)
                want = plans[key].feats_dim
            else:
                want = up.input_dim
            got = feats_dim(ds.feats_dir)
            if got != want:
                raise UserError(f"{ds.feats_dir}: {got}-dim features but the upstream {ckpt} takes {want}-dim "
                                f"(give the --{key}-feats it was pre-trained on)")
    # The decoded set (forward_with) is the test set: decode_dnn.sh reads its lab_data_folder.
    d = cfg.decoding
    decode = cfg.forward.require_decoding
    score = decode and not d.skip_scoring
    scorer = resolve_scoring_script(d, kaldi_root=kaldi_root, pytorch_kaldi_root=pytorch_kaldi_root,
                                    check=score)
    if decode:
        check_scoring_dir(test.text_dir or test.feats_dir, score=score, needs_stm=_needs_stm(scorer),
                          scorer=scorer)
    # Everything checked: the per-utterance stats of an upstream trained with per-utterance CMVN.
    for key, ds in sets.items():
        if plans[key] is not None and plans[key].cmvn is not None:
            folder = _abs(cmvn_dir) if cmvn_dir is not None else _abs(out_folder) / "upstream_cmvn"
            cmvn_scps[key] = write_upstream_cmvn(ds.feats_dir, plans[key], folder / f"cmvn_utt_{key}.ark")
    pk = (lambda rel: str(_abs(pytorch_kaldi_root) / rel)) if pytorch_kaldi_root else (lambda rel: rel)

    c = configparser.ConfigParser(interpolation=None)
    c.optionxform = str  # keep key case (PyTorch-Kaldi's cfgs are lower case anyway)
    c["cfg_proto"] = {"cfg_proto": pk("proto/global.proto"),
                      "cfg_proto_chunk": pk("proto/global_chunk.proto")}
    e = cfg.exp
    c["exp"] = {"cmd": e.cmd, "run_nn_script": "run_nn.py", "out_folder": str(_abs(out_folder)),
                "seed": str(e.seed), "use_cuda": _b(e.use_cuda), "multi_gpu": _b(e.multi_gpu),
                "save_gpumem": _b(e.save_gpumem), "n_epochs_tr": str(e.n_epochs_tr)}
    names = {"train": cfg.data.train_name, "dev": cfg.data.dev_name, "test": cfg.data.test_name}
    for i, key in enumerate(("train", "dev", "test"), 1):
        ds = sets[key]
        c[f"dataset{i}"] = {"data_name": names[key], "fea": _fea_block(ds, fcfg, plans[key], cmvn_scps[key]),
                            "lab": _lab_block(ds, graph, cfg.labels), "n_chunks": str(chunks[key])}
    c["data_use"] = {"train_with": names["train"], "valid_with": names["dev"],
                     "forward_with": names["test"]}
    bt = cfg.batches
    c["batches"] = {k: (_b(v) if isinstance(v, bool) else str(v)) for k, v in vars(bt).items()}

    mlp_proto = pk("proto/MLP.proto")
    archs: list[dict[str, str]] = []
    model: list[str] = []
    inp = cfg.features.name
    if cfg.type == "upstream":
        u = cfg.upstream
        frozen_all = u.no_grad and not u.weighted_sum   # nothing in it to train
        sec = {"arch_name": "S3PRL_upstream", "arch_proto": str(PK_ARCH_PROTO),
               "arch_library": PK_ARCH_LIBRARY, "arch_class": PK_ARCH_CLASS,
               "arch_pretrain_file": "none", "arch_freeze": _b(frozen_all),
               "arch_seq_model": "True", "upstream_ckpt": str(ckpt), "load_pretrain": "True",
               "no_grad": _b(u.no_grad), "dropout": u.dropout, "weighted_sum": _b(u.weighted_sum),
               "select_layer": str(u.select_layer), "spec_aug": _b(u.spec_aug),
               "spec_aug_prev": _b(u.spec_aug_prev), "spec_aug_seed": str(u.spec_aug_seed),
               "permute_input": "True"}
        sec.update(_optim_fields(u.optim))
        if frozen_all:
            sec["arch_lr"] = "0.0"
        archs.append(sec)
        model.append(f"out_up=compute(S3PRL_upstream,{inp})")
        inp = "out_up"
    n_hidden = len(cfg.mlp.layers)
    if n_hidden:
        archs.append(_mlp_arch("MLP_layers1", mlp_proto, [str(n) for n in cfg.mlp.layers],
                               cfg.mlp.dropout, cfg.mlp.batchnorm, cfg.mlp.layernorm,
                               [cfg.mlp.act] * n_hidden, cfg.mlp.optim))
        model.append(f"out_dnn1=compute(MLP_layers1,{inp})")
        inp = "out_dnn1"
    archs.append(_mlp_arch("MLP_cd", mlp_proto, ["N_out_lab_cd"], 0.0, False, False,
                           ["softmax"], cfg.output))
    model.append(f"out_cd=compute(MLP_cd,{inp})")
    model.append("loss_cd=cost_nll(out_cd,lab_cd)")
    if cfg.labels.mono:
        archs.append(_mlp_arch("MLP_mono", mlp_proto, ["N_out_lab_mono"], 0.0, False, False,
                               ["softmax"], cfg.output))
        model += [f"out_mono=compute(MLP_mono,{inp})", "loss_mono=cost_nll(out_mono,lab_mono)",
                  f"loss_mono_w=mult_constant(loss_mono,{cfg.labels.mono_weight!r})",
                  "loss_final=sum(loss_cd,loss_mono_w)"]
    else:
        model.append("loss_final=mult_constant(loss_cd,1.0)")
    model.append("err_final=cost_err(out_cd,lab_cd)")
    for i, sec in enumerate(archs, 1):
        c[f"architecture{i}"] = sec
    c["model"] = {"model_proto": pk("proto/model.proto"), "model": _block(model)}
    f = cfg.forward
    c["forward"] = {"forward_out": "out_cd", "normalize_posteriors": _b(f.normalize_posteriors),
                    "normalize_with_counts_from": "lab_cd", "save_out_file": _b(f.save_out_file),
                    "require_decoding": _b(f.require_decoding)}
    c["decoding"] = {"decoding_script_folder": pk("kaldi_decoding_scripts/"),
                     "decoding_script": "decode_dnn.sh", "decoding_proto": pk("proto/decoding.proto"),
                     "min_active": str(d.min_active), "max_active": str(d.max_active),
                     "max_mem": str(d.max_mem), "beam": repr(d.beam), "latbeam": repr(d.latbeam),
                     "acwt": repr(d.acwt), "max_arcs": str(d.max_arcs),
                     "skip_scoring": _b(d.skip_scoring).lower(), "scoring_script": scorer,
                     "scoring_opts": f'"{d.scoring_opts}"', "norm_vars": _b(d.norm_vars)}
    return c


def cfg_to_text(c: configparser.ConfigParser) -> str:
    buf = io.StringIO()
    c.write(buf)
    return buf.getvalue()
