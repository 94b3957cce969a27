"""Phone classification on the CPC protocol (Oord et al. 2018; S3PRL 2020 `phone_linear`,
`phone_1hidden`, `phone_concat`;
github.com/s3prl/s3prl @ b72a2cd9, downstream/model.py).

41 classes, one label per 10 ms frame from ``converted_aligned_phones.txt``; train/dev = the
seeded 90/10 shuffle of ``train_split.txt``, test = ``test_split.txt`` (s3prl.data.labels).
Features and labels are truncated to the shorter of the two (at most 2 frames apart). The loss is
frame-wise cross-entropy over valid frames; the metric is frame accuracy over valid frames (padding
is labelled -100 and never counted).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from s3prl.data.labels import PHONE_FILE, check_coverage, read_phone_labels


def phone_labels(label_dir: str | Path, splits: dict[str, list[str]],
                 num_classes: int = 41) -> dict[str, dict[str, np.ndarray]]:
    """Frame labels of every split: split -> utt -> int64 (T,) phone ids.

    Only the utterances of `splits` are parsed; one missing from the label file, or an id
    outside [0, num_classes), is a UserError naming the file (and line).
    """
    path = Path(label_dir) / PHONE_FILE
    wanted = [u for utts in splits.values() for u in utts]
    labels = read_phone_labels(path, num_classes, utts=wanted)
    out = {}
    for name, utts in splits.items():
        check_coverage(utts, labels, f"phone labels (split '{name}')", path)
        out[name] = {u: labels[u] for u in utts}
    return out
