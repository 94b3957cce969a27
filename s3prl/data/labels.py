"""Downstream label files of the CPC protocol: frame phone labels, the train/dev/test split and
speaker labels (github.com/s3prl/s3prl @ b72a2cd9, dataloader.py: CPC_Phone_Dataset, Speaker_Dataset).

Formats (as distributed with CPC, Oord et al. 2018, and used by S3PRL 2020 `data/cpc_phone/`):

- ``converted_aligned_phones.txt``: one line per utterance, ``<utt-id> id id id ...``, one integer
  phone id per 10 ms frame (25 ms window, Kaldi framing: frames = 1 + (N - 400) // 160), ids in
  ``[0, 41)``.
- ``train_split.txt`` / ``test_split.txt``: one utterance id per line.

Train/dev split, exactly as S3PRL 2020 did it: the lines of ``train_split.txt`` in file order are
shuffled with Python's ``random`` seeded by 1337 (``random.seed(1337); random.shuffle(lst)``, the
same permutation as ``random.Random(1337).shuffle(lst)``), the first ``int(0.9 * N)`` ids are
train and the remaining 10 % are dev (22,830 ids -> 20,547 train / 2,283 dev on the real file).
``test_split.txt`` is the test set, in file order.

Speakers: the speaker of ``103-1240-0000`` is ``103`` (the prefix before the first ``-``); the
class index of a speaker is its position in the sorted (C byte order) list of the speakers of
``train_split.txt`` (train + dev; 251 on real train-clean-100, where every test speaker also occurs
in train). A test speaker outside that list is refused.

Features and labels are truncated to the shorter of the two; a mismatch of more than
``MAX_FRAME_MISMATCH`` (2) frames means the features do not use the labels' 10 ms framing (e.g.
Mockingjay's 12.5 ms mel160) or belong to another utterance, and is refused.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from s3prl.errors import UserError

NUM_PHONE_CLASSES = 41
PHONE_FILE = "converted_aligned_phones.txt"
TRAIN_SPLIT_FILE = "train_split.txt"
TEST_SPLIT_FILE = "test_split.txt"
SPLIT_SEED = 1337
TRAIN_PROPORTION = 0.9
MAX_FRAME_MISMATCH = 2


def read_phone_labels(path: str | Path, num_classes: int = NUM_PHONE_CLASSES,
                      utts: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Read a CPC ``converted_aligned_phones.txt``.

    Args:
        path: the label file.
        num_classes: ids must lie in ``[0, num_classes)``.
        utts: if given, only these utterances are parsed and kept (the real file has 28k lines;
            parsing only what a run needs keeps start-up short). Missing ones are not checked
            here: see `check_coverage`.
    Returns:
        utt-id -> int64 array (T,) of phone ids.
    Raises:
        UserError naming file and line for a malformed line, a duplicate utterance, a non-integer
        or an out-of-range id.
    """
    path = Path(path)
    wanted = set(utts) if utts is not None else None
    out: dict[str, np.ndarray] = {}
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read phone labels: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            utt = parts[0]
            if wanted is not None and utt not in wanted:
                continue
            if utt in out:
                raise UserError(f"{path}:{lineno}: duplicate utterance '{utt}'")
            if len(parts) < 2:
                raise UserError(f"{path}:{lineno}: utterance '{utt}' has no labels")
            try:
                ids = np.array([int(x) for x in parts[1:]], dtype=np.int64)
            except ValueError:
                bad = next(x for x in parts[1:] if not _is_int(x))
                raise UserError(f"{path}:{lineno}: utterance '{utt}': label '{bad}' is not an integer") from None
            bad_mask = (ids < 0) | (ids >= num_classes)
            if bad_mask.any():
                bad = int(ids[bad_mask][0])
                raise UserError(f"{path}:{lineno}: utterance '{utt}': class id {bad} is out of range "
                                f"[0, {num_classes})")
            out[utt] = ids
    return out


def _is_int(x: str) -> bool:
    try:
        int(x)
        return True
    except ValueError:
        return False


def read_split(path: str | Path) -> list[str]:
    """Read a split file (one utterance id per line) in file order; duplicates are refused."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read split file: {e.strerror}") from None
    utts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            raise UserError(f"{path}:{lineno}: expected one utterance id per line, got '{line.strip()}'")
        if parts[0] in seen:
            raise UserError(f"{path}:{lineno}: duplicate utterance '{parts[0]}' (first on line {seen[parts[0]]})")
        seen[parts[0]] = lineno
        utts.append(parts[0])
    if not utts:
        raise UserError(f"{path}: split file is empty")
    return utts


def split_train_dev(utts: Sequence[str], seed: int = SPLIT_SEED,
                    train_proportion: float = TRAIN_PROPORTION) -> tuple[list[str], list[str]]:
    """S3PRL 2020's seeded split: shuffle a copy with ``random.Random(seed)``; first
    ``int(train_proportion * N)`` ids are train, the rest dev. Returns (train, dev)."""
    if not 0.0 < train_proportion < 1.0:
        raise UserError(f"train_proportion must be in (0, 1), got {train_proportion}")
    lst = list(utts)
    random.Random(seed).shuffle(lst)
    n_train = int(len(lst) * train_proportion)
    if n_train == 0 or n_train == len(lst):
        raise UserError(f"cannot split {len(lst)} utterances {train_proportion:g}/{1 - train_proportion:g} "
                        "into non-empty train and dev sets")
    return lst[:n_train], lst[n_train:]


def cpc_splits(label_dir: str | Path, seed: int = SPLIT_SEED,
               train_proportion: float = TRAIN_PROPORTION) -> dict[str, list[str]]:
    """The CPC protocol's splits from ``<label_dir>/{train,test}_split.txt``.

    Returns {"train": [...], "dev": [...], "test": [...]}; an utterance in both split files is
    refused (the protocol's test set is disjoint from train/dev).
    """
    label_dir = Path(label_dir)
    train_all = read_split(label_dir / TRAIN_SPLIT_FILE)
    test = read_split(label_dir / TEST_SPLIT_FILE)
    both = set(train_all) & set(test)
    if both:
        raise UserError(f"{label_dir / TEST_SPLIT_FILE}: utterance '{sorted(both)[0]}' is also in "
                        f"{TRAIN_SPLIT_FILE} ({len(both)} shared)")
    train, dev = split_train_dev(train_all, seed, train_proportion)
    return {"train": train, "dev": dev, "test": test}


def speaker_of(utt: str) -> str:
    """Speaker id of a LibriSpeech-style utterance id: the prefix before the first '-'."""
    return utt.split("-", 1)[0]


def speaker_classes(utts: Iterable[str]) -> dict[str, int]:
    """speaker -> class index, the position in the sorted list of the speakers of `utts`."""
    return {spk: i for i, spk in enumerate(sorted({speaker_of(u) for u in utts}))}


def speaker_labels(utts: Iterable[str], classes: dict[str, int], source: str = "") -> dict[str, int]:
    """utt -> speaker class index; a speaker unknown to `classes` is a UserError."""
    out = {}
    for u in utts:
        spk = speaker_of(u)
        if spk not in classes:
            raise UserError(f"{source + ': ' if source else ''}utterance '{u}': speaker '{spk}' does not "
                            f"occur in the training split ({len(classes)} speakers)")
        out[u] = classes[spk]
    return out


def check_coverage(utts: Iterable[str], available: Iterable[str], what: str, where: str | Path) -> None:
    """Refuse when some of `utts` are missing from `available` (labels or features)."""
    have = set(available)
    missing = [u for u in utts if u not in have]
    if missing:
        raise UserError(f"{where}: {what} missing for {len(missing)} utterance(s), first '{missing[0]}'")


def aligned_length(utt: str, num_feat_frames: int, num_labels: int,
                   max_mismatch: int = MAX_FRAME_MISMATCH) -> int:
    """Common length of features and labels: the shorter one, if they differ by <= max_mismatch.

    Raises UserError naming the utterance and both counts otherwise.
    """
    if abs(num_feat_frames - num_labels) > max_mismatch:
        raise UserError(f"utterance '{utt}': {num_feat_frames} feature frames vs {num_labels} label frames "
                        f"(more than {max_mismatch} apart: features must use the labels' 25 ms / 10 ms framing)")
    return min(num_feat_frames, num_labels)
