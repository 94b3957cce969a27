"""Labelled frame-feature datasets for downstream classification.

Inputs come from a Kaldi data directory through `s3prl.data.dataset.FeatureDataset`:

- the fast path: representations dumped by ``utils/dump_feats.sh`` (``dump/<upstream>/<layer>/
  <split>/`` with feats.scp, utt2num_frames, optional cmvn.scp) or any Kaldi feature dir (fbank,
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

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s3prl.atomic import file_sha256
from s3prl.data.labels import MAX_FRAME_MISMATCH, aligned_length
from s3prl.errors import UserError

IGNORE_INDEX = -100
DUMP_INFO_FILES = ("upstream.json",)


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


# The upstream.json fields that decide what a dump holds (not where the checkpoint lies or when
# it was touched: a copied or moved checkpoint with the same sha256 made the same states).
IDENTITY_KEYS = ("sha256", "name", "features", "layer", "chunk_context", "inputs")
# The files of a plain Kaldi feature dir (fbank, fMLLR) whose content a run's results depend on;
# conf/feats.{yaml,inputs} are utils/compute_feats.sh's record of the config and the audio inputs.
FEATURE_DIR_FILES = ("feats.scp", "cmvn.scp", "utt2spk", "text", "conf/feats.yaml", "conf/feats.inputs")


def source_identity(feats_dir: str | Path | None = None, upstream: str | None = None) -> dict | None:
    """What made a run's inputs, for the config hash that decides skip-if-complete: a dump dir's
    upstream.json (checkpoint sha256, layer, chunk context, sha256 of the data-dir files dumped),
    for a plain Kaldi feature dir the sha256 of its tables and of compute_feats.sh's record (or,
    without that record, the size and mtime of every ark), or for an upstream run on the fly its
    checkpoint's sha256 (an experiment dir stands for its newest checkpoint). A re-trained
    upstream, a re-made dump or features recomputed from edited inputs then no longer match a
    finished run's hash, so the run is not skipped with stale results. None for baselines' names."""
    if feats_dir is not None:
        info = read_dump_info(feats_dir)
        if info:
            return {k: info[k] for k in IDENTITY_KEYS if k in info}
        return feature_dir_identity(feats_dir)
    if upstream:
        from s3prl.bin.extract import upstream_identity
        try:
            ident = upstream_identity(upstream)
        except UserError:
            return None   # not a checkpoint: the loader names the problem when the run starts
        return {"sha256": ident["sha256"]} if "sha256" in ident else None
    return None


def feature_dir_identity(feats_dir: str | Path) -> dict | None:
    """The identity of a plain Kaldi feature dir (see `source_identity`); None without feats.scp."""
    d = Path(feats_dir)
    if not (d / "feats.scp").is_file():
        return None
    out: dict = {"files": {n: file_sha256(d / n) for n in FEATURE_DIR_FILES if (d / n).is_file()}}
    if not (d / "conf" / "feats.inputs").is_file():
        arks = set()
        for table in ("feats.scp", "cmvn.scp"):
            if (d / table).is_file():
                for line in (d / table).read_text(encoding="utf-8").splitlines():
                    parts = line.split(None, 1)
                    if len(parts) == 2:
                        arks.add(parts[1].strip().rsplit(":", 1)[0])
        out["arks"] = {}
        for a in sorted(arks):
            try:
                st = Path(a).stat()
                out["arks"][a] = [st.st_size, st.st_mtime_ns]
            except OSError:
                out["arks"][a] = None
    return out


def read_dump_info(feats_dir: str | Path) -> dict | None:
    """What a dump dir records about how it was made, or None (plain Kaldi feature dirs).

    ``utils/dump_feats.sh`` (s3prl.bin.extract) writes ``upstream.json`` into every layer dir:
    ``{"path", "size", "mtime", "sha256", "layer"}`` for a checkpoint or ``{"name", "features",
    "layer"}`` for a baseline. Returned with "upstream" set to the path or name.
    """
    d = Path(feats_dir)
    for name in DUMP_INFO_FILES:
        p = d / name
        if p.is_file():
            info = _read_json(p)
            check_dump_complete(d, info)
            up = info.get("upstream", info.get("path", info.get("name")))
            return {**info, "upstream": str(up)} if up is not None else dict(info)
    return None


def _read_json(p: Path) -> dict:
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{p}: malformed JSON: {e}") from None
    if not isinstance(info, dict):
        raise UserError(f"{p}: expected a JSON object")
    return info


def check_dump_complete(feats_dir: str | Path, info: dict) -> None:
    """Refuse a layer dir ``<dump>/layer-<k>/<set>`` of a dump that ``utils/dump_feats.sh`` has not
    finished: the set's completion record ``<dump>/complete/<set>.json`` (written last, see
    s3prl.bin.extract) must exist, list layer k and name the same upstream. A dump killed between
    layers leaves complete-looking layer dirs behind; reading one would evaluate the wrong layer
    or a set dumped from older inputs. Feature dirs outside that layout are not dumps: no check."""
    d = Path(feats_dir)
    m = re.fullmatch(r"layer-(\d+)", d.parent.name)
    dump = d.parent.parent
    if m is None or not (dump / "upstream.json").is_file():
        return
    rec_path = dump / "complete" / f"{d.name}.json"
    if not rec_path.is_file():
        raise UserError(f"{d}: part of an incomplete dump (no {rec_path}: utils/dump_feats.sh did not finish "
                        f"'{d.name}'); run it again")
    rec = _read_json(rec_path)
    if int(m.group(1)) not in (rec.get("layers") or []):
        raise UserError(f"{d}: layer {m.group(1)} is not part of the complete dump {rec_path} "
                        f"(layers {rec.get('layers')}); run utils/dump_feats.sh again")
    if any(rec.get(k) != info.get(k) for k in ("sha256", "name", "chunk_context", "inputs")):
        raise UserError(f"{d}: made by another dump than the one {rec_path} records complete "
                        f"(upstream or inputs differ); run utils/dump_feats.sh again")



def same_upstream(named: str, info: dict) -> bool:
    """Whether an upstream named on the command line is the one a dump recorded (`info` from
    `read_dump_info`).

    A named checkpoint file must have the recorded sha256 (or resolve to the recorded path when
    none is recorded). A name is otherwise accepted if it equals the recorded name/path, or is a
    path component (or file stem) of the recorded checkpoint path: ``tera_tiny`` and
    ``exp/tera_tiny`` match ``/abs/exp/tera_tiny/states-1000.ckpt``; ``apc_tiny`` does not.
    """
    recorded = str(info.get("upstream"))
    a, b = Path(named), Path(recorded)
    if a.is_file():
        if info.get("sha256"):
            return file_sha256(a) == info["sha256"]
        return b.exists() and a.resolve() == b.resolve()
    if named == recorded:
        return True
    if a.is_dir() and b.exists() and b.resolve().is_relative_to(a.resolve()):
        return True
    named_parts = tuple(p for p in a.parts if p not in (".", ""))
    n = len(named_parts)
    if n and any(b.parts[i:i + n] == named_parts for i in range(len(b.parts) - n + 1)):
        return True
    return a.name == b.stem
