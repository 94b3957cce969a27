"""Datasets over a Kaldi data directory for pre-training (and frame-level downstream tasks).

`FeatureDataset` serves (T, D) feature matrices per utterance, either
  (a) computed on the fly from the audio (wav.scp / segments) with a `FeatureConfig`
      (s3prl.features; the config's own `per_utt_cmvn` applies), or
  (b) read from the data dir's Kaldi `feats.scp` ("external" features, e.g. fMLLR 40 made by
      Kaldi), with optional speaker-level CMVN from `cmvn.scp` (Kaldi `apply-cmvn --utt2spk`).
`cmvn: utterance` adds the Mockingjay per-utterance CMVN on top of either; `cmvn: global` adds one
global mean (and variance) normalisation, Kaldi `compute-cmvn-stats` over a whole set then
`apply-cmvn` with that one stats matrix (ESPnet's GlobalMVN): the statistics come from the dataset's
own utterances or, for dev and test sets, from the training set's (`global_stats`). Unlike
per-utterance or per-speaker CMVN it keeps what differs between speakers and utterances (the
speaker task), while bringing features of any scale (log-mel energies around 15) to unit scale.
`delta_order` > 0 then appends Kaldi `add-deltas` (s3prl.features.deltas) of the normalised
features, the order of Kaldi's `apply-cmvn | add-deltas` chains.
An optional second stream (`target`, e.g. the linear1025 target of Mockingjay LARGE) is computed
from the same audio and cut to the input's frame count.

Lengths (for bucketing) come from utt2num_frames when present, else utt2dur (converted with the
feature config's framing), else by reading every utterance once.

`max_timestep` (0 = off), applied to training data:
  - policy "drop" (the 2020 S3PRL behaviour, github.com/s3prl/s3prl @ b72a2cd9, dataloader.py):
    utterances with more than max_timestep frames are removed from the dataset;
  - policy "crop": a random window of max_timestep frames is taken, its start drawn from a numpy
    generator seeded with (seed, epoch, utterance index), so a resumed run crops identically.

`collate_features` pads a list of items with zeros into a `FeatureBatch`
(feats (B, T, D), lengths (B,), utts, optional target (B, T, D')).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s3prl.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class FeatureBatch:
    feats: torch.Tensor            # (B, T, D) zero padded
    lengths: torch.Tensor          # (B,) int64 valid frames
    utts: list[str]
    target: torch.Tensor | None = None   # (B, T, D') second stream, same lengths

    def to(self, device) -> "FeatureBatch":
        return FeatureBatch(self.feats.to(device), self.lengths.to(device), self.utts,
                            None if self.target is None else self.target.to(device))

    def __len__(self) -> int:
        return len(self.utts)


def pad_stack(mats: list[torch.Tensor]) -> torch.Tensor:
    """Zero-pad (T_i, D) tensors into (B, max T, D)."""
    return torch.nn.utils.rnn.pad_sequence(mats, batch_first=True)


def collate_features(items: list[dict]) -> FeatureBatch:
    feats = [it["feats"] for it in items]
    target = None
    if items and items[0].get("target") is not None:
        target = pad_stack([it["target"] for it in items])
    return FeatureBatch(pad_stack(feats), torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
                        [it["utt"] for it in items], target)


class FeatureDataset(torch.utils.data.Dataset):
    """Per-utterance features of a Kaldi data dir (see the module docstring).

    Args:
        data_dir: the Kaldi data directory.
        features: FeatureConfig for on-the-fly features, or None to read `feats.scp` (external).
        target_features: FeatureConfig of a second stream computed from the audio, or None.
        cmvn: "none" | "utterance" | "speaker" (speaker needs cmvn.scp and utt2spk) | "global".
        norm_vars: also normalise variances for speaker and global CMVN.
        delta_order, delta_window: Kaldi add-deltas after the normalisation (0 = none); the
            feature dim becomes D * (delta_order + 1).
        global_stats: Kaldi (2, D+1) stats for cmvn "global" (e.g. the training set's
            `global_stats`); None: accumulated over this dataset's utterances.
        max_timestep, max_timestep_policy, seed: see the module docstring.
        utts: restrict to these utterance ids (default: all, sorted).
        cache: keep each utterance's (normalised) features in memory after the first read (small
            corpora; with DataLoader workers each worker holds its own cache).
    """

    def __init__(self, data_dir: str | Path, *, features=None, target_features=None, cmvn: str = "none",
                 norm_vars: bool = False, max_timestep: int = 0, max_timestep_policy: str = "drop",
                 seed: int = 0, utts: list[str] | None = None, cache: bool = False,
                 global_stats: np.ndarray | None = None, delta_order: int = 0, delta_window: int = 2):
        from s3prl.data.kaldi_dir import DataDir

        self.path = Path(data_dir)
        if not self.path.is_dir():
            raise UserError(f"{self.path}: data directory does not exist")
        self.dd = DataDir(self.path)
        all_utts = list(self.dd.utts)
        if not all_utts:
            raise UserError(f"{self.path}: empty data directory (no utterances in utt2spk)")
        self.utts = list(utts) if utts is not None else all_utts
        missing = [u for u in self.utts if u not in set(all_utts)]
        if missing:
            raise UserError(f"{self.path}: utterance '{missing[0]}' is not in the data directory")
        self.features = features
        self.target_features = target_features
        self.external = features is None
        if cmvn not in ("none", "utterance", "speaker", "global"):
            raise UserError(f"cmvn: '{cmvn}' is not one of none, utterance, speaker, global")
        if global_stats is not None and cmvn != "global":
            raise ValueError("global_stats is only used with cmvn 'global'")
        self.cmvn, self.norm_vars = cmvn, norm_vars
        if delta_order < 0 or delta_window < 1:
            raise UserError(f"delta_order must be >= 0 and delta_window >= 1, got {delta_order} and {delta_window}")
        self.delta_order, self.delta_window = delta_order, delta_window
        self.max_timestep, self.policy, self.seed = max_timestep, max_timestep_policy, seed
        self.epoch = 0
        self.cache = cache
        self._cache: dict[int, tuple] = {}
        if self.external:
            if not self.dd.feats_scp:
                raise UserError(f"{self.path}/feats.scp: missing (needed for external features)")
            if target_features is not None:
                raise UserError("a target feature stream needs on-the-fly features from audio, not feats.scp")
        self._cmvn_stats = {}
        if cmvn == "speaker":
            if not self.dd.cmvn_scp:
                raise UserError(f"{self.path}/cmvn.scp: missing (needed for dataloader.cmvn=speaker)")
            self._utt2spk = self.dd.utt2spk
        self.lengths = self._lengths()
        if max_timestep > 0 and max_timestep_policy == "drop":
            keep = [i for i, n in enumerate(self.lengths) if n <= max_timestep]
            dropped = len(self.utts) - len(keep)
            if dropped:
                log.info("%s: dropped %d utterance(s) longer than max_timestep %d", self.path, dropped, max_timestep)
            self.utts = [self.utts[i] for i in keep]
            self.lengths = [self.lengths[i] for i in keep]
            if not self.utts:
                raise UserError(f"{self.path}: every utterance is longer than max_timestep {max_timestep}")
        first = self._raw(self.utts[0])
        self.global_stats = None
        if cmvn == "global":
            self.global_stats = (np.asarray(global_stats, dtype=np.float64) if global_stats is not None
                                 else self._accumulate_global_stats())
            if self.global_stats.ndim != 2 or self.global_stats.shape[1] != first.shape[1] + 1:
                raise UserError(f"{self.path}: {first.shape[1]}-dim features, but the global CMVN statistics "
                                f"are for {self.global_stats.shape[-1] - 1}-dim ones (another feature set's?)")
        self.dim = self._normalise(self.utts[0], first).shape[1]

    def _accumulate_global_stats(self) -> np.ndarray:
        from s3prl.features.cmvn import cmvn_stats
        log.info("%s: global CMVN statistics over %d utterance(s)", self.path, len(self.utts))
        return cmvn_stats(self._raw(u).numpy() for u in self.utts)

    # ------------------------------------------------------------------ lengths
    def _lengths(self) -> list[int]:
        n2f = self.dd.utt2num_frames
        if n2f and all(u in n2f for u in self.utts) and (self.external or self._frames_match_dir()):
            return [int(n2f[u]) for u in self.utts]
        durs = None if self.external else self.dd.utt2dur
        if durs and all(u in durs for u in self.utts):
            from s3prl.features import num_frames
            sr = self.features.sample_rate
            return [num_frames(int(round(float(durs[u]) * sr)), self.features) for u in self.utts]
        log.info("%s: no usable utt2num_frames/utt2dur; reading every utterance for its length", self.path)
        return [int(self._raw(u).shape[0]) for u in self.utts]

    def _frames_match_dir(self) -> bool:
        # utt2num_frames describes the dir's feats.scp; trust it for on-the-fly features only when
        # the dir's frame shift (file `frame_shift`, seconds) equals ours.
        fs = self.path / "frame_shift"
        if not fs.is_file():
            return False
        try:
            return abs(float(fs.read_text().split()[0]) * 1000 - self.features.frame_shift) < 1e-6
        except (ValueError, IndexError):
            return False

    # ------------------------------------------------------------------ items
    def _raw(self, utt: str) -> torch.Tensor:
        if self.external:
            from s3prl.data.ark import read_scp_matrix
            if utt not in self.dd.feats_scp:
                raise UserError(f"{self.path}/feats.scp: no entry for utterance {utt}")
            return torch.from_numpy(read_scp_matrix(self.dd.feats_scp[utt], key=utt))
        from s3prl.data.audio import load_utterance
        from s3prl.features import compute_features, utterance_seed
        wav = load_utterance(self.dd, utt, target_sr=self.features.sample_rate)
        return compute_features(wav, self.features, seed=utterance_seed(self.features, utt))

    def _normalise(self, utt: str, feats: torch.Tensor) -> torch.Tensor:
        if self.cmvn == "speaker":
            spk = self._utt2spk[utt]
            if spk not in self._cmvn_stats:
                from s3prl.data.ark import read_scp_stats
                if spk not in self.dd.cmvn_scp:
                    raise UserError(f"{self.path}/cmvn.scp: no stats for speaker '{spk}'")
                self._cmvn_stats[spk] = read_scp_stats(self.dd.cmvn_scp[spk], key=spk)
            from s3prl.features.cmvn import apply_cmvn
            feats = apply_cmvn(feats, self._cmvn_stats[spk], norm_vars=self.norm_vars)
        elif self.cmvn == "utterance":
            from s3prl.features.cmvn import utterance_cmvn
            feats = utterance_cmvn(feats)
        elif self.cmvn == "global":
            from s3prl.features.cmvn import apply_cmvn
            feats = apply_cmvn(feats, self.global_stats, norm_vars=self.norm_vars)
        if self.delta_order:
            from s3prl.features.deltas import add_deltas
            feats = add_deltas(feats, self.delta_order, self.delta_window)
        return feats

    def _item_feats(self, i: int) -> torch.Tensor:
        utt = self.utts[i]
        return self._normalise(utt, self._raw(utt))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch for the seeded random crop."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def _streams(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if i in self._cache:
            return self._cache[i]
        utt = self.utts[i]
        feats = self._item_feats(i)
        target = None
        if self.target_features is not None:
            from s3prl.data.audio import load_utterance
            from s3prl.features import compute_features
            wav = load_utterance(self.dd, utt, target_sr=self.target_features.sample_rate)
            target = compute_features(wav, self.target_features)
            n = min(feats.shape[0], target.shape[0])
            feats, target = feats[:n], target[:n]
        if self.cache:
            self._cache[i] = (feats, target)
        return feats, target

    def __getitem__(self, i: int) -> dict:
        utt = self.utts[i]
        feats, target = self._streams(i)
        T = feats.shape[0]
        if T == 0:
            raise UserError(f"{self.path}: utterance {utt} has no frames (audio shorter than one window?)")
        if self.max_timestep > 0 and self.policy == "crop" and T > self.max_timestep:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            s = int(rng.integers(0, T - self.max_timestep + 1))
            feats = feats[s:s + self.max_timestep]
            if target is not None:
                target = target[s:s + self.max_timestep]
        return {"utt": utt, "feats": feats.contiguous(), "target": None if target is None else target.contiguous()}

    def bucket_lengths(self) -> list[int]:
        """Lengths as seen by the sampler (after cropping)."""
        if self.max_timestep > 0 and self.policy == "crop":
            return [min(n, self.max_timestep) for n in self.lengths]
        return list(self.lengths)
