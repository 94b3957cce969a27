"""Kaldi alignment directories (`exp/tri4b_ali_train/`): reading `ali.*.gz` and checking that
their lengths agree with a feature data dir's frame counts.

A Kaldi alignment dir (written by `steps/align_si.sh`, `steps/align_fmllr.sh`, nnet1's
`align.sh`) holds `final.mdl` (the transition model), `num_jobs` and `ali.1.gz .. ali.N.gz`:
gzip'ed binary archives of int32 vectors, one per utterance, one transition-id per 10 ms frame
(kaldi-asr/kaldi, src/base/io-funcs-inl.h, WriteIntegerVector: `key ' ' '\\0B' '\\x04' <int32 size>`
then size times `'\\x04' <int32>`). PyTorch-Kaldi turns them into pdf ids with `ali-to-pdf
final.mdl`, keeps only the utterances present in both the features and the alignments, and assumes
frame i of the features is frame i of the alignment (mravanelli/pytorch-kaldi, data_io.py). The
number of frames does not depend on that mapping, so reading the int vectors is enough to check the
hand-off.

Mismatched framing (e.g. 12.5 ms Mockingjay features against 10 ms GMM alignments, s3prl#44,
pytorch-kaldi#46) is the classic silent failure; `check_alignments` turns it into an error.
"""
from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path
from typing import Iterator

import kaldiio
import numpy as np

from s3prl.atomic import atomic_path
from s3prl.data.kaldi_dir import DataDir
from s3prl.errors import UserError

_ALI_RE = re.compile(r"^ali\.(\d+)\.gz$")


def alignment_archives(ali_dir: str | Path) -> list[Path]:
    """The `ali.N.gz` files of an alignment dir, in job order (1, 2, ..., 10, 11).

    Raises UserError when the dir is missing or holds no `ali.*.gz`.
    """
    ali_dir = Path(ali_dir)
    if not ali_dir.is_dir():
        raise UserError(f"{ali_dir}: alignment directory does not exist")
    found = []
    for p in ali_dir.iterdir():
        m = _ALI_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    if not found:
        raise UserError(f"{ali_dir}: no ali.*.gz alignment archives in this directory")
    return [p for _, p in sorted(found)]


def iter_alignments(ali_dir: str | Path) -> Iterator[tuple[str, np.ndarray, Path]]:
    """Yield (utterance id, int32 alignment (T,), archive path) over every `ali.*.gz`."""
    for path in alignment_archives(ali_dir):
        try:
            with gzip.open(path, "rb") as f:
                for key, vec in kaldiio.load_ark(f):
                    arr = np.asarray(vec)
                    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                        raise UserError(f"{path}: utterance {key}: not an int32 vector "
                                        f"(got {arr.dtype} with shape {arr.shape})")
                    yield key, arr, path
        except UserError:
            raise
        except (OSError, EOFError, zlib.error, ValueError, TypeError) as e:
            msg = " ".join(str(e).split())
            raise UserError(f"{path}: not a gzip'ed Kaldi binary int-vector archive: {msg}") from None


def read_alignment_lengths(ali_dir: str | Path) -> dict[str, int]:
    """{utterance id: number of frames} over all `ali.*.gz` of `ali_dir`.

    A key present in two archives is an error naming both files.
    """
    lengths: dict[str, int] = {}
    where: dict[str, Path] = {}
    for key, vec, path in iter_alignments(ali_dir):
        if key in lengths:
            raise UserError(f"{path}: utterance {key} is also aligned in {where[key]}")
        lengths[key] = int(vec.shape[0])
        where[key] = path
    return lengths


def write_alignments(path: str | Path, alignments: dict[str, np.ndarray]) -> None:
    """Write `{utt: int vector}` as a gzip'ed Kaldi binary ark (`ali.N.gz`), keys sorted.

    Used by tests and by tools that fake an alignment dir; values are cast to int32 because
    Kaldi's int vectors are 32-bit (kaldiio would write int64 as a different type).
    """
    buf = io.BytesIO()
    kaldiio.save_ark(buf, {k: np.asarray(alignments[k], dtype=np.int32) for k in sorted(alignments)})
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wb") as f:
            f.write(buf.getvalue())


def compare_lengths(frames: dict[str, int], ali: dict[str, int], *, tolerance: int = 1,
                    feats_where: str = "utt2num_frames", ali_where: str = "alignments",
                    allow_missing: bool = False) -> list[str]:
    """Check feature frame counts against alignment lengths.

    Args:
        frames: {utt: number of feature frames} (a data dir's utt2num_frames).
        ali: {utt: alignment length}.
        tolerance: largest accepted |frames - alignment| (1: one frame of edge effect, e.g.
            snip-edges or a rounding of the last hop, which PyTorch-Kaldi absorbs).
        allow_missing: report utterances without alignment instead of failing (PyTorch-Kaldi
            silently drops them; failed alignments are common on real corpora).

    Returns: the utterance ids that have features but no alignment (empty unless allow_missing).
    Raises UserError naming the first utterance whose counts differ by more than `tolerance`, or
    the first utterance missing from either side.
    """
    for utt in sorted(frames):
        if utt in ali and abs(frames[utt] - ali[utt]) > tolerance:
            raise UserError(f"utterance {utt}: {frames[utt]} feature frames ({feats_where}) but "
                            f"{ali[utt]} alignment frames ({ali_where}); the features must use the "
                            f"alignments' framing (10 ms hop, 25 ms window, snip-edges)")
    extra = sorted(set(ali) - set(frames))
    missing = sorted(set(frames) - set(ali))
    if missing and not allow_missing:
        hint = ""
        if missing[0] in {kaldi_to_dash_id(k) for k in extra}:
            hint = "; the alignments use Kaldi's spk_utt ids: re-key them (check_alignments --rekey-into DIR)"
        raise UserError(f"utterance {missing[0]}: has features ({feats_where}) but no alignment in "
                        f"{ali_where} ({len(missing)} of {len(frames)} utterances missing){hint}")
    if extra and not allow_missing:
        raise UserError(f"utterance {extra[0]}: aligned in {ali_where} but has no features in "
                        f"{feats_where} ({len(extra)} such utterances)")
    return missing


def kaldi_to_dash_id(key: str) -> str:
    """Kaldi TIMIT/WSJ-style `spk_utt` ids -> our `spk-utt` (the first '_' becomes '-')."""
    return key.replace("_", "-", 1) if "-" not in key else key


def rekey_ali_dir(src: str | Path, dst: str | Path, key_fn=kaldi_to_dash_id) -> Path:
    """Copy a Kaldi alignment dir with every utterance id passed through `key_fn` (e.g. Kaldi's
    TIMIT `fcjf0_si1027` -> our `fcjf0-si1027`), so PyTorch-Kaldi can join it with our features.

    `ali.N.gz` are rewritten (keys sorted); the other files (final.mdl, tree, num_jobs,
    phones.txt ...) are copied. The dir is built under a temporary name and renamed when complete.
    """
    import shutil

    from s3prl.atomic import atomic_dir

    src, dst = Path(src), Path(dst)
    archives = alignment_archives(src)
    with atomic_dir(dst) as tmp:
        for path in archives:
            vecs: dict[str, np.ndarray] = {}
            with gzip.open(path, "rb") as f:
                for key, vec in kaldiio.load_ark(f):
                    new = key_fn(key)
                    if new in vecs:
                        raise UserError(f"{path}: utterance ids {key} and another map to the same id {new}")
                    vecs[new] = np.asarray(vec)
            write_alignments(tmp / path.name, vecs)
        for p in src.iterdir():
            if p.is_file() and not _ALI_RE.match(p.name):
                shutil.copy2(p, tmp / p.name)
    return dst


def read_frame_counts(data_dir: str | Path) -> tuple[dict[str, int], str]:
    """{utt: frames} of a feature data dir (its utt2num_frames, else the matrices of its
    feats.scp), and the file it came from: the side of the alignment check opposite `ali.*.gz`."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: feature data directory does not exist")
    dd = DataDir(data_dir)
    if dd.utt2num_frames is not None:
        return dict(dd.utt2num_frames), str(data_dir / "utt2num_frames")
    scp = data_dir / "feats.scp"
    if not scp.is_file():
        raise UserError(f"{data_dir}: neither utt2num_frames nor feats.scp exists")
    try:
        return {k: int(m.shape[0]) for k, m in kaldiio.load_scp_sequential(str(scp))}, str(scp)
    except Exception as e:  # kaldiio raises assorted errors on broken scps/arks
        raise UserError(f"{scp}: cannot read features: {' '.join(str(e).split())}") from None
