"""Labelled frame-feature datasets for downstream classification.

Inputs come from a Kaldi data directory through `s3prl.data.dataset.FeatureDataset`:

- the fast path: representations dumped by ``utils/dump_feats.sh`` (``dump/<upstream>/layer-<k>/
  <split>/`` with feats.scp, utt2num_frames, optional cmvn.scp; layout and the dump's records:
  s3prl.dump) or any Kaldi feature dir (fbank,
  MFCC, fMLLR), read from feats.scp, optionally with per-speaker (cmvn.scp) or per-utterance CMVN;
- the on-the-fly path: the upstream's own input features computed from wav.scp with the upstream's
  feature config (or the dir's feats.scp for upstreams trained on external features); the
  upstream itself then runs inside the model (s3prl.downstream.task.DownstreamModel), frozen or
  fine-tuned. Its output has one vector per input frame, so frame counts are known up front.

Each item pairs an utterance's (T, D) features with its label: an int64 (T,) frame label vector
(phones; speaker ``frame`` head: the utterance's class broadcast to every frame) or one class
(utterance heads). Features and frame labels are cut to the shorter of the two, refusing a
mismatch of more than ``max_mismatch`` frames; every utterance is checked when the dataset is
built, so a bad label file fails before training starts. Batches pad features with zeros and
frame labels with ``IGNORE_INDEX`` (-100), which the loss and the accuracy skip.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s3prl.data.labels import MAX_FRAME_MISMATCH, aligned_length
from s3prl.errors import UserError

IGNORE_INDEX = -100


@dataclass
class LabeledBatch:
    feats: torch.Tensor      # (B, T, D) zero padded
    lengths: torch.Tensor    # (B,) int64 valid frames
    labels: torch.Tensor     # (B, T) int64 (IGNORE_INDEX on padding) or (B,) for utterance labels
    utts: list[str]

    def to(self, device) -> "LabeledBatch":
        return LabeledBatch(self.feats.to(device), self.lengths.to(device), self.labels.to(device), self.utts)

    def __len__(self) -> int:
        return len(self.utts)


class FeatureView(torch.utils.data.Dataset):
    """Base of the downstream datasets: a FeatureDataset (`self.features`) seen through per-task
    targets. Subclasses set `utts` (the features' utterances, in order) and `lengths` (frames
    per utterance as batched) and define `__getitem__`."""
    features: object
    utts: list[str]
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.utts)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.features, "set_epoch"):
            self.features.set_epoch(epoch)

    def bucket_lengths(self) -> list[int]:
        return list(self.lengths)


class LabeledFeatureDataset(FeatureView):
    """Features of `features` (a FeatureDataset) with labels.

    Args:
        features: an `s3prl.data.dataset.FeatureDataset` restricted to this split's utterances.
        labels: utt -> int64 (T,) frame labels, or utt -> int class.
        frame_labels: True: items carry (T,) labels (an int label is broadcast to every frame);
            False: items carry one class (needs int labels).
        max_mismatch: the largest feature/label frame-count difference accepted.
        label_source: named in error messages (the label file).
    """

    def __init__(self, features, labels: dict, *, frame_labels: bool, max_mismatch: int = MAX_FRAME_MISMATCH,
                 label_source: str = "labels"):
        self.features = features
        self.frame_labels = frame_labels
        self.max_mismatch = max_mismatch
        self.utts = list(features.utts)
        missing = [u for u in self.utts if u not in labels]
        if missing:
            raise UserError(f"{label_source}: no label for utterance '{missing[0]}' ({len(missing)} missing)")
        self.labels = {u: labels[u] for u in self.utts}
        self.lengths = []
        for u, n in zip(self.utts, features.lengths):
            lab = self.labels[u]
            if isinstance(lab, np.ndarray):
                if not frame_labels:
                    raise UserError(f"{label_source}: utterance '{u}' has frame labels but the head is utterance-level")
                n = aligned_length(u, int(n), len(lab), max_mismatch)
            self.lengths.append(int(n))

    def __getitem__(self, i: int) -> dict:
        item = self.features[i]
        utt, feats = item["utt"], item["feats"]
        lab = self.labels[utt]
        if isinstance(lab, np.ndarray):
            n = aligned_length(utt, feats.shape[0], len(lab), self.max_mismatch)
            feats = feats[:n]
            label = torch.from_numpy(np.array(lab[:n], dtype=np.int64))
        elif self.frame_labels:
            label = torch.full((feats.shape[0],), int(lab), dtype=torch.long)
        else:
            label = torch.tensor(int(lab), dtype=torch.long)
        return {"utt": utt, "feats": feats.contiguous(), "label": label}


def collate_labeled(items: list[dict]) -> LabeledBatch:
    """Pad items into a LabeledBatch (features with zeros, frame labels with IGNORE_INDEX)."""
    feats = [it["feats"] for it in items]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    if items[0]["label"].dim() == 0:
        labels = torch.stack([it["label"] for it in items])
    else:
        labels = torch.nn.utils.rnn.pad_sequence([it["label"] for it in items], batch_first=True,
                                                 padding_value=IGNORE_INDEX)
    return LabeledBatch(padded, lengths, labels, [it["utt"] for it in items])
