#!/usr/bin/env python3
"""Synthetic CMU-MOSEI: a MOSEI-layout sentiment corpus whose labels live in the spoken words.

CMU-MOSEI (Zadeh et al., ACL 2018) is a set of YouTube opinion videos, each by one speaker, cut
into sentence segments labelled with a sentiment score in [-3, 3]. This generator builds, offline
and deterministically from a seed, a small stand-in with the same layout, out of the Debian TTS
engines and speaker/channel models of the synthetic LibriSpeech generator (engines.py, voices.py,
channel.py, reused as they are):

    OUT/Audio/Full/WAV_16000/<video>.wav   one long "video" soundtrack, 16 kHz mono 16-bit WAV
    OUT/labels.csv                         key,filename,start,end,sentiment  (S3PRL's
                                           mosei_no_semi.csv columns; key = <video>_<n>, times in s)
    OUT/Transcript/Segmented/Combined/<video>.txt  "<video>___<n>___<start>___<end>___<text>"
                                           (the layout of MOSEI's segmented transcripts)
    OUT/speakers.tsv                       speaker, engine, sex, videos, parameters (JSON)
    OUT/manifest.json                      preset, seed, settings, counts, seconds, package versions

Every video is one synthetic speaker saying a shuffled script (sentiment_text.video_script):
opinion sentences, half positive and half negative, whose score comes from an opinion word of
known polarity and strength, plus a neutral sentence and a short filler ("Okay.") that the MOSEI
filter (1-20 s, |score| >= 0.1) drops. Sentences are joined with 0.4-1.2 s pauses, then the
video's recording channel (band-pass, tilt, room, noise at a drawn SNR, gain) is applied once to
the whole soundtrack. A labelled segment spans its sentence plus 0.1 s on each side (inside the
pauses). Because every speaker and every video says positive and negative sentences in balance,
the sentiment is only recoverable from the content, not from the voice or the channel.

Each speaker is one job with generators seeded from (seed, speaker id, purpose), so the bytes do
not depend on --jobs. The corpus is built in a temporary directory next to OUT and renamed when
complete; a complete OUT with the same settings is left alone.

    python tools/synth/mosei.py --out DIR [--preset tiny|default|large] [--seed N]
        [--speakers N] [--videos N] [--opinions N] [--engines hts,flite,espeak] [--jobs N]
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
import engines  # noqa: E402
import sentiment_text  # noqa: E402
from channel import apply_channel  # noqa: E402
from phones import SR  # noqa: E402
from voices import Speaker, SpeakerVoice, draw_speaker  # noqa: E402

from s3prl.config import to_dict  # noqa: E402
from s3prl.errors import UserError, cli_main  # noqa: E402
from s3prl.log import setup_logging  # noqa: E402

log = logging.getLogger("synth.mosei")

FORMAT_VERSION = 1
AUDIO_DIR = "Audio/Full/WAV_16000"
TRANSCRIPT_DIR = "Transcript/Segmented/Combined"
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("key", "filename", "start", "end", "sentiment")
PAUSE = (0.4, 1.2)          # seconds of silence between sentences
MARGIN = 0.1                # seconds a segment extends beyond its sentence on each side
YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass
class MoseiConfig:
    """What the corpus is built from; everything but `jobs` is recorded in manifest.json."""
    preset: str = "default"
    seed: int = 1
    speakers: int = 12               # one speaker per channel of videos; each records `videos` videos
    videos: int = 3                  # videos per speaker
    opinions: int = 12               # opinion sentences per video (half positive, half negative)
    neutral: int = 1                 # neutral sentences (score 0) per video
    fillers: int = 1                 # short fillers (< 1 s, score 0) per video
    engines: list[str] = field(default_factory=lambda: ["hts", "flite", "espeak"])  # round robin
    difficulty: float = 0.5          # spread of speaker parameters (voices.draw_speaker)

    def check(self) -> None:
        for name in ("speakers", "videos"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.speakers * self.videos < 3:
            raise UserError(f"--speakers x --videos must be >= 3 (train, dev and test need a video each), "
                            f"got {self.speakers * self.videos}")
        if self.opinions < 2:
            raise UserError(f"--opinions must be >= 2 (one positive and one negative), got {self.opinions}")
        if self.neutral < 0 or self.fillers < 0:
            raise UserError("neutral and fillers must be >= 0")
        corpus.check_voice_options(self.difficulty, self.engines)


PRESETS = {
    # tiny: espeak only (fast); 8 videos -> 6 train / 1 dev / 1 test after the video-level split.
    "tiny": MoseiConfig(preset="tiny", speakers=4, videos=2, opinions=6, engines=["espeak"]),
    "default": MoseiConfig(preset="default"),
    "large": MoseiConfig(preset="large", speakers=40, videos=5, opinions=16),
}


@dataclass
class SpeakerJob:
    speaker: Speaker
    video_ids: list[str]
    cfg: MoseiConfig
    root: str                 # OUT (temporary name)
    workdir: str              # scratch dir shared by all jobs (each job uses its own subdir)
    espeak_data: str | None


def video_id(rng: np.random.Generator) -> str:
    """An 11-character YouTube-style id ([A-Za-z0-9_-])."""
    return "".join(YOUTUBE_ALPHABET[int(i)] for i in rng.integers(0, len(YOUTUBE_ALPHABET), 11))


def plan(cfg: MoseiConfig) -> list[tuple[Speaker, list[str]]]:
    """Speakers (engine, parameters, one channel per video) and their video ids."""
    rng = np.random.default_rng([cfg.seed, 0])
    ids = sorted(rng.choice(np.arange(10, 9000), cfg.speakers, replace=False).tolist())
    out, per_engine, seen = [], {e: 0 for e in engines.ENGINES}, set()
    for j, spk_id in enumerate(ids):
        engine = cfg.engines[j % len(cfg.engines)]
        sp = draw_speaker(np.random.default_rng([cfg.seed, spk_id, 0]), spk_id, engine, per_engine[engine],
                          cfg.difficulty, cfg.videos)
        per_engine[engine] += 1
        vid_rng = np.random.default_rng([cfg.seed, spk_id, 5])
        vids = []
        while len(vids) < cfg.videos:
            v = video_id(vid_rng)
            if v not in seen:
                seen.add(v)
                vids.append(v)
        out.append((sp, vids))
    return out


def run_speaker(job: SpeakerJob) -> tuple[int, list[dict]]:
    """Synthesize one speaker's videos; write their WAVs and transcripts.

    Returns (speaker id, [{"video", "seconds", "segments": [(key, start, end, score, kind, text)]}])."""
    sp, cfg = job.speaker, job.cfg
    work = Path(job.workdir) / f"spk{sp.id}"
    work.mkdir(parents=True, exist_ok=True)
    voice = SpeakerVoice(sp, work, job.espeak_data)
    videos = []
    for k, vid in enumerate(job.video_ids):
        script_rng = np.random.default_rng([cfg.seed, sp.id, 1, k])
        script = sentiment_text.video_script(script_rng, cfg.opinions, cfg.neutral, cfg.fillers)
        jitter_rng = np.random.default_rng([cfg.seed, sp.id, 2, k])
        rendered = voice.render([s.text for s in script], jitter_rng)
        pieces, spans, pos = [], [], 0
        for i, (y, _) in enumerate(rendered):
            if i:
                gap = np.zeros(int(jitter_rng.uniform(*PAUSE) * SR), dtype=np.float32)
                pieces.append(gap)
                pos += len(gap)
            pieces.append(np.asarray(y, dtype=np.float32))
            spans.append((pos, pos + len(y)))
            pos += len(y)
        clean = np.concatenate(pieces)
        room_rng = np.random.default_rng([cfg.seed, sp.id, 3, k])
        audio, lead = apply_channel(clean, sp.channels[k], room_rng, np.random.default_rng([cfg.seed, sp.id, 4, k]))
        total = len(audio)
        segs = []
        for i, (sent, (s, e)) in enumerate(zip(script, spans)):
            start = max(0.0, round((s + lead) / SR - MARGIN, 3))
            end = min(total / SR, round((e + lead) / SR + MARGIN, 3))
            end = float(np.floor(end * 1000) / 1000)   # never past the last sample
            segs.append((f"{vid}_{i}", start, end, sent.score, sent.kind, sent.text))
        sf.write(str(Path(job.root) / AUDIO_DIR / f"{vid}.wav"), audio, SR, subtype="PCM_16")
        lines = [f"{vid}___{i}___{s:.3f}___{e:.3f}___{text}\n" for i, (_, s, e, _, _, text) in enumerate(segs)]
        (Path(job.root) / TRANSCRIPT_DIR / f"{vid}.txt").write_text("".join(lines), encoding="utf-8")
        videos.append({"video": vid, "seconds": total / SR, "segments": segs})
    shutil.rmtree(work, ignore_errors=True)
    return sp.id, videos


JOB_COST = {"hts": 5.0, "flite": 2.0, "espeak": 1.0}


def _run_jobs(jobs: list[SpeakerJob], n_workers: int) -> dict[int, list]:
    # Every speaker runs in a fresh forked process (also with one worker): the espeak library
    # keeps state between calls in a process, so a speaker rendered after another would differ.
    return corpus.run_jobs(run_speaker, jobs, n_workers, lambda j: JOB_COST[j.speaker.engine], fresh_process=True)


def labels_csv(rows: list[tuple[str, str, float, float, float]]) -> str:
    """The label table text: header `LABEL_COLUMNS`, one row per segment sorted by key."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LABEL_COLUMNS)
    for key, vid, start, end, score in sorted(rows):
        w.writerow([key, vid, f"{start:.3f}", f"{end:.3f}", f"{score:.4f}"])
    return buf.getvalue()


def build(cfg: MoseiConfig, out: Path, jobs: int) -> dict:
    """Generate the whole corpus into the empty directory `out`; return the manifest."""
    t0 = time.time()
    speakers = plan(cfg)
    (out / AUDIO_DIR).mkdir(parents=True)
    (out / TRANSCRIPT_DIR).mkdir(parents=True)
    with corpus.espeak_scratch("synth_mosei_", [sp for sp, _ in speakers]) as (scratch, espeak_data):
        job_list = [SpeakerJob(sp, vids, cfg, str(out), str(scratch), espeak_data) for sp, vids in speakers]
        results = _run_jobs(job_list, jobs)

    rows, kinds, seconds = [], {}, 0.0
    tsv = []
    for sp, vids in speakers:
        tsv.append(f"{sp.id}\t{sp.engine}\t{sp.sex}\t{','.join(vids)}\t{sp.params_json()}")
        for v in results[sp.id]:
            seconds += v["seconds"]
            for key, start, end, score, kind, _ in v["segments"]:
                rows.append((key, v["video"], start, end, score))
                kinds[kind] = kinds.get(kind, 0) + 1
    (out / LABELS_FILE).write_text(labels_csv(rows), encoding="utf-8")
    corpus.write_speakers_tsv(out, "speaker\tengine\tsex\tvideos\tparams", tsv)
    manifest = {
        "generator": "tools/synth/mosei.py", "format_version": FORMAT_VERSION,
        "preset": cfg.preset, "seed": cfg.seed, "config": to_dict(cfg),
        "videos": sum(len(v) for _, v in speakers), "segments": len(rows), "segment_kinds": kinds,
        "total_seconds": round(seconds, 3),
        "engines": {e: sum(1 for sp, _ in speakers if sp.engine == e) for e in engines.ENGINES},
        "packages": engines.package_versions(),
    }
    corpus.write_manifest(out, manifest)
    log.info("built %d videos, %d segments (%.1f min of audio) in %.1f s with %d jobs", manifest["videos"],
             len(rows), seconds / 60, time.time() - t0, jobs)
    return manifest


def existing_manifest(out: Path, cfg: MoseiConfig) -> bool:
    """True if `out` is a complete corpus with the same settings; UserError if it holds anything else."""
    return corpus.existing_manifest(out, cfg, what="synthetic MOSEI corpus", generator="tools/synth/mosei.py",
                                    bad_manifest="not a synthetic MOSEI manifest")


def generate(out: str | Path, cfg: MoseiConfig, jobs: int = 1) -> bool:
    """Build the corpus `cfg` at `out` unless it is already complete with the same settings.

    Returns True if a corpus was built, False if `out` was already complete (nothing done)."""
    summary = (f"preset {cfg.preset} seed {cfg.seed}, {cfg.speakers} speakers x {cfg.videos} videos, "
               f"engines {','.join(cfg.engines)}")
    return corpus.generate_corpus(out, cfg, jobs, build, lambda o: existing_manifest(o, cfg), summary, lock=False)


def make_config(args: argparse.Namespace) -> MoseiConfig:
    """The preset with the command-line overrides applied."""
    return corpus.apply_args(PRESETS, args, ("speakers", "videos", "opinions", "difficulty"))


def main(argv: list[str] | None = None) -> int:
    ap = corpus.base_parser("mosei.py", __doc__, PRESETS)
    ap.add_argument("--speakers", type=int, help="number of speakers")
    ap.add_argument("--videos", type=int, help="videos per speaker")
    ap.add_argument("--opinions", type=int, help="opinion sentences per video")
    corpus.finish_parser(ap, "comma list over which speakers are spread round robin, from: ")
    args = ap.parse_args(argv)
    setup_logging()
    generate(args.out, make_config(args), args.jobs)
    return 0


if __name__ == "__main__":
    cli_main(main)
