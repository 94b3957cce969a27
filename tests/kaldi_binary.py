"""An independent reader of Kaldi's binary archive format, written from Kaldi's writers
(kaldi-asr/kaldi, src/base/io-funcs-inl.h, src/matrix/kaldi-matrix.cc,
src/matrix/compressed-matrix.cc; no kaldiio), so tests can check what our writers produce.

Supported objects after the ``\\0B`` binary marker:
- ``FM `` / ``DM ``: float32 / float64 matrix: size byte 4 + int32 rows, size byte 4 + int32 cols,
  then rows*cols values in row-major order;
- ``FV `` / ``DV ``: float32 / float64 vector: size byte 4 + int32 dim, then the values;
- ``CM `` / ``CM2 `` / ``CM3 ``: compressed matrices: a 16-byte header (float32 min, float32
  range, int32 rows, int32 cols, no size bytes), then
  CM: per column four uint16 percentiles (p0, p25, p75, p100), then uint8 values column-major,
  decoded piecewise linearly over 0-64-192-255; CM2: uint16 row-major; CM3: uint8 row-major;
- int32 vectors: size byte 4 + int32 n, then n times (size byte 4 + int32).

`read_ark(path)` -> dict key -> ndarray (in file order); `read_scp_entry("x.ark:123")` reads the
object at that offset (the offset points at ``\\0B``); `read_scp(path)` reads every line.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


class KaldiFormatError(ValueError):
    pass


def _read_exact(f, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise KaldiFormatError(f"unexpected end of file (wanted {n} bytes, got {len(b)})")
    return b


def _read_int32(f) -> int:
    size = _read_exact(f, 1)[0]
    if size != 4:
        raise KaldiFormatError(f"expected int32 size byte 4, got {size}")
    return struct.unpack("<i", _read_exact(f, 4))[0]


def _read_token(f) -> str:
    out = bytearray()
    while True:
        c = _read_exact(f, 1)
        if c == b" ":
            return out.decode("ascii")
        out += c
        if len(out) > 16:
            raise KaldiFormatError(f"token too long: {bytes(out)!r}")


def _uint16_to_float(mn: float, rng: float, q) -> np.ndarray:
    return mn + rng * (np.asarray(q, dtype=np.float64) / 65535.0)


def _read_compressed(f, token: str) -> np.ndarray:
    mn, rng, rows, cols = struct.unpack("<ffii", _read_exact(f, 16))
    if token == "CM":
        headers = np.frombuffer(_read_exact(f, 8 * cols), dtype="<u2").reshape(cols, 4)
        data = np.frombuffer(_read_exact(f, rows * cols), dtype=np.uint8).reshape(cols, rows)
        out = np.empty((cols, rows), dtype=np.float64)
        for c in range(cols):
            p0, p25, p75, p100 = _uint16_to_float(mn, rng, headers[c])
            b = data[c].astype(np.float64)
            lo = b <= 64
            mid = (b > 64) & (b <= 192)
            hi = b > 192
            vals = np.empty(rows)
            vals[lo] = p0 + (p25 - p0) * b[lo] / 64.0
            vals[mid] = p25 + (p75 - p25) * (b[mid] - 64.0) / 128.0
            vals[hi] = p75 + (p100 - p75) * (b[hi] - 192.0) / 63.0
            out[c] = vals
        return out.T.astype(np.float32)
    if token == "CM2":
        q = np.frombuffer(_read_exact(f, 2 * rows * cols), dtype="<u2").reshape(rows, cols)
        return (mn + rng * q.astype(np.float64) / 65535.0).astype(np.float32)
    if token == "CM3":
        q = np.frombuffer(_read_exact(f, rows * cols), dtype=np.uint8).reshape(rows, cols)
        return (mn + rng * q.astype(np.float64) / 255.0).astype(np.float32)
    raise KaldiFormatError(f"unknown compressed token {token!r}")


def read_object(f) -> np.ndarray:
    """Read one binary object starting at the ``\\0B`` marker."""
    marker = _read_exact(f, 2)
    if marker != b"\0B":
        raise KaldiFormatError(f"expected binary marker \\0B, got {marker!r}")
    peek = f.read(1)
    if peek == b"\x04":  # int32 vector: starts directly with a size byte, no token
        f.seek(-1, 1)
        n = _read_int32(f)
        return np.array([_read_int32(f) for _ in range(n)], dtype=np.int32)
    f.seek(-1, 1)
    token = _read_token(f)
    if token in ("FM", "DM"):
        dt = "<f4" if token == "FM" else "<f8"
        rows, cols = _read_int32(f), _read_int32(f)
        size = np.dtype(dt).itemsize * rows * cols
        return np.frombuffer(_read_exact(f, size), dtype=dt).reshape(rows, cols).copy()
    if token in ("FV", "DV"):
        dt = "<f4" if token == "FV" else "<f8"
        n = _read_int32(f)
        return np.frombuffer(_read_exact(f, np.dtype(dt).itemsize * n), dtype=dt).copy()
    if token in ("CM", "CM2", "CM3"):
        return _read_compressed(f, token)
    raise KaldiFormatError(f"unsupported object token {token!r}")


def read_ark(path: str | Path) -> dict[str, np.ndarray]:
    """All (key -> array) of a binary ark, in file order."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        while True:
            key = bytearray()
            c = f.read(1)
            if not c:
                break
            while c != b" ":
                if not c:
                    raise KaldiFormatError(f"{path}: end of file inside a key")
                key += c
                c = f.read(1)
            k = key.decode("utf-8")
            if not k or k in out:
                raise KaldiFormatError(f"{path}: empty or duplicate key {k!r}")
            out[k] = read_object(f)
    return out


def read_scp_entry(entry: str) -> np.ndarray:
    """Read the object at ``PATH:OFFSET`` (the offset points at the ``\\0B`` marker)."""
    path, _, off = entry.strip().rpartition(":")
    if not path or not off.isdigit():
        raise KaldiFormatError(f"not an ark offset entry: {entry!r}")
    with open(path, "rb") as f:
        f.seek(int(off))
        return read_object(f)


def read_scp(path: str | Path) -> dict[str, np.ndarray]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, entry = line.strip().split(None, 1)
            out[key] = read_scp_entry(entry)
    return out
