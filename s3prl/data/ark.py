"""Kaldi ark/scp writing and reading, around kaldiio (kaldi-asr/kaldi, src/util/kaldi-table.h).

`ArkWriter` writes binary Kaldi matrices (``FM`` float32, ``DM`` float64, or compressed
``CM``/``CM2``/``CM3`` with kaldiio's `compression_method`) into ``NAME.ark`` and the index
``NAME.scp`` with **absolute** ark paths and offsets pointing at the ``\\0B`` marker, as Kaldi's
``copy-feats ark:- ark,scp:A,S`` does. Both files are written under temporary names and renamed
into place only when the writer closes without an error (the ark first, then the scp), so a killed
run never leaves an scp that a rerun would take as complete. NaN or Inf in a matrix is a UserError
naming the utterance. Uncompressed matrices are written directly (the same bytes as kaldiio's
`save_ark`, without its copy of the data) through a 1 MiB buffer; the ark and the scp are
fsynced once each, at close, before the renames (the durability every atomic output has).

Readers return writable copies (kaldiio's binary reads are read-only views).
"""
from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Iterator

import kaldiio
import numpy as np

from s3prl.atomic import FULL_ERRNOS, _tmp_name, disk_full_error, fsync_dir
from s3prl.errors import UserError


_BUFFER = 1 << 20
# Kaldi binary matrix headers: "<key> \0B" then the token and two (size byte 4, int32) dims.
_TOKEN = {np.dtype(np.float32): b"FM ", np.dtype(np.float64): b"DM "}


def _all_finite(arr: np.ndarray) -> bool:
    """True if no NaN or Inf: max/min propagate NaN and reach +-Inf, with no boolean temporary."""
    if arr.size == 0:
        return True
    return bool(np.isfinite(arr.max()) and np.isfinite(arr.min()))


def _named(e: OSError, path: Path) -> OSError:
    """A write error of `path`'s temporary file, naming `path` (s3prl.atomic.disk_full_error)."""
    if e.errno in FULL_ERRNOS:
        return disk_full_error(e, path)
    return OSError(e.errno, e.strerror, str(path))


def _check_key(key: str) -> None:
    if not key or any(c.isspace() for c in key):
        raise UserError(f"invalid Kaldi key {key!r}: keys are non-empty and contain no whitespace")


class ArkWriter:
    """Context manager writing matrices to an ark and an scp atomically.

    Args:
        ark_path, scp_path: final file names (the ark path in the scp is made absolute).
        compression: None (exact ``FM``/``DM``) or a kaldiio/Kaldi compression method 1-7
            (1 = auto CM/CM2, 2 = CM, 3 = CM2, ...); float32 only.
        dtype: np.float32 (``FM``) or np.float64 (``DM``, e.g. CMVN stats).

    Usage: ``with ArkWriter(a, s) as w: w.write(utt, mat)`` (or ``w[utt] = mat``).
    """

    def __init__(self, ark_path: str | Path, scp_path: str | Path, compression: int | None = None,
                 dtype=np.float32):
        self.ark_path = Path(os.path.abspath(ark_path))
        self.scp_path = Path(os.path.abspath(scp_path))
        self.compression = compression
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"ArkWriter writes float32 or float64 matrices, not {self.dtype}")
        if compression is not None and (self.dtype != np.float32 or not 1 <= int(compression) <= 7):
            raise UserError(f"compression method {compression!r} is invalid (1-7, float32 only)")
        self._ark = None
        self._scp_lines: list[str] = []
        self._keys: set[str] = set()
        self.count = 0

    def __enter__(self) -> "ArkWriter":
        self.ark_path.parent.mkdir(parents=True, exist_ok=True)
        self.scp_path.parent.mkdir(parents=True, exist_ok=True)
        self._ark_tmp = _tmp_name(self.ark_path)
        self._scp_tmp = _tmp_name(self.scp_path)
        self._ark = open(self._ark_tmp, "wb", buffering=_BUFFER)
        return self

    def write(self, key: str, mat) -> None:
        """Append matrix `mat` (T, D) under `key`."""
        if self._ark is None:
            raise RuntimeError("ArkWriter.write outside its with-block")
        _check_key(key)
        if key in self._keys:
            raise UserError(f"{self.scp_path}: duplicate key {key}")
        arr = np.asarray(mat.detach().cpu().numpy() if hasattr(mat, "detach") else mat)
        if arr.ndim != 2:
            raise UserError(f"utterance {key}: expected a 2-D matrix, got shape {arr.shape}")
        if not _all_finite(arr):
            raise UserError(f"utterance {key}: matrix contains NaN or Inf")
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        start = self._ark.tell()
        try:
            if self.compression is None:
                if arr.dtype.byteorder == ">":
                    arr = arr.astype(arr.dtype.newbyteorder("<"))
                self._ark.write(key.encode() + b" \0B" + _TOKEN[self.dtype]
                                + struct.pack("<bib", 4, arr.shape[0], 4)
                                + struct.pack("<i", arr.shape[1]))
                if arr.size:
                    self._ark.write(arr)  # the buffer itself (C-contiguous), no bytes copy
            else:
                kaldiio.save_ark(self._ark, {key: arr}, compression_method=self.compression)
        except OSError as e:  # disk full / file too large: name the output, not a temporary name
            raise _named(e, self.ark_path) from None
        offset = start + len(key.encode()) + 1
        self._scp_lines.append(f"{key} {self.ark_path}:{offset}\n")
        self._keys.add(key)
        self.count += 1

    __setitem__ = write

    def __exit__(self, exc_type, exc, tb) -> None:
        ark, self._ark = self._ark, None
        try:
            if exc_type is not None:
                with contextlib.suppress(OSError):  # the buffered tail may fail too; keep the first error
                    ark.close()
                return
            try:
                ark.flush()
                os.fsync(ark.fileno())
            except OSError as e:  # the buffered tail hit a full disk: name the output
                with contextlib.suppress(OSError):
                    ark.close()
                raise _named(e, self.ark_path) from None
            ark.close()
            try:
                with open(self._scp_tmp, "w", encoding="utf-8") as f:
                    f.writelines(self._scp_lines)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise _named(e, self.scp_path) from None
            os.replace(self._ark_tmp, self.ark_path)
            os.replace(self._scp_tmp, self.scp_path)
            fsync_dir(self.ark_path.parent)
            if self.scp_path.parent != self.ark_path.parent:
                fsync_dir(self.scp_path.parent)
        finally:
            for p in (self._ark_tmp, self._scp_tmp):
                if p.exists():
                    p.unlink()


def read_scp_matrix(entry: str, key: str = "") -> np.ndarray:
    """Read one matrix from an scp value ``/abs/x.ark:123`` (ranges allowed) as writable float32."""
    try:
        mat = kaldiio.load_mat(entry)
    except Exception as e:
        who = f"utterance {key}: " if key else ""
        raise UserError(f"{who}cannot read matrix '{entry}': {' '.join(str(e).split())}") from None
    if isinstance(mat, tuple):  # (rate, wav) from a wav entry
        raise UserError(f"{'utterance ' + key + ': ' if key else ''}'{entry}' is audio, not a matrix")
    mat = np.array(mat, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(mat)):
        raise UserError(f"{'utterance ' + key + ': ' if key else ''}matrix '{entry}' contains NaN or Inf")
    return mat


def read_scp_stats(entry: str, key: str = "") -> np.ndarray:
    """Read a CMVN stats matrix (2, D+1) as float64 (not rounded through float32)."""
    try:
        mat = kaldiio.load_mat(entry)
    except Exception as e:
        raise UserError(f"{key + ': ' if key else ''}cannot read stats '{entry}': {' '.join(str(e).split())}") from None
    return np.array(mat, dtype=np.float64, copy=True)


def iter_scp(scp_path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (key, writable float32 matrix) for every line of an scp, in file order."""
    scp_path = Path(scp_path)
    try:
        lines = scp_path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"{scp_path}: cannot read: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise UserError(f"{scp_path}:{n}: expected '<key> <rxfilename>'")
        yield parts[0], read_scp_matrix(parts[1], key=parts[0])


def write_cmvn_ark(ark_path: str | Path, scp_path: str | Path, stats: dict) -> None:
    """Write speaker-keyed (2, D+1) float64 CMVN stats (``DM``) and their scp, atomically."""
    with ArkWriter(ark_path, scp_path, dtype=np.float64) as w:
        for spk in sorted(stats, key=lambda s: s.encode()):
            w.write(spk, stats[spk])
