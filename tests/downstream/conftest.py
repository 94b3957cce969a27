"""Tiny CPC-protocol fixtures for the downstream tests.

`make_cpc` writes, under a directory:
- ``cpc/``: converted_aligned_phones.txt, train_split.txt, test_split.txt in the CPC format;
- ``feats/``: a Kaldi data dir (feats.scp + ark written with kaldiio, utt2spk, spk2utt,
  utt2num_frames, frame_shift) whose features carry the label signal plus noise: frame t of an
  utterance of speaker s is ``phone_mean[label_t] + speaker_mean[s] + noise``.

Phone labels come in runs of 3-8 frames over the first `num_phones` classes; utterances have
50-100 frames. `feat_extra` adds frames to the features (within / beyond the 2-frame tolerance).
`offset` is added to every feature (log-mel energies sit near 15, far from zero).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np
import pytest


@dataclass
class CpcFixture:
    root: Path
    labels: Path
    feats: Path
    utts: list[str]
    phone_labels: dict
    speakers: list[str]
    dim: int


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def build_cpc(root: Path, *, speakers=("1034", "103", "19", "2007"), utts_per_speaker=6, test_per_speaker=1,
              dim=12, num_phones=6, noise=0.6, seed=0, feat_extra=0, label_shift=0, offset=0.0) -> CpcFixture:
    rng = np.random.default_rng(seed)
    phone_means = rng.normal(0, 1.5, size=(41, dim))
    spk_means = {s: rng.normal(0, 1.0, size=dim) for s in speakers}
    utts, labels, feats = [], {}, {}
    for s in speakers:
        for k in range(utts_per_speaker):
            utt = f"{s}-{100 + k % 2}-{k:04d}"
            T = int(rng.integers(50, 101))
            lab = []
            while len(lab) < T:
                lab += [int(rng.integers(0, num_phones))] * int(rng.integers(3, 9))
            lab = np.array(lab[:T], dtype=np.int64)
            x = offset + phone_means[lab] + spk_means[s] + rng.normal(0, noise, size=(T, dim))
            if feat_extra > 0:
                x = np.concatenate([x, x[-1:].repeat(feat_extra, 0)])
            utts.append(utt)
            labels[utt] = lab
            feats[utt] = x.astype(np.float32)
    utts.sort()
    cpc = root / "cpc"
    # label_shift > 0 moves every label sequence later by that many frames (misaligned labels).
    lines = []
    for u in utts:
        lab = labels[u]
        if label_shift:
            lab = np.concatenate([np.full(label_shift, lab[0]), lab[:-label_shift]])
        lines.append(u + " " + " ".join(map(str, lab)))
    _write(cpc / "converted_aligned_phones.txt", lines)
    test = [u for s in speakers for u in [x for x in utts if x.startswith(s + "-")][:test_per_speaker]]
    train = [u for u in utts if u not in test]
    _write(cpc / "train_split.txt", train)
    _write(cpc / "test_split.txt", test)
    fd = root / "feats"
    fd.mkdir(parents=True, exist_ok=True)
    kaldiio.save_ark(str(fd / "raw.ark"), {u: feats[u] for u in utts}, scp=str(fd / "feats.scp"))
    _write(fd / "utt2spk", [f"{u} {u.split('-')[0]}" for u in utts])
    spk2utt = {}
    for u in utts:
        spk2utt.setdefault(u.split("-")[0], []).append(u)
    _write(fd / "spk2utt", [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())])
    _write(fd / "utt2num_frames", [f"{u} {feats[u].shape[0]}" for u in utts])
    _write(fd / "frame_shift", ["0.01"])
    return CpcFixture(root, cpc, fd, utts, labels, sorted(speakers), dim)


@pytest.fixture
def cpc(tmp_path) -> CpcFixture:
    return build_cpc(tmp_path)
