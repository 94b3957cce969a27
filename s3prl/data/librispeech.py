"""LibriSpeech -> Kaldi data directories (the role of Kaldi's `egs/librispeech/s5/local/data_prep.sh`).

Expected layout (real corpus and our synthetic stand-in alike)::

    <corpus>/LibriSpeech/SPEAKERS.TXT
    <corpus>/LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>.trans.txt
    <corpus>/LibriSpeech/<subset>/<reader>/<chapter>/<reader>-<chapter>-<NNNN>.flac

`<corpus>` may also be the `LibriSpeech` directory itself. As in Kaldi's recipe, the Kaldi
"speaker" is the reader-chapter pair (one recording session, which is what per-speaker CMVN should
normalise); the reader id (prefix before the first '-') is the speaker-classification label.

Files written to `data/<subset>/`: wav.scp, text, utt2spk, spk2utt, spk2gender, utt2dur (all
sorted in C order, atomically). wav.scp holds absolute FLAC paths, which our audio reader decodes
directly; `wav_format="pipe"` writes Kaldi's `flac -c -d -s PATH |` form instead, for Kaldi tools.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import soundfile as sf

from s3prl.data.kaldi_dir import read_kv, validate_data_dir, write_data_dir
from s3prl.errors import UserError

_UTT_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def find_librispeech_root(corpus_dir: str | Path) -> Path:
    """Return the `LibriSpeech` directory under (or at) `corpus_dir`."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise UserError(f"{corpus_dir}: corpus directory does not exist")
    for cand in (corpus_dir / "LibriSpeech", corpus_dir):
        if (cand / "SPEAKERS.TXT").is_file() or any(cand.glob("*/*/*/*.trans.txt")):
            return cand
    raise UserError(f"{corpus_dir}: no LibriSpeech layout found (expected LibriSpeech/<subset>/SPK/CHAPTER/*.trans.txt)")


def read_speakers_txt(path: Path) -> dict[str, str]:
    """SPEAKERS.TXT rows `ID | SEX | SUBSET | MINUTES | NAME` -> {reader id: 'm'|'f'}."""
    genders: dict[str, str] = {}
    if not path.is_file():
        return genders
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 2 or fields[1].upper() not in ("M", "F"):
            raise UserError(f"{path}:{lineno}: malformed SPEAKERS.TXT row: {line.strip()!r}")
        genders[fields[0]] = fields[1].lower()
    return genders


def read_trans(path: Path) -> dict[str, str]:
    """Read one `<reader>-<chapter>.trans.txt` into {utt id: transcript}."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not _UTT_RE.match(parts[0]):
            raise UserError(f"{path}:{lineno}: malformed transcript line (expected 'READER-CHAPTER-NNNN WORDS'): {line.strip()!r}")
        if parts[0] in out:
            raise UserError(f"{path}:{lineno}: duplicate utterance id {parts[0]}")
        out[parts[0]] = " ".join(parts[1].split())
    return out


def prepare_librispeech(corpus_dir: str | Path, subset: str, data_dir: str | Path, *,
                        wav_format: str = "path") -> Path:
    """Write the Kaldi data dir for one LibriSpeech subset; skip it if already complete.

    Args:
        corpus_dir: directory holding `LibriSpeech/` (or the `LibriSpeech` dir itself).
        subset: e.g. `train-clean-100`, `dev-clean`, `test-clean`.
        data_dir: output directory, e.g. `data/train-clean-100`.
        wav_format: `path` (absolute FLAC path) or `pipe` (`flac -c -d -s PATH |`).
    """
    if wav_format not in ("path", "pipe"):
        raise UserError(f"--wav-format: {wav_format!r} is not one of path, pipe")
    root = find_librispeech_root(corpus_dir)
    src = root / subset
    if not src.is_dir():
        raise UserError(f"{src}: subset directory does not exist")
    data_dir = Path(data_dir)
    if (data_dir / "utt2dur").is_file():
        try:
            validate_data_dir(data_dir, no_feats=True)
            pipes = {v.rstrip().endswith("|") for v in read_kv(data_dir / "wav.scp").values()}
            if pipes == {wav_format == "pipe"}:
                return data_dir
        except UserError:
            pass  # incomplete, broken or of the other --wav-format: rebuild below
    genders = read_speakers_txt(root / "SPEAKERS.TXT")
    wav, text, utt2spk, utt2dur, spk2gender = {}, {}, {}, {}, {}
    trans_files = sorted(src.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise UserError(f"{src}: no *.trans.txt files found")
    for trans in trans_files:
        for utt, words in read_trans(trans).items():
            reader, chapter, _ = utt.split("-")
            if trans.name != f"{reader}-{chapter}.trans.txt":
                raise UserError(f"{trans}: utterance {utt} does not belong to this chapter")
            flac = (trans.parent / f"{utt}.flac").resolve()
            if not flac.is_file():
                raise UserError(f"{trans}: audio for utterance {utt} not found: {flac}")
            try:
                info = sf.info(str(flac))
            except Exception as e:  # soundfile raises RuntimeError/LibsndfileError
                raise UserError(f"{flac}: unreadable audio for utterance {utt}: {e}") from None
            spk = f"{reader}-{chapter}"
            # The pipe runs through bash (as Kaldi's): the path is quoted, spaces and all.
            wav[utt] = f"flac -c -d -s {shlex.quote(str(flac))} |" if wav_format == "pipe" else str(flac)
            text[utt] = words
            utt2spk[utt] = spk
            utt2dur[utt] = f"{info.frames / info.samplerate:.3f}"
            if reader not in genders and genders:
                raise UserError(f"{root / 'SPEAKERS.TXT'}: reader {reader} (utterance {utt}) is not listed")
            spk2gender[spk] = genders.get(reader, "m")
    write_data_dir(data_dir, {"wav.scp": wav, "text": text, "utt2spk": utt2spk, "spk2gender": spk2gender,
                              "utt2dur": utt2dur})
    return data_dir
