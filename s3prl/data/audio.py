"""Audio reading for Kaldi data directories: wav.scp entries (paths or pipes) and segments.

A wav.scp value is either a file path (anything libsndfile reads: WAV, FLAC, OGG, MP3) or a
Kaldi pipe, a shell command ending in ``|`` whose stdout is an audio file, e.g. the LibriSpeech
form ``flac -c -d -s /path/x.flac |`` or ``sox x.wav -t wav - |`` (Kaldi's extended filenames,
kaldi-asr/kaldi src/util/kaldi-io.h, and egs/librispeech/s5/local/data_prep.sh). Pipes run under
``bash -c`` like Kaldi's popen.

Every reader returns float32 mono samples in [-1, 1] at the target rate (16 kHz by default):
int16 PCM is scaled by 1/32768, as libsndfile does. Other sample rates are resampled with
``torchaudio.functional.resample`` (a one-time notice per rate), or refused with
``resample=False``. Stereo, empty and unreadable audio raise `UserError` naming the utterance and
the path: a missing file says "no such file" with its path, a failed pipe gives its command and
exit status (as Kaldi's ``PipeInputImpl::Close`` reports a pipe's non-zero status). A WAV whose
header declares more data than the file holds (a truncated copy) is read up to its end with a
warning naming the utterance and both sizes, as Kaldi's ``WaveData::Read`` warns when the RIFF
sizes disagree (kaldi-asr/kaldi src/feat/wave-reader.cc); the unknown-length sizes that streaming
writers put in a pipe's header (0, 0xFFFFFFFF, and sox's 0x7FFFF000) are not truncation.
Segments (``utt reco start end`` in seconds, ``end = -1`` meaning "to the end") are cut
exactly to the sample at the recording's own rate, with Kaldi's rounding
(``round(start * sr)``, ``round(end * sr)``), before any resampling.
"""
from __future__ import annotations

import io
import logging
import os
import signal
import struct
import subprocess
from typing import Any

import numpy as np
import soundfile as sf

from s3prl.errors import UserError

log = logging.getLogger(__name__)

_NOTIFIED_RATES: set[int] = set()
# One decoded recording (entry -> (samples, rate)): many segments of one recording in a row are
# read once. Kaldi-sorted segments files keep a recording's segments together.
_CACHE: dict[str, tuple[np.ndarray, int]] = {}


def is_pipe(entry: str) -> bool:
    """True if a wav.scp value is a Kaldi pipe (a command ending in ``|``)."""
    return entry.rstrip().endswith("|")


def _decode(entry: str, utt_id: str) -> tuple[np.ndarray, int]:
    """Decode a wav.scp entry to (samples (N,) float32 or (N, C), rate)."""
    entry = entry.strip()
    if is_pipe(entry):
        cmd = entry.rstrip()[:-1].strip()
        try:
            proc = subprocess.run(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise UserError(f"utterance {utt_id}: cannot run pipe '{entry}': {e}") from None
        if proc.returncode != 0:
            raise UserError(f"utterance {utt_id}: pipe '{entry}' failed: {_exit_status(proc.returncode)}"
                            f"{_last_line(proc.stderr)}; run the command by hand to see why")
        source: Any = io.BytesIO(proc.stdout)
        where = f"pipe '{entry}'"
        _warn_if_truncated(source, len(proc.stdout), utt_id, where)
    else:
        source = entry
        where = entry
        if not os.path.exists(entry):
            raise UserError(f"utterance {utt_id}: no such file {entry} (from wav.scp); check that the corpus "
                            f"is still there, or prepare the data dir again from where it is now")
        if os.path.isfile(entry):
            with open(entry, "rb") as f:
                _warn_if_truncated(f, os.fstat(f.fileno()).st_size, utt_id, where)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, OSError
        msg = " ".join(str(e).split())
        raise UserError(f"utterance {utt_id}: cannot read audio {where}: {msg}") from None
    if data.shape[1] != 1:
        raise UserError(f"utterance {utt_id}: stereo audio ({data.shape[1]} channels) in {where}; "
                        f"only mono is supported (e.g. 'sox IN -c 1 -t wav - remix 1 |')")
    return np.ascontiguousarray(data[:, 0]), int(rate)


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


def _last_line(stderr: bytes, limit: int = 300) -> str:
    """The command's stderr on one line (its tail if long), in parentheses; '' if it said nothing."""
    text = " ".join(stderr.decode(errors="replace").split())
    if len(text) > limit:
        text = "..." + text[-limit:]
    return f" ({text})" if text else ""


# Data-chunk sizes meaning "length unknown": Kaldi's stream mode (0 or 0xFFFFFFFF, wave-reader.cc)
# and what sox writes when its output cannot be seeked back (a pipe).
_UNKNOWN_LENGTH = {0, 0xFFFFFFFF, 0x7FFFF000}


def wav_data_sizes(f, total: int) -> tuple[int, int] | None:
    """(declared, present) byte counts of the data chunk of the RIFF/RIFX WAV in binary file `f`
    of `total` bytes; None if it is not such a WAV, has no data chunk or declares an unknown length."""
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "<" if head[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= total:
        f.seek(pos)
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        size = struct.unpack(order + "I", chunk[4:])[0]
        if chunk[:4] == b"data":
            return None if size in _UNKNOWN_LENGTH else (size, total - pos - 8)
        pos += 8 + size + (size & 1)  # RIFF chunks are padded to an even size
    return None


def _warn_if_truncated(f, total: int, utt_id: str, where: str) -> None:
    try:
        sizes = wav_data_sizes(f, total)
    finally:
        f.seek(0)
    if sizes is not None and sizes[1] < sizes[0]:
        log.warning("utterance %s: truncated WAV %s: its header declares %d bytes of audio data, only %d are "
                    "present; using those", utt_id, where, sizes[0], max(sizes[1], 0))


def _read_cached(entry: str, utt_id: str) -> tuple[np.ndarray, int]:
    hit = _CACHE.get(entry)
    if hit is not None:
        return hit
    _CACHE.clear()
    decoded = _decode(entry, utt_id)
    _CACHE[entry] = decoded
    return decoded


def clear_cache() -> None:
    """Forget the cached recording (tests that rewrite a file under the same name call this)."""
    _CACHE.clear()


def slice_segment(samples: np.ndarray, rate: int, segment: tuple[float, float], *, utt_id: str,
                  where: str = "") -> np.ndarray:
    """Cut `samples` (N,) to the [start, end) seconds of `segment`, Kaldi rounding, exact to the sample.

    ``end`` of -1 (or any negative value) means the end of the recording. A segment outside the
    recording or of zero length is a UserError.
    """
    start, end = float(segment[0]), float(segment[1])
    n = len(samples)
    s = int(round(start * rate))
    e = n if end < 0 else int(round(end * rate))
    if start < 0 or s >= e:
        raise UserError(f"utterance {utt_id}: bad segment start={start} end={end}{where}")
    if e > n:
        raise UserError(f"utterance {utt_id}: segment end {end}s is past the end of the recording "
                        f"({n / rate:.4f}s){where}")
    return samples[s:e]


def resample_audio(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (N,) float32 with torchaudio's windowed-sinc resampler."""
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(samples)), orig_sr, target_sr)
    return out.numpy().astype(np.float32, copy=False)


def load_audio(entry: str, *, utt_id: str, target_sr: int = 16000,
               segment: tuple[float, float] | None = None, resample: bool = True) -> np.ndarray:
    """Read one utterance from a wav.scp value.

    Args:
        entry: a path or a pipe command ending in ``|``.
        utt_id: the utterance id, named in every error.
        target_sr: the output sample rate.
        segment: optional (start, end) in seconds within the recording (end -1: to the end).
        resample: resample other rates to `target_sr`; if False, another rate is a UserError.

    Returns:
        (N,) float32 mono samples in [-1, 1] at `target_sr` (a fresh, writable array).
    """
    samples, rate = _read_cached(entry, utt_id)
    where = f" ({entry.strip()})"
    if segment is not None:
        samples = slice_segment(samples, rate, segment, utt_id=utt_id, where=where)
    if len(samples) == 0:
        raise UserError(f"utterance {utt_id}: zero-length audio{where}")
    if rate != target_sr:
        if not resample:
            raise UserError(f"utterance {utt_id}: sample rate {rate} Hz, expected {target_sr} Hz{where}")
        if rate not in _NOTIFIED_RATES:
            _NOTIFIED_RATES.add(rate)
            log.info("resampling audio at %d Hz to %d Hz (first seen in utterance %s)", rate, target_sr, utt_id)
        samples = resample_audio(samples, rate, target_sr)
        if len(samples) == 0:
            raise UserError(f"utterance {utt_id}: zero-length audio after resampling{where}")
        return samples
    return samples.copy()


def load_utterance(datadir: Any, utt: str, **kw) -> np.ndarray:
    """Read utterance `utt` of a Kaldi data dir (s3prl.data.kaldi_dir.DataDir), via segments if any.

    Keyword arguments go to `load_audio` (target_sr, resample).
    """
    segments = getattr(datadir, "segments", None)
    wav_scp = datadir.wav_scp
    if wav_scp is None:
        raise UserError(f"{getattr(datadir, 'path', datadir)}/wav.scp: no such file")
    if segments and utt in segments and segments[utt] is not None:
        reco, start, end = segments[utt]
        if reco not in wav_scp:
            raise UserError(f"{datadir.path}/segments: recording '{reco}' of utterance {utt} is not in wav.scp")
        return load_audio(wav_scp[reco], utt_id=utt, segment=(float(start), float(end)), **kw)
    if utt not in wav_scp:
        raise UserError(f"{getattr(datadir, 'path', datadir)}/wav.scp: no entry for utterance {utt}")
    return load_audio(wav_scp[utt], utt_id=utt, **kw)
