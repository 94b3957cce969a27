"""Kaldi data directories: the one reader, writer, validator, fixer, splitter and subsetter.

A Kaldi data directory (``data/<set>/``; kaldi-asr/kaldi, egs/wsj/s5/utils/validate_data_dir.sh and
src/doc/data_prep.dox) holds plain-text tables, one ``<key> <value...>`` per LF-terminated line,
sorted on the key in C (byte) order with unique keys:

- utterance-keyed: utt2spk (the master list), text, feats.scp, utt2num_frames, utt2dur, segments,
  wav.scp (when there is no segments file), utt2lang, utt2uniq, vad.scp, utt2warp;
- speaker-keyed: spk2utt (derived from utt2spk), cmvn.scp, spk2gender, spk2warp;
- recording-keyed (with segments): wav.scp, reco2file_and_channel, reco2dur;
- one-value files: frame_shift, feats_dim.

`validate_data_dir` implements the checks of Kaldi's ``utils/validate_data_dir.sh`` (section 2.3),
`fix_data_dir` those of ``utils/fix_data_dir.sh`` (2.4), `split_data` ``utils/split_data.sh`` (1.7;
`split_by_speaker` its per-speaker split in memory)
and `subset_data_dir` ``utils/subset_data_dir.sh``. Errors are `UserError`s naming the file and line.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from s3prl.atomic import atomic_dir, atomic_open, file_sha256
from s3prl.errors import UserError

logger = logging.getLogger(__name__)

UTT_FILES = ("utt2spk", "text", "feats.scp", "utt2num_frames", "utt2dur", "segments", "utt2lang",
             "utt2uniq", "vad.scp", "utt2warp")
SPK_FILES = ("spk2utt", "cmvn.scp", "spk2gender", "spk2warp")
RECO_FILES = ("wav.scp", "reco2file_and_channel", "reco2dur")
SCALAR_FILES = ("frame_shift", "feats_dim")
# Per-utterance files whose utterance set fix_data_dir intersects (Kaldi's fix_data_dir.sh list).
_INTERSECT_FILES = ("utt2spk", "text", "feats.scp", "segments", "utt2lang", "utt2dur", "utt2num_frames")
_FORBIDDEN_WORDS = ("<s>", "</s>", "#0")


# --------------------------------------------------------------------------- table I/O

def c_key(s: str) -> bytes:
    """The C-locale (LC_ALL=C sort) collation key of a string: its UTF-8 bytes."""
    return s.encode("utf-8", "surrogateescape")


def sorted_c(keys: Iterable[str]) -> list[str]:
    """`keys` sorted in C byte order, as ``LC_ALL=C sort`` sorts them."""
    return sorted(keys, key=c_key)


def _read_lines(path: Path) -> list[str]:
    """The lines of a text file without their LF; a missing final newline is tolerated."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{lineno}: not valid UTF-8") from None
    if not text:
        return []
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n")


def _split_line(line: str) -> tuple[str, str]:
    parts = line.strip(" \t").split(None, 1)
    if not parts:
        return "", ""
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def read_kv(path: str | Path, *, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a ``<key> <value...>`` table into a dict (file order preserved).

    The value is the rest of the line after the first run of whitespace, stripped. Raises
    UserError ``"<path>:<line>: ..."`` on an empty line, a line with no value (unless
    `allow_empty_value`) or a duplicate key. A missing final newline is tolerated.
    """
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        key, value = _split_line(line)
        if not key:
            raise UserError(f"{path}:{lineno}: empty line")
        if not value and not allow_empty_value:
            raise UserError(f"{path}:{lineno}: key '{key}' has no value")
        if key in out:
            raise UserError(f"{path}:{lineno}: duplicate key '{key}'")
        out[key] = value
    return out


def read_kv_list(path: str | Path, *, allow_empty_value: bool = False) -> dict[str, list[str]]:
    """Like `read_kv`, with each value split on whitespace into a list."""
    return {k: v.split() for k, v in read_kv(path, allow_empty_value=allow_empty_value).items()}


def write_kv(path: str | Path, mapping: Mapping[str, str | Sequence[str]]) -> None:
    """Write a table sorted on the key in C byte order, atomically; list values are space-joined."""
    path = Path(path)
    lines = []
    for key in sorted_c(mapping):
        if not key or any(c.isspace() for c in key):
            raise UserError(f"{path}: invalid key {key!r} (keys must be non-empty, without whitespace)")
        value = mapping[key]
        if not isinstance(value, str):
            value = " ".join(str(v) for v in value)
        lines.append(f"{key} {value}".rstrip(" ") + "\n")
    with atomic_open(path, "w") as f:
        f.writelines(lines)


def write_data_dir(path: str | Path, tables: Mapping[str, Mapping[str, str | Sequence[str]]], *,
                   no_feats: bool = True, no_text: bool = False) -> Path:
    """Write the Kaldi data dir `path` atomically: every table of `tables` (file name -> mapping,
    e.g. wav.scp, text, utt2spk) plus the spk2utt of tables["utt2spk"]; the dir is validated
    (`validate_data_dir` with `no_feats` / `no_text`) before it appears."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        for name, mapping in tables.items():
            write_kv(tmp / name, mapping)
        write_kv(tmp / "spk2utt", {s: " ".join(u) for s, u in utt2spk_to_spk2utt(tables["utt2spk"]).items()})
        validate_data_dir(tmp, no_feats=no_feats, no_text=no_text)
    return path


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert utt2spk: speaker -> its utterances (C-sorted), speakers in C order."""
    out: dict[str, list[str]] = {}
    for utt in sorted_c(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in sorted_c(out)}


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Invert spk2utt: utterance -> speaker, utterances in C order."""
    out: dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for utt in utts:
            out[utt] = spk
    return {u: out[u] for u in sorted_c(out)}


# --------------------------------------------------------------------------- DataDir

class DataDir:
    """Read access to a Kaldi data directory; every table is read lazily, once.

    Properties return None for optional files that are absent (utt2spk is required).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise UserError(f"{self.path}: not a data directory (no such directory)")

    def has(self, name: str) -> bool:
        """Whether the file `name` (e.g. "feats.scp") exists in the directory."""
        return (self.path / name).is_file()

    def _opt(self, name: str) -> dict[str, str] | None:
        return read_kv(self.path / name) if self.has(name) else None

    @cached_property
    def utt2spk(self) -> dict[str, str]:
        if not self.has("utt2spk"):
            raise UserError(f"{self.path / 'utt2spk'}: no such file (every data directory needs utt2spk)")
        return read_kv(self.path / "utt2spk")

    @cached_property
    def spk2utt(self) -> dict[str, list[str]]:
        if self.has("spk2utt"):
            return read_kv_list(self.path / "spk2utt")
        return utt2spk_to_spk2utt(self.utt2spk)

    @cached_property
    def wav_scp(self) -> dict[str, str] | None:
        return self._opt("wav.scp")

    @cached_property
    def segments(self) -> dict[str, tuple[str, float, float]] | None:
        """utt -> (recording id, start seconds, end seconds), or None without a segments file."""
        if not self.has("segments"):
            return None
        return _parse_segments(self.path / "segments")

    @cached_property
    def text(self) -> dict[str, str] | None:
        return read_kv(self.path / "text", allow_empty_value=True) if self.has("text") else None

    @cached_property
    def feats_scp(self) -> dict[str, str] | None:
        return self._opt("feats.scp")

    @cached_property
    def cmvn_scp(self) -> dict[str, str] | None:
        return self._opt("cmvn.scp")

    @cached_property
    def utt2num_frames(self) -> dict[str, int] | None:
        if not self.has("utt2num_frames"):
            return None
        return _parse_numbers(self.path / "utt2num_frames", int)

    @cached_property
    def utt2dur(self) -> dict[str, float] | None:
        if not self.has("utt2dur"):
            return None
        return _parse_numbers(self.path / "utt2dur", float)

    @cached_property
    def spk2gender(self) -> dict[str, str] | None:
        return self._opt("spk2gender")

    @cached_property
    def utts(self) -> list[str]:
        """Utterance ids in C order."""
        return sorted_c(self.utt2spk)

    @cached_property
    def speakers(self) -> list[str]:
        """Speaker ids in C order."""
        return sorted_c(set(self.utt2spk.values()))

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"


def _parse_numbers(path: Path, kind: type) -> dict:
    out = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        key, value = _split_line(line)
        try:
            out[key] = kind(value)
        except ValueError:
            raise UserError(f"{path}:{lineno}: '{value}' is not a{'n integer' if kind is int else ' number'}") from None
    return out


def _parse_segments(path: Path) -> dict[str, tuple[str, float, float]]:
    out = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if len(fields) != 4:
            raise UserError(f"{path}:{lineno}: expected 4 fields '<utt> <reco> <start> <end>', got {len(fields)}")
        utt, reco, start, end = fields
        try:
            t0, t1 = float(start), float(end)
        except ValueError:
            raise UserError(f"{path}:{lineno}: start/end times must be numbers, got '{start} {end}'") from None
        if t0 < 0 or t1 <= t0:
            raise UserError(f"{path}:{lineno}: segment '{utt}' needs 0 <= start < end, got {start} {end}")
        if utt in out:
            raise UserError(f"{path}:{lineno}: duplicate key '{utt}'")
        out[utt] = (reco, t0, t1)
    return out


# --------------------------------------------------------------------------- validation

def _check_table(path: Path, allow_empty_value: bool = False) -> list[tuple[int, str, str]]:
    """Kaldi's per-file checks: final newline, non-empty keys, keys sorted (C order) and unique,
    a value on every line (unless `allow_empty_value`, as for text).

    Returns (line number, key, value) triples.
    """
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise UserError(f"{path}: the last line has no final newline")
    rows = []
    prev = None
    for lineno, line in enumerate(_read_lines(path), 1):
        key, value = _split_line(line)
        if not key:
            raise UserError(f"{path}:{lineno}: empty line")
        if prev is not None:
            if key == prev:
                raise UserError(f"{path}:{lineno}: duplicate key '{key}'")
            if c_key(key) < c_key(prev):
                raise UserError(f"{path}:{lineno}: key '{key}' is not sorted (C locale) after '{prev}'; "
                                f"run fix_data_dir.sh")
        if not value and not allow_empty_value:
            raise UserError(f"{path}:{lineno}: key '{key}' has no value")
        prev = key
        rows.append((lineno, key, value))
    return rows


def _same_keys(path: Path, rows: list[tuple[int, str, str]], expected: Iterable[str], what: str, ref: str) -> None:
    """Raise unless the keys of `rows` are exactly `expected`, naming the first difference."""
    expected = set(expected)
    seen = set()
    for lineno, key, _ in rows:
        if key not in expected:
            raise UserError(f"{path}:{lineno}: {what} '{key}' is not in {ref}")
        seen.add(key)
    missing = sorted_c(expected - seen)
    if missing:
        raise UserError(f"{path}: {what} '{missing[0]}' of {ref} is missing ({len(missing)} missing in all)")


def validate_data_dir(path: str | Path, *, no_feats: bool = False, no_text: bool = False,
                      no_wav: bool = False, non_print: bool = False, no_spk_sort: bool = False) -> None:
    """Check a data directory the way Kaldi's utils/validate_data_dir.sh does.

    `no_feats` / `no_text` / `no_wav` allow feats.scp / text / wav.scp to be absent (a file that is
    present is still checked); `non_print` skips the non-printable-character check on text;
    `no_spk_sort` skips the "utt2spk is also sorted by speaker" check. Raises UserError naming the
    file and line at fault; returns None when the directory is valid.
    """
    d = Path(path)
    if not d.is_dir():
        raise UserError(f"{d}: no such data directory")
    for name in ("utt2spk", "spk2utt"):
        if not (d / name).is_file() or (d / name).stat().st_size == 0:
            raise UserError(f"{d / name}: missing or empty (every data directory needs utt2spk and spk2utt)")

    u2s_rows = _check_table(d / "utt2spk", allow_empty_value=True)
    for lineno, key, value in u2s_rows:
        if len(value.split()) != 1:
            raise UserError(f"{d / 'utt2spk'}:{lineno}: expected 2 fields '<utt> <spk>', got {1 + len(value.split())}")
    utt2spk = {k: v for _, k, v in u2s_rows}
    if not no_spk_sort:
        prev = None
        for lineno, _, spk in u2s_rows:
            if prev is not None and c_key(spk) < c_key(prev):
                raise UserError(f"{d / 'utt2spk'}:{lineno}: not sorted by speaker as well as by utterance "
                                f"(speaker '{spk}' after '{prev}'); make the speaker id a prefix of the utterance id")
            prev = spk
    speakers = set(utt2spk.values())
    if len(speakers) == 1:
        logger.warning("%s: only one speaker; CMVN becomes global and splitting per speaker is impossible", d)

    s2u_rows = _check_table(d / "spk2utt", allow_empty_value=True)
    back: dict[str, str] = {}
    for lineno, spk, value in s2u_rows:
        if not value:
            raise UserError(f"{d / 'spk2utt'}:{lineno}: speaker '{spk}' has no utterances")
        for utt in value.split():
            if utt in back:
                raise UserError(f"{d / 'spk2utt'}:{lineno}: utterance '{utt}' is listed twice")
            if utt2spk.get(utt) != spk:
                raise UserError(f"{d / 'spk2utt'}:{lineno}: utterance '{utt}' of speaker '{spk}' disagrees with "
                                f"utt2spk; regenerate spk2utt with utt2spk_to_spk2utt.pl")
            back[utt] = spk
    if back.keys() != utt2spk.keys():
        missing = sorted_c(utt2spk.keys() - back.keys())[0]
        raise UserError(f"{d / 'spk2utt'}: utterance '{missing}' of utt2spk is missing; regenerate spk2utt")

    utts = utt2spk.keys()
    rows = {}
    for name in UTT_FILES + SPK_FILES + RECO_FILES:
        if name not in ("utt2spk", "spk2utt") and (d / name).is_file():
            rows[name] = _check_table(d / name, allow_empty_value=(name == "text"))

    # text
    if "text" in rows:
        _validate_text(d / "text", non_print)
        _same_keys(d / "text", rows["text"], utts, "utterance", "utt2spk")
    elif not no_text:
        raise UserError(f"{d / 'text'}: no such file (use --no-text if there is no transcription)")

    # segments / wav.scp
    if "segments" in rows:
        if "wav.scp" not in rows:
            raise UserError(f"{d / 'segments'}: exists but {d / 'wav.scp'} does not")
        segs = _parse_segments(d / "segments")
        _same_keys(d / "segments", rows["segments"], utts, "utterance", "utt2spk")
        recos = {r for r, _, _ in segs.values()}
        wav_keys = {k for _, k, _ in rows["wav.scp"]}
        for lineno, utt, value in rows["segments"]:
            if value.split()[0] not in wav_keys:
                raise UserError(f"{d / 'segments'}:{lineno}: recording '{value.split()[0]}' is not in wav.scp")
        _same_keys(d / "wav.scp", rows["wav.scp"], recos, "recording", "segments")
        for name in ("reco2file_and_channel", "reco2dur"):
            if name in rows:
                _same_keys(d / name, rows[name], recos, "recording", "segments")
    elif "wav.scp" in rows:
        _same_keys(d / "wav.scp", rows["wav.scp"], utts, "utterance", "utt2spk")
    elif not no_wav:
        raise UserError(f"{d / 'wav.scp'}: no such file (use --no-wav if there is no audio)")
    for lineno, key, value in rows.get("wav.scp", []):
        if not value:
            raise UserError(f"{d / 'wav.scp'}:{lineno}: '{key}' has no audio path or command")
        if value.startswith("~"):
            raise UserError(f"{d / 'wav.scp'}:{lineno}: paths starting with '~' are not allowed, got '{value}'")

    # features
    if "feats.scp" in rows:
        _same_keys(d / "feats.scp", rows["feats.scp"], utts, "utterance", "utt2spk")
    elif not no_feats:
        raise UserError(f"{d / 'feats.scp'}: no such file (use --no-feats before feature extraction)")
    if "cmvn.scp" in rows:
        _same_keys(d / "cmvn.scp", rows["cmvn.scp"], speakers, "speaker", "spk2utt")

    for name in ("spk2gender", "spk2warp"):
        if name in rows:
            _same_keys(d / name, rows[name], speakers, "speaker", "spk2utt")
    for lineno, spk, value in rows.get("spk2gender", []):
        if value not in ("m", "f"):
            raise UserError(f"{d / 'spk2gender'}:{lineno}: gender must be 'm' or 'f', got '{value}'")
    for name in ("utt2lang", "utt2uniq", "vad.scp", "utt2warp", "utt2dur", "utt2num_frames"):
        if name in rows:
            _same_keys(d / name, rows[name], utts, "utterance", "utt2spk")
    for name, kind in (("utt2dur", float), ("utt2num_frames", int), ("reco2dur", float)):
        for lineno, key, value in rows.get(name, []):
            try:
                ok = kind(value) > 0
            except ValueError:
                ok = False
            if not ok:
                raise UserError(f"{d / name}:{lineno}: '{key}' needs a positive "
                                f"{'integer' if kind is int else 'number'}, got '{value}'")
    for name in ("spk2warp", "utt2warp"):
        for lineno, key, value in rows.get(name, []):
            try:
                ok = 0.5 < float(value) < 1.5
            except ValueError:
                ok = False
            if not ok:
                raise UserError(f"{d / name}:{lineno}: warp factor must be in (0.5, 1.5), got '{value}'")
    for name in SCALAR_FILES:
        if (d / name).is_file():
            content = (d / name).read_text(errors="replace").strip()
            try:
                float(content)
            except ValueError:
                raise UserError(f"{d / name}:1: expected a single number, got '{content}'") from None


def _validate_text(path: Path, non_print: bool) -> None:
    data = path.read_bytes()
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if b"\r" in raw:
            raise UserError(f"{path}:{lineno}: carriage return (CR) in text; convert the file to LF line ends")
        line = raw.decode("utf-8", "replace")
        for ch in line:
            if ch.isspace() and ch not in " \t":
                raise UserError(f"{path}:{lineno}: whitespace character U+{ord(ch):04X} other than space/TAB")
            if not non_print and unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn") and ch != "\t":
                raise UserError(f"{path}:{lineno}: non-printable character U+{ord(ch):04X} (use --non-print to allow)")
        words = line.split()[1:]
        for w in words:
            if w in _FORBIDDEN_WORDS:
                raise UserError(f"{path}:{lineno}: the word '{w}' is not allowed in text")


# --------------------------------------------------------------------------- fix

def _read_lenient(path: Path) -> dict[str, str]:
    """Read a table for fix_data_dir: skip blank lines, keep the first of duplicate keys."""
    out: dict[str, str] = {}
    for line in _read_lines(path):
        key, value = _split_line(line)
        if key and key not in out:
            out[key] = value
    return out


def fix_data_dir(path: str | Path) -> dict[str, int]:
    """Repair a data directory the way Kaldi's utils/fix_data_dir.sh does.

    Backs every known file up to ``<dir>/.backup/``, sorts every file (C order, first of duplicate
    keys kept), keeps only utterances present in all of utt2spk, text, feats.scp, segments,
    utt2lang, wav.scp (without segments), utt2dur and utt2num_frames (entries > 0), keeps only
    recordings used by the kept segments and present in wav.scp, regenerates spk2utt and filters the
    speaker files. Returns {"utts_before": n, "utts_after": m}. Raises UserError if utt2spk is not
    sorted by speaker (not fixable automatically) or if no utterance remains.
    """
    d = Path(path)
    if not (d / "utt2spk").is_file():
        raise UserError(f"{d / 'utt2spk'}: no such file")
    tables = {name: _read_lenient(d / name)
              for name in UTT_FILES + SPK_FILES + RECO_FILES if (d / name).is_file()}
    backup = d / ".backup"
    backup.mkdir(exist_ok=True)
    for name in tables:
        shutil.copy2(d / name, backup / name)

    utt2spk = tables["utt2spk"]
    before = len(utt2spk)
    utts = set(utt2spk)
    has_segments = "segments" in tables
    for name in _INTERSECT_FILES + (() if has_segments else ("wav.scp",)):
        if name not in tables or name == "utt2spk":
            continue
        keys = set(tables[name])
        if name in ("utt2dur", "utt2num_frames"):
            keys = {k for k, v in tables[name].items() if _positive(v)}
        utts &= keys
    recos: set[str] | None = None
    if has_segments:
        wav = set(tables.get("wav.scp", {}))
        utts = {u for u in utts if tables["segments"][u].split()[:1] and tables["segments"][u].split()[0] in wav}
        recos = {tables["segments"][u].split()[0] for u in utts}
    if not utts:
        raise UserError(f"{d}: fix_data_dir: no utterance is left after intersecting the files (originals in {backup})")
    kept_u2s = {u: utt2spk[u] for u in utts}
    spk_order = [kept_u2s[u] for u in sorted_c(kept_u2s)]
    for a, b in zip(spk_order, spk_order[1:]):
        if c_key(b) < c_key(a):
            raise UserError(f"{d / 'utt2spk'}: not sorted by speaker as well as by utterance ('{b}' after '{a}'); "
                            f"fix this yourself: make the speaker id a prefix of the utterance id")
    _write_subset(tables, d, utts, recos)
    removed = before - len(utts)
    if removed:
        logger.info("fix_data_dir: %s: kept %d of %d utterances (originals in %s)", d, len(utts), before, backup)
    return {"utts_before": before, "utts_after": len(utts)}


def _positive(value: str) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        return False


def _write_subset(tables: Mapping[str, Mapping[str, str]], dst: Path, utts: set[str],
                  recos: set[str] | None) -> None:
    """Write every table of `tables` restricted to `utts` (and their speakers and recordings)."""
    utt2spk = {u: tables["utt2spk"][u] for u in utts}
    speakers = set(utt2spk.values())
    if recos is None and "segments" in tables:
        recos = {tables["segments"][u].split()[0] for u in utts if u in tables["segments"]}
    for name, table in tables.items():
        if name == "spk2utt":
            continue
        if name in RECO_FILES and recos is not None:
            keep = recos
        elif name in SPK_FILES:
            keep = speakers
        else:
            keep = utts
        write_kv(dst / name, {k: v for k, v in table.items() if k in keep})
    write_kv(dst / "spk2utt", utt2spk_to_spk2utt(utt2spk))


# --------------------------------------------------------------------------- split / subset

def _all_tables(d: Path) -> dict[str, dict[str, str]]:
    if not (d / "utt2spk").is_file():
        raise UserError(f"{d / 'utt2spk'}: no such file")
    return {name: read_kv(d / name, allow_empty_value=(name == "text"))
            for name in UTT_FILES + SPK_FILES + RECO_FILES if (d / name).is_file()}


def _copy_scalars(src: Path, dst: Path) -> None:
    for name in SCALAR_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def _balanced_contiguous(counts: Sequence[int], n: int) -> list[int]:
    """Cut a sequence of weights into `n` non-empty contiguous parts with near-equal sums.

    Returns the part index of every element: the boundary before part i+1 is put where the
    running sum is closest to i+1 shares of the total, as Kaldi's split_scp.pl --utt2spk does.
    """
    total = sum(counts)
    m = len(counts)
    cum = [0]
    for c in counts:
        cum.append(cum[-1] + c)
    bounds = [0]
    for i in range(1, n):
        target = total * i / n
        lo, hi = bounds[-1] + 1, m - (n - i)  # each part keeps at least one element
        best = min(range(lo, hi + 1), key=lambda b: (abs(cum[b] - target), b))
        bounds.append(best)
    bounds.append(m)
    part = []
    for i in range(n):
        part.extend([i] * (bounds[i + 1] - bounds[i]))
    return part


def split_by_speaker(utt2spk: Mapping[str, str], n: int) -> list[list[str]]:
    """The utterances of `utt2spk` in `n` parts as utils/split_data.sh makes them: whole speakers
    (C order) per part, contiguous, balanced by utterance count; each part's utterances C-sorted.
    Needs 1 <= n <= the number of speakers."""
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    spks = list(spk2utt)
    if not 1 <= n <= len(spks):
        raise ValueError(f"split_by_speaker: {n} parts of {len(spks)} speakers")
    groups: list[list[str]] = [[] for _ in range(n)]
    for spk, i in zip(spks, _balanced_contiguous([len(spk2utt[s]) for s in spks], n)):
        groups[i].extend(spk2utt[spk])
    return [sorted_c(g) for g in groups]


def split_data(path: str | Path, n: int, per_utt: bool = False) -> list[Path]:
    """Split a data directory into `n` parts, like Kaldi's utils/split_data.sh.

    Writes ``<path>/split<n>/{1..n}`` (``split<n>utt`` with `per_utt`). By default whole speakers
    go to one part, balanced by utterance count; with `per_utt` the utterances are cut into
    contiguous blocks (the first n mod #utts blocks one longer). Every per-utterance, per-speaker
    and per-recording file is split; frame_shift/feats_dim are copied. An existing split whose
    files are all newer than the source files is reused. Returns the part directories.
    """
    d = Path(path)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"split_data: number of splits must be a positive integer, got {n!r}")
    out = d / (f"split{n}utt" if per_utt else f"split{n}")
    parts = [out / str(i) for i in range(1, n + 1)]
    sources = [d / name for name in UTT_FILES + SPK_FILES + RECO_FILES + SCALAR_FILES if (d / name).is_file()]
    if not (d / "utt2spk").is_file():
        raise UserError(f"{d / 'utt2spk'}: no such file")
    if _split_up_to_date(sources, parts):
        logger.info("split_data: %s is up to date", out)
        return parts

    tables = _all_tables(d)
    utt2spk = tables["utt2spk"]
    counts = {len(tables[f]) for f in ("utt2spk", "feats.scp", "text") if f in tables}
    if len(counts) > 1:
        logger.warning("split_data: %s: utt2spk, feats.scp and text have different line counts; "
                       "consider fix_data_dir.sh", d)
    utts = sorted_c(utt2spk)
    if per_utt:
        if n > len(utts):
            raise UserError(f"split_data: nj={n} is larger than the number of utterances ({len(utts)}) in {d}")
        base, extra = divmod(len(utts), n)
        groups, start = [], 0
        for i in range(n):
            size = base + (1 if i < extra else 0)
            groups.append(set(utts[start:start + size]))
            start += size
    else:
        nspk = len(set(utt2spk.values()))
        if n > nspk:
            raise UserError(f"split_data: nj={n} is larger than the number of speakers ({nspk}) in {d}")
        groups = [set(g) for g in split_by_speaker(utt2spk, n)]
    with atomic_dir(out) as tmp:
        for i, group in enumerate(groups, 1):
            part = tmp / str(i)
            part.mkdir()
            _write_subset(tables, part, group, None)
            _copy_scalars(d, part)
    return parts


def _split_up_to_date(sources: list[Path], parts: list[Path]) -> bool:
    for part in parts:
        for src in sources:
            dst = part / src.name
            if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
                return False
    return bool(parts)


def _read_id_list(ids: str | Path | Iterable[str], what: str) -> list[str]:
    """A list of ids from an iterable, or from the first field of each line of a file."""
    if isinstance(ids, (str, Path)):
        p = Path(ids)
        out = []
        for lineno, line in enumerate(_read_lines(p), 1):
            key, _ = _split_line(line)
            if not key:
                raise UserError(f"{p}:{lineno}: empty line in the {what} list")
            out.append(key)
        return out
    return list(ids)


def subset_data_dir(src: str | Path, dst: str | Path, *, utt_list: str | Path | Iterable[str] | None = None,
                    first: int | None = None, last: int | None = None,
                    speakers: str | Path | Iterable[str] | None = None, num_utts: int | None = None,
                    seed: int = 0) -> Path:
    """Copy a subset of a data directory to `dst`, like Kaldi's utils/subset_data_dir.sh.

    Exactly one selection: `utt_list` (ids or a file whose first field is the id), `first` /
    `last` N utterances in C order, `speakers` (ids or a file), or `num_utts` utterances drawn at
    random with `seed` (Kaldi picks evenly spaced lines instead; a seeded draw is reproducible and
    unbiased). Ids not in `src` are ignored with a warning. `dst` is written atomically (replaced
    as a whole). Returns `dst`.
    """
    src, dst = Path(src), Path(dst)
    chosen = [o for o, v in (("utt_list", utt_list), ("first", first), ("last", last),
                             ("speakers", speakers), ("num_utts", num_utts)) if v is not None]
    if len(chosen) != 1:
        raise UserError(f"subset_data_dir: give exactly one of utt_list, first, last, speakers, num_utts (got {chosen or 'none'})")
    if src.resolve() == dst.resolve():
        raise UserError(f"subset_data_dir: source and destination are the same directory: {src}")
    tables = _all_tables(src)
    utts = sorted_c(tables["utt2spk"])
    for opt, v in (("first", first), ("last", last), ("num_utts", num_utts)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserError(f"subset_data_dir: {opt} must be a positive integer, got {v!r}")
        if v is not None and v > len(utts):
            logger.warning("subset_data_dir: %s=%d exceeds the %d utterances of %s; taking all", opt, v, len(utts), src)
    if first is not None:
        keep = set(utts[:first])
    elif last is not None:
        keep = set(utts[-last:])
    elif num_utts is not None:
        keep = set(random.Random(seed).sample(utts, min(num_utts, len(utts))))
    elif utt_list is not None:
        wanted = _read_id_list(utt_list, "utterance")
        keep = set(wanted) & set(utts)
        if len(keep) < len(set(wanted)):
            logger.warning("subset_data_dir: %d listed utterances are not in %s", len(set(wanted)) - len(keep), src)
    else:
        wanted_spk = set(_read_id_list(speakers, "speaker"))
        keep = {u for u in utts if tables["utt2spk"][u] in wanted_spk}
    if not keep:
        raise UserError(f"subset_data_dir: the selection leaves no utterance of {src}")
    with atomic_dir(dst) as tmp:
        _write_subset(tables, tmp, keep, None)
        _copy_scalars(src, tmp)
    return dst


FEATURE_FILES = ("feats.scp", "cmvn.scp", "utt2num_frames", "vad.scp", "feats_dim", "frame_shift")


def copy_data_dir(src: str | Path, dst: str | Path, *, utt_prefix: str = "", utt_suffix: str = "",
                  spk_prefix: str = "", spk_suffix: str = "", feats: bool = True) -> list[str]:
    """Copy the data directory `src` to `dst`, like Kaldi's utils/copy_data_dir.sh: every
    per-utterance, per-speaker and per-recording table and frame_shift / feats_dim, utterance ids
    made ``<utt_prefix><utt><utt_suffix>`` and speaker ids ``<spk_prefix><spk><spk_suffix>``
    (recordings keep their ids when there is a `segments` file; without one wav.scp is keyed by
    utterance and renamed with it), spk2utt regenerated, then `dst` validated.

    feats=False leaves out the features (FEATURE_FILES: feats.scp, cmvn.scp, utt2num_frames, ...)
    for a copy whose features are computed anew (as recipes do with a ``_hires`` or MFCC copy).
    Each file is replaced atomically and only when its text changes, so copying again into a dir
    whose features were computed since leaves them in place; when what they are made from changed
    (wav.scp, segments, utt2spk, spk2utt), the features `dst` holds are removed. Returns the names
    of the files written.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UserError(f"copy_data_dir: {src}: no such directory")
    if dst.exists() and src.resolve() == dst.resolve():
        raise UserError(f"copy_data_dir: source and destination are the same directory: {src}")
    for name, v in (("utt_prefix", utt_prefix), ("utt_suffix", utt_suffix), ("spk_prefix", spk_prefix),
                    ("spk_suffix", spk_suffix)):
        if any(c.isspace() for c in v):
            raise UserError(f"copy_data_dir: --{name.replace('_', '-')} '{v}' contains whitespace")
    tables = _all_tables(src)
    utt = (lambda u: f"{utt_prefix}{u}{utt_suffix}")
    spk = (lambda s: f"{spk_prefix}{s}{spk_suffix}")
    by_utt_reco = "segments" not in tables   # without segments, recordings are utterances
    out: dict[str, dict[str, str]] = {}
    for name, table in tables.items():
        if name == "spk2utt" or (not feats and name in FEATURE_FILES):
            continue
        if name in SPK_FILES:
            out[name] = {spk(k): v for k, v in table.items()}
        elif name in RECO_FILES:
            out[name] = {utt(k) if by_utt_reco else k: v for k, v in table.items()}
        elif name == "utt2spk":
            out[name] = {utt(k): spk(v) for k, v in table.items()}
        else:
            out[name] = {utt(k): v for k, v in table.items()}
    out["spk2utt"] = utt2spk_to_spk2utt(out["utt2spk"])
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in out.items():
        lines = []
        for key in sorted_c(table):
            value = table[key]
            value = value if isinstance(value, str) else " ".join(value)
            lines.append(f"{key} {value}".rstrip(" ") + "\n")
        if _replace_if_changed(dst / name, "".join(lines)):
            written.append(name)
    for name in SCALAR_FILES:
        if (src / name).is_file() and (feats or name not in FEATURE_FILES):
            if _replace_if_changed(dst / name, (src / name).read_text(encoding="utf-8")):
                written.append(name)
    if not feats and set(written) & {"wav.scp", "segments", "utt2spk", "spk2utt"}:
        for name in FEATURE_FILES:   # made from the audio and speakers the copy just replaced: stale
            (dst / name).unlink(missing_ok=True)
    validate_data_dir(dst, no_feats=not (dst / "feats.scp").is_file(), no_text="text" not in out,
                      no_wav="wav.scp" not in out)
    return written


def _replace_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically unless it already holds exactly that; True if written."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    with atomic_open(path, "w") as f:
        f.write(text)
    return True


def files_identity(data: Path, names: Sequence[str], ark_tables: Sequence[str] = ()) -> dict:
    """{name: sha256} of the files `names` of data dir `data` that exist and, when `ark_tables`
    (scp files) are given, "arks": {ark path: [size, mtime_ns] or None if missing} of every ark
    they point into: what a stage records of its inputs to tell a changed data dir."""
    data = Path(data)
    out: dict = {name: file_sha256(data / name) for name in names if (data / name).is_file()}
    if ark_tables:
        out["arks"] = ark_stats({v.strip().rsplit(":", 1)[0] for t in ark_tables if (data / t).is_file()
                                 for v in read_kv(data / t).values()})
    return out


def ark_stats(arks) -> dict:
    """{ark path: [size, mtime_ns], or None when it cannot be read} in sorted path order."""
    out: dict = {}
    for a in sorted(arks):
        try:
            st = os.stat(a)
            out[a] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[a] = None
    return out
