"""CMU-MOSEI sentiment -> a Kaldi data dir with `segments` and a sentiment label dir.

CMU-MOSEI (Zadeh et al., ACL 2018) holds full-length YouTube opinion videos, each cut into
sentence segments whose sentiment is the mean of three annotators' ratings in [-3, 3]. S3PRL 2020
(github.com/s3prl/s3prl @ b72a2cd9: `preprocess/preprocess_mosei/`, `Mosei_Dataset` in
dataloader.py) cut the videos with a label table and trained on the segments; here the cutting is a
Kaldi `segments` file, so nothing is copied and every verb reads the slices through
`s3prl.data.audio.load_utterance`.

Expected input (the real corpus and tools/synth/mosei.py alike)::

    <corpus>/Audio/Full/WAV_16000/<video>.wav    full-video audio, 16 kHz mono (also found:
                                                 <corpus>/Raw/Audio/Full/WAV_16000, <corpus>/WAV_16000,
                                                 <corpus> itself; .flac accepted; or --audio-dir)
    <corpus>/labels.csv                          the label table (or --label-csv PATH)

The label table is a CSV with a header row naming (case-insensitive, first match wins) the
segment id (`key`, `segment`, `segment_id`, `id`), the video (`filename`, `video`, `video_id`,
`file`; optional when the key is `<video>_<n>`), `start` and `end` in seconds within the video and
the score (`sentiment`, `score`, `label`) in [-3, 3]. S3PRL's `mosei_no_semi.csv` (key, filename,
start, end, sentiment) is this format. Times outside the recording, start >= end, a missing or
non-numeric score or one outside [-3, 3], a duplicate key and a video without audio are
`UserError`s naming the file and line (`skip_missing_audio` turns the last into a warning).

Output:

- ``<data-dir>/``: wav.scp (video -> absolute audio path), segments (utt video start end),
  utt2spk / spk2utt (speaker = video: one speaker per video, per-video CMVN), utt2dur, reco2dur.
  Utterance id = ``<video>-<start ms, 8 digits>-<end ms, 8 digits>`` (Kaldi's segment naming, so
  the video id is a prefix and utt2spk sorts by speaker too; segments of a video sort by time).
- ``<label-dir>/``: utt2sentiment (utt score), utt2key (utt -> the table's segment id),
  train.list / dev.list / test.list (utterance ids), video2split, prep.json (the settings).

Selection (S3PRL's Mosei_Dataset): keep segments of 1-20 s (both ends inclusive) with
|sentiment| >= 0.1. Split: by video ("unsegmented" in S3PRL), the kept videos in C order shuffled
with ``random.Random(seed)`` (seed 29), the first round(10 %) (Python round, half to even; at
least 1) are test; of the rest,
shuffled again by the same generator, the first round(10 %) (at least 1) are dev and the others
train. No video is ever on two sides.

Label modes (`sentiment_label`), S3PRL's names in brackets:

- ``2class`` [positive_negative]: 1 if score > 0 else 0.
- ``7class`` [original]: ``trunc(score) + 3`` (truncation toward zero, then shifted), so -3 -> 0,
  (-3, -2] -> 1, (-2, -1] -> 2, (-1, 1) -> 3, [1, 2) -> 4, [2, 3) -> 5, 3 -> 6: the middle class
  is two units wide and the extreme classes hold only the exact scores -3 and 3.
- ``regression``: the score itself.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf

from s3prl.atomic import atomic_dir
from s3prl.data.kaldi_dir import read_kv, sorted_c, validate_data_dir, write_data_dir, write_kv
from s3prl.errors import UserError

log = logging.getLogger(__name__)

LABEL_MODES = ("2class", "7class", "regression")
NUM_CLASSES = {"2class": 2, "7class": 7, "regression": 1}
SCORE_FILE = "utt2sentiment"
KEY_FILE = "utt2key"
SPLITS = ("train", "dev", "test")
PREP_FILE = "prep.json"
AUDIO_SUBDIRS = ("Audio/Full/WAV_16000", "Raw/Audio/Full/WAV_16000", "WAV_16000", ".")
AUDIO_EXTS = (".wav", ".flac")
COLUMN_ALIASES = {
    "key": ("key", "segment", "segment_id", "id"),
    "video": ("filename", "video", "video_id", "file"),
    "start": ("start", "start_time"),
    "end": ("end", "end_time"),
    "score": ("sentiment", "score", "label"),
}
PREP_VERSION = 1


@dataclass(frozen=True)
class Segment:
    """One row of the label table (`line`: its 1-based line number in the CSV)."""
    key: str
    video: str
    start: float
    end: float
    score: float
    line: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class PrepSettings:
    """The selection and split of `prepare_mosei` (recorded in prep.json)."""
    seed: int = 29
    test_proportion: float = 0.1
    dev_proportion: float = 0.1
    min_duration: float = 1.0
    max_duration: float = 20.0
    min_abs_score: float = 0.1

    def check(self) -> None:
        for name in ("test_proportion", "dev_proportion"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise UserError(f"--{name.replace('_', '-')} must be in (0, 1), got {getattr(self, name)}")
        if not 0.0 < self.min_duration <= self.max_duration:
            raise UserError(f"durations: need 0 < min ({self.min_duration}) <= max ({self.max_duration})")
        if self.min_abs_score < 0:
            raise UserError(f"--min-abs-score must be >= 0, got {self.min_abs_score}")


# ------------------------------------------------------------------------------------ labels
def sentiment_label(score: float, mode: str) -> int | float:
    """The training target of a score in [-3, 3] for `mode` (see the module docstring)."""
    if mode == "2class":
        return 1 if score > 0 else 0
    if mode == "7class":
        return min(6, max(0, int(score) + 3))   # int() truncates toward zero
    if mode == "regression":
        return float(score)
    raise UserError(f"label mode '{mode}' is not one of {', '.join(LABEL_MODES)}")


def utterance_id(video: str, start: float, end: float) -> str:
    """Kaldi segment naming: ``<video>-<start ms>-<end ms>`` with 8-digit zero padding."""
    return f"{video}-{int(round(start * 1000)):08d}-{int(round(end * 1000)):08d}"


def _column(header: list[str], name: str, path: Path, required: bool = True) -> int | None:
    low = [h.strip().lower() for h in header]
    for alias in COLUMN_ALIASES[name]:
        if alias in low:
            return low.index(alias)
    if required:
        raise UserError(f"{path}:1: no {name} column in the header (expected one of "
                        f"{', '.join(COLUMN_ALIASES[name])}; got {', '.join(header)})")
    return None


def _number(value: str, what: str, path: Path, line: int) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not value.strip() or not math.isfinite(x):
        raise UserError(f"{path}:{line}: {what} '{value}' is not a number")
    return x


def read_label_table(path: str | Path) -> list[Segment]:
    """Parse a MOSEI label table CSV (see the module docstring) into Segments, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such label table") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable label table: {e}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise UserError(f"{path}: empty label table (expected a header row)")
    ci = {n: _column(header, n, path, required=(n != "video")) for n in COLUMN_ALIASES}
    rows, seen = [], {}
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        need = max(i for i in ci.values() if i is not None)
        if len(fields) <= need:
            raise UserError(f"{path}:{line}: {len(fields)} fields, the header has {len(header)}")
        key = fields[ci["key"]].strip()
        if not key:
            raise UserError(f"{path}:{line}: empty segment id")
        if key in seen:
            raise UserError(f"{path}:{line}: segment id '{key}' already on line {seen[key]}")
        seen[key] = line
        if ci["video"] is not None:
            video = fields[ci["video"]].strip()
            for ext in AUDIO_EXTS:
                if video.lower().endswith(ext):
                    video = video[: -len(ext)]
        elif "_" in key:
            video = key.rsplit("_", 1)[0]
        else:
            raise UserError(f"{path}:{line}: no video column and segment id '{key}' is not '<video>_<n>'")
        if not video or any(c.isspace() for c in video) or "/" in video:
            raise UserError(f"{path}:{line}: bad video id '{video}' (empty, or with blanks or '/')")
        start = _number(fields[ci["start"]], "start time", path, line)
        end = _number(fields[ci["end"]], "end time", path, line)
        raw = fields[ci["score"]]
        if not raw.strip():
            raise UserError(f"{path}:{line}: missing sentiment score for segment '{key}'")
        score = _number(raw, "sentiment score", path, line)
        if not -3.0 <= score <= 3.0:
            raise UserError(f"{path}:{line}: sentiment score {score:g} is outside [-3, 3]")
        if start < 0:
            raise UserError(f"{path}:{line}: segment '{key}' starts before 0 s ({start:g})")
        if start >= end:
            raise UserError(f"{path}:{line}: segment '{key}' has start {start:g} >= end {end:g}")
        rows.append(Segment(key, video, start, end, score, line))
    if not rows:
        raise UserError(f"{path}: no segments in the label table")
    return rows


def keep_segment(seg: Segment, settings: PrepSettings) -> bool:
    """S3PRL's Mosei_Dataset filter: duration in [min, max] s and |score| >= min_abs_score."""
    return (settings.min_duration <= round(seg.duration, 6) <= settings.max_duration
            and abs(seg.score) >= settings.min_abs_score)


def split_videos(videos, seed: int = 29, test_proportion: float = 0.1,
                 dev_proportion: float = 0.1) -> dict[str, list[str]]:
    """Video-level train/dev/test split (see the module docstring): split -> sorted video ids."""
    vids = sorted_c(set(videos))
    if len(vids) < 3:
        raise UserError(f"only {len(vids)} video(s) left after filtering; train, dev and test need one each")
    rng = random.Random(seed)
    order = list(vids)
    rng.shuffle(order)
    n_test = min(len(order) - 2, max(1, round(test_proportion * len(order))))
    test, rest = order[:n_test], order[n_test:]
    rng.shuffle(rest)
    n_dev = min(len(rest) - 1, max(1, round(dev_proportion * len(rest))))
    return {"train": sorted_c(rest[n_dev:]), "dev": sorted_c(rest[:n_dev]), "test": sorted_c(test)}


# ------------------------------------------------------------------------------------ corpus
def find_audio_dir(corpus_dir: str | Path) -> Path:
    """The directory holding `<video>.wav` files under `corpus_dir` (first of AUDIO_SUBDIRS)."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise UserError(f"{corpus_dir}: corpus directory does not exist")
    for sub in AUDIO_SUBDIRS:
        d = corpus_dir / sub
        if d.is_dir() and any(p.suffix.lower() in AUDIO_EXTS for p in d.iterdir()):
            return d
    raise UserError(f"{corpus_dir}: no video audio found (expected {corpus_dir}/{AUDIO_SUBDIRS[0]}/<video>.wav)")


def _audio_file(audio_dir: Path, video: str) -> Path | None:
    for ext in AUDIO_EXTS:
        p = audio_dir / f"{video}{ext}"
        if p.is_file():
            return p
    return None


def _settings_record(label_csv: Path, audio_dir: Path, settings: PrepSettings, skip_missing: bool) -> dict:
    st = label_csv.stat()
    return {"version": PREP_VERSION, "label_csv": str(label_csv), "label_csv_size": st.st_size,
            "label_csv_mtime": st.st_mtime, "audio_dir": str(audio_dir), "settings": asdict(settings),
            "skip_missing_audio": skip_missing}


def _complete(data_dir: Path, label_dir: Path, record: dict) -> bool:
    p = label_dir / PREP_FILE
    if not p.is_file() or not (data_dir / "segments").is_file():
        return False
    try:
        old = json.loads(p.read_text(encoding="utf-8"))
        validate_data_dir(data_dir, no_feats=True, no_text=True)
    except (ValueError, UserError):
        return False
    return {k: v for k, v in old.items() if k != "counts"} == record


def prepare_mosei(corpus_dir: str | Path, data_dir: str | Path, label_dir: str | Path, *,
                  label_csv: str | Path | None = None, audio_dir: str | Path | None = None,
                  settings: PrepSettings | None = None, skip_missing_audio: bool = False) -> dict:
    """Write the Kaldi data dir and the sentiment label dir; skip both if already complete.

    Args:
        corpus_dir: the MOSEI corpus root (see the module docstring for the layout).
        data_dir: output Kaldi data dir (e.g. data/mosei), all kept segments of all splits.
        label_dir: output label dir (e.g. data/sentiment): utt2sentiment, {train,dev,test}.list.
        label_csv: the label table (default <corpus>/labels.csv).
        audio_dir: where <video>.wav live (default: searched under corpus_dir).
        settings: filter and split settings (default: S3PRL's, seed 29).
        skip_missing_audio: drop (with a warning) segments of videos without audio instead of failing.

    Returns counts: {"segments", "kept", "videos", "train", "dev", "test", "skipped": bool}.
    """
    settings = settings or PrepSettings()
    settings.check()
    corpus_dir, data_dir, label_dir = Path(corpus_dir), Path(data_dir), Path(label_dir)
    label_csv = Path(label_csv) if label_csv else corpus_dir / "labels.csv"
    audio_dir = Path(audio_dir) if audio_dir else find_audio_dir(corpus_dir)
    if not audio_dir.is_dir():
        raise UserError(f"{audio_dir}: audio directory does not exist")
    label_csv, audio_dir = label_csv.resolve(), audio_dir.resolve()
    if not label_csv.is_file():
        raise UserError(f"{label_csv}: no such label table (give --label-csv)")
    record = _settings_record(label_csv, audio_dir, settings, skip_missing_audio)
    if _complete(data_dir, label_dir, record):
        counts = json.loads((label_dir / PREP_FILE).read_text(encoding="utf-8")).get("counts", {})
        return {**counts, "skipped": True}

    rows = read_label_table(label_csv)
    durations: dict[str, float] = {}
    rates: dict[str, int] = {}
    paths: dict[str, Path] = {}
    missing: set[str] = set()
    kept: list[Segment] = []
    for seg in rows:
        if seg.video not in paths and seg.video not in missing:
            p = _audio_file(audio_dir, seg.video)
            if p is None:
                if not skip_missing_audio:
                    raise UserError(f"{label_csv}:{seg.line}: no audio for video '{seg.video}' "
                                    f"(expected {audio_dir}/{seg.video}.wav)")
                missing.add(seg.video)
                continue
            try:
                info = sf.info(str(p))
            except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
                raise UserError(f"{p}: unreadable audio of video '{seg.video}': {e}") from None
            if info.channels != 1:
                raise UserError(f"{p}: {info.channels} channels; MOSEI audio must be mono")
            paths[seg.video] = p.resolve()
            durations[seg.video] = info.frames / info.samplerate
            rates[seg.video] = info.samplerate
        if seg.video in missing:
            continue
        # The same rounding as s3prl.data.audio.slice_segment: the last sample index must exist.
        rate = rates[seg.video]
        n = int(round(durations[seg.video] * rate))
        if int(round(seg.end * rate)) > n:
            raise UserError(f"{label_csv}:{seg.line}: segment '{seg.key}' ends at {seg.end:g} s, past the end of "
                            f"video '{seg.video}' ({durations[seg.video]:.3f} s)")
        if keep_segment(seg, settings):
            kept.append(seg)
    if missing:
        log.warning("%s: no audio for %d video(s) (e.g. %s); their segments are skipped", label_csv, len(missing),
                    sorted(missing)[0])
    if not kept:
        raise UserError(f"{label_csv}: no segment passes the filter ({settings.min_duration:g}-"
                        f"{settings.max_duration:g} s, |sentiment| >= {settings.min_abs_score:g})")

    segments, utt2spk, utt2dur, scores, keys = {}, {}, {}, {}, {}
    for seg in kept:
        utt = utterance_id(seg.video, seg.start, seg.end)
        if utt in segments:
            raise UserError(f"{label_csv}:{seg.line}: segment '{seg.key}' has the same video and times as "
                            f"segment '{keys[utt]}'")
        segments[utt] = f"{seg.video} {seg.start:.3f} {seg.end:.3f}"
        utt2spk[utt] = seg.video
        utt2dur[utt] = f"{seg.duration:.3f}"
        scores[utt] = f"{seg.score:.4f}"
        keys[utt] = seg.key
    videos = sorted_c(set(utt2spk.values()))
    split = split_videos(videos, settings.seed, settings.test_proportion, settings.dev_proportion)
    video2split = {v: name for name in SPLITS for v in split[name]}
    lists = {name: [u for u in sorted_c(utt2spk) if video2split[utt2spk[u]] == name] for name in SPLITS}
    counts = {"segments": len(rows), "kept": len(kept), "videos": len(videos),
              **{name: len(lists[name]) for name in SPLITS},
              **{f"{name}_videos": len(split[name]) for name in SPLITS}}

    write_data_dir(data_dir, {"wav.scp": {v: str(paths[v]) for v in videos}, "segments": segments,
                              "utt2spk": utt2spk, "utt2dur": utt2dur,
                              "reco2dur": {v: f"{durations[v]:.4f}" for v in videos}}, no_text=True)
    with atomic_dir(label_dir) as tmp:
        write_kv(tmp / SCORE_FILE, scores)
        write_kv(tmp / KEY_FILE, keys)
        write_kv(tmp / "video2split", video2split)
        for name in SPLITS:
            (tmp / f"{name}.list").write_text("".join(u + "\n" for u in lists[name]), encoding="utf-8")
        (tmp / PREP_FILE).write_text(json.dumps({**record, "counts": counts}, indent=1, sort_keys=True) + "\n",
                                     encoding="utf-8")
    return {**counts, "skipped": False}


# ------------------------------------------------------------------------------------ reading
def read_sentiment_labels(label_dir: str | Path) -> tuple[dict[str, float], dict[str, list[str]]]:
    """(utt -> score, split -> utterance ids) from a label dir written by `prepare_mosei`."""
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: no such sentiment label directory (run the data preparation stage)")
    raw = read_kv(label_dir / SCORE_FILE)
    scores = {}
    for utt, v in raw.items():
        try:
            s = float(v)
        except ValueError:
            s = float("nan")
        if not math.isfinite(s) or not -3.0 <= s <= 3.0:
            raise UserError(f"{label_dir / SCORE_FILE}: utterance '{utt}': score '{v}' is not a number in [-3, 3]")
        scores[utt] = s
    splits = {}
    for name in SPLITS:
        p = label_dir / f"{name}.list"
        if not p.is_file():
            raise UserError(f"{p}: no such file")
        utts = [line.split()[0] for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not utts:
            raise UserError(f"{p}: empty split")
        for u in utts:
            if u not in scores:
                raise UserError(f"{p}: utterance '{u}' has no score in {label_dir / SCORE_FILE}")
        splits[name] = utts
    seen: dict[str, str] = {}
    for name, utts in splits.items():
        for u in utts:
            if u in seen:
                raise UserError(f"{label_dir / (name + '.list')}: utterance '{u}' is also in {seen[u]}.list")
            seen[u] = name
    return scores, splits


__all__ = ["LABEL_MODES", "NUM_CLASSES", "Segment", "PrepSettings", "sentiment_label", "utterance_id",
           "read_label_table", "keep_segment", "split_videos", "find_audio_dir", "prepare_mosei",
           "read_sentiment_labels"]
