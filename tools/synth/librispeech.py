#!/usr/bin/env python3
"""Synthetic LibriSpeech: a LibriSpeech-layout corpus with exact CPC-style frame phone labels.

Builds, offline and deterministically from a seed, a stand-in for LibriSpeech train-clean-100
(plus small dev-clean / test-clean sets of other speakers) out of Debian TTS engines whose phone
timings are exact (engines.py; findings in docs/synthetic-corpus.md):

    OUT/LibriSpeech/<subset>/SPK/CHAPTER/SPK-CHAPTER-UUUU.flac   16 kHz mono 16-bit FLAC
    OUT/LibriSpeech/<subset>/SPK/CHAPTER/SPK-CHAPTER.trans.txt   "UTTID WORDS ..." (upper case)
    OUT/LibriSpeech/SPEAKERS.TXT      ";" comments, "ID | SEX | SUBSET | MINUTES | NAME" rows
    OUT/cpc/converted_aligned_phones.txt  "UTTID id id ..." per train-clean-100 utterance, one id per
                                          10 ms frame: 1 + (n - 400) // 160 frames (25 ms / 10 ms
                                          snip-edges), frame i = phone at sample 160 i + 200
    OUT/cpc/train_split.txt, test_split.txt   utterance ids, about 80/20 within every speaker (CPC)
    OUT/cpc/phones.txt                "ID PHONE", 41 classes in Kaldi sets.txt order (phones.py)
    OUT/lexicon.txt                   "WORD PHONE ..." for every transcript word, the 41 classes (lexicon.py)
    OUT/speakers.tsv                  every speaker's subset, engine, sex and parameters (JSON)
    OUT/manifest.json                 preset, seed, settings, counts, seconds, TTS package versions

Each speaker is one job with generators seeded from (seed, speaker id, purpose), so the bytes do
not depend on --jobs. The corpus is built in a temporary directory next to OUT and renamed when
complete; a complete OUT with the same settings is left alone.

    python tools/synth/librispeech.py --out DIR [--preset tiny|default|large] [--seed N]
        [--speakers N] [--utts N] [--engines hts,flite,espeak] [--difficulty D] [--chapters N] [--jobs N]
"""
from __future__ import annotations

import argparse
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
import text as textlib  # noqa: E402
from channel import apply_channel  # noqa: E402
from lexicon import write_lexicon  # noqa: E402
from phones import PHONES, SR, frame_labels  # noqa: E402
from voices import Speaker, SpeakerVoice, draw_speaker  # noqa: E402

from s3prl.config import to_dict  # noqa: E402
from s3prl.errors import UserError, cli_main  # noqa: E402
from s3prl.log import setup_logging  # noqa: E402

log = logging.getLogger("synth")

TRAIN, DEV, TEST = "train-clean-100", "dev-clean", "test-clean"
SUBSETS = (TRAIN, DEV, TEST)
MIN_SECONDS, MAX_SECONDS = 3.0, 8.0
FORMAT_VERSION = 1


@dataclass
class CorpusConfig:
    """What the corpus is built from; everything but `jobs` is recorded in manifest.json."""
    preset: str = "default"
    seed: int = 1
    speakers: int = 100              # train-clean-100 speakers
    utts: int = 10                   # utterances per train speaker
    eval_speakers: int = 10          # speakers in each of dev-clean and test-clean
    eval_utts: int = 4               # utterances per dev/test speaker
    engines: list[str] = field(default_factory=lambda: ["hts", "flite", "espeak"])  # round robin
    difficulty: float = 0.5          # spread of speaker parameters (1 = prototype, smaller = harder)
    chapters: int = 2                # recording sessions per speaker (own channel, room, noise)

    def check(self) -> None:
        for name in ("speakers", "eval_speakers", "chapters"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.utts < 2 or self.eval_utts < 1:
            raise UserError(f"--utts must be >= 2 (every speaker is on both sides of the CPC split), got {self.utts}")
        if self.chapters > min(self.utts, self.eval_utts):
            raise UserError(f"--chapters {self.chapters} exceeds the utterances per speaker")
        corpus.check_voice_options(self.difficulty, self.engines)


# Presets. default = docs/synthetic-corpus.md §4 (difficulty 0.5, 2 chapters, 100 speakers x 10 utts).
PRESETS = {
    "tiny": CorpusConfig(preset="tiny", speakers=6, utts=4, eval_speakers=2, eval_utts=2),
    "default": CorpusConfig(preset="default"),
    "large": CorpusConfig(preset="large", speakers=251, utts=25, eval_speakers=40, eval_utts=10, chapters=3),
}


@dataclass
class SpeakerJob:
    speaker: Speaker
    subset: str
    chapters: list[int]
    n_utts: int
    texts: list[str]          # candidate texts; more are drawn from the speaker's own stream if needed
    seed: int
    root: str                 # OUT/LibriSpeech/<subset> (temporary name)
    workdir: str              # scratch dir shared by all jobs (each job uses its own subdir)
    espeak_data: str | None
    with_labels: bool


def plan_speakers(cfg: CorpusConfig) -> list[tuple[str, Speaker, list[int]]]:
    """Speaker ids, engines and parameters for all subsets: [(subset, speaker, chapter ids)]."""
    counts = {TRAIN: cfg.speakers, DEV: cfg.eval_speakers, TEST: cfg.eval_speakers}
    rng = np.random.default_rng([cfg.seed, 0])
    ids = rng.choice(np.arange(10, 9000), sum(counts.values()), replace=False).tolist()
    plan, per_engine, k = [], {e: 0 for e in engines.ENGINES}, 0
    for subset in SUBSETS:
        for j, spk_id in enumerate(sorted(ids[k:k + counts[subset]])):
            engine = cfg.engines[j % len(cfg.engines)]
            sp = draw_speaker(np.random.default_rng([cfg.seed, spk_id, 0]), spk_id, engine, per_engine[engine],
                              cfg.difficulty, cfg.chapters)
            per_engine[engine] += 1
            ch_rng = np.random.default_rng([cfg.seed, spk_id, 5])
            chapters = sorted(int(c) for c in ch_rng.choice(np.arange(10, 300000), cfg.chapters, replace=False))
            plan.append((subset, sp, chapters))
        k += counts[subset]
    return plan


def _text_stream(job: SpeakerJob, sentences: list[str]):
    yield from job.texts
    extra = np.random.default_rng([job.seed, job.speaker.id, 4])
    while True:
        yield from textlib.make_texts(sentences, extra, 8)


def run_speaker(job: SpeakerJob) -> tuple[int, list[tuple[str, str, str | None, int]]]:
    """Synthesize one speaker's utterances, write FLACs and trans.txt files.

    Returns (speaker id, [(utt id, transcript, label line or None, num samples)])."""
    sp = job.speaker
    rng = np.random.default_rng([job.seed, sp.id, 1])
    work = Path(job.workdir) / f"spk{sp.id}"
    work.mkdir(parents=True, exist_ok=True)
    voice = SpeakerVoice(sp, work, job.espeak_data)
    sentences = textlib.load_sentences()
    stream = _text_stream(job, sentences)
    nch = len(job.chapters)
    results: list[tuple[str, str, str | None, int]] = []
    tries = 0
    while len(results) < job.n_utts:
        need = job.n_utts - len(results)
        batch = [next(stream) for _ in range(need + need // 8)]
        tries += len(batch)
        if tries > 10 * job.n_utts + 20:
            raise RuntimeError(f"speaker {sp.id}: too few utterances of {MIN_SECONDS}-{MAX_SECONDS} s")
        for text, (y, segs) in zip(batch, voice.render(batch, rng)):
            if len(results) >= job.n_utts:
                break
            k = len(results) % nch
            # a fresh generator per utterance from the chapter's seed: the chapter keeps one room
            room_rng = np.random.default_rng([job.seed, sp.id, 2, k])
            y, lead = apply_channel(y, sp.channels[k], room_rng, rng)
            if not MIN_SECONDS <= len(y) / SR <= MAX_SECONDS:
                continue
            ch = job.chapters[k]
            uid = f"{sp.id}-{ch}-{len(results) // nch:04d}"
            out_dir = Path(job.root) / str(sp.id) / str(ch)
            out_dir.mkdir(parents=True, exist_ok=True)
            sf.write(str(out_dir / f"{uid}.flac"), y, SR, format="FLAC", subtype="PCM_16")
            labels = None
            if job.with_labels:
                shifted = [(p, s + lead, e + lead) for p, s, e in segs]
                labels = uid + " " + " ".join(map(str, frame_labels(shifted, len(y)).tolist()))
            results.append((uid, textlib.transcript(text), labels, len(y)))
    for ch in job.chapters:
        lines = sorted(f"{uid} {tr}\n" for uid, tr, _, _ in results if uid.split("-")[1] == str(ch))
        with open(Path(job.root) / str(sp.id) / str(ch) / f"{sp.id}-{ch}.trans.txt", "w", encoding="utf-8") as f:
            f.writelines(lines)
    shutil.rmtree(work, ignore_errors=True)
    return sp.id, results


def _job_cost(job: SpeakerJob) -> float:
    per_utt = {"hts": 0.5, "flite": 0.2, "espeak": 0.05}[job.speaker.engine]
    return per_utt * job.n_utts


def _run_jobs(jobs: list[SpeakerJob], n_workers: int) -> dict[int, list]:
    # Every speaker runs in a fresh forked process (also with one worker): the espeak library keeps
    # state between calls in a process, so which speakers a worker rendered before would leak into
    # the audio and make the output depend on --jobs and on scheduling.
    return corpus.run_jobs(run_speaker, jobs, n_workers, _job_cost, fresh_process=True)


def speakers_txt(rows: list[tuple[Speaker, str, float]]) -> str:
    """SPEAKERS.TXT in LibriSpeech's format."""
    lines = ["; Synthetic speakers made by tools/synth/librispeech.py (engine and parameters in",
             "; ../speakers.tsv). MINUTES is the total duration of the speaker's utterances.",
             ";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for sp, subset, minutes in sorted(rows, key=lambda r: r[0].id):
        p = sp.params
        detail = {"hts": "slt-hts", "flite": p.get("voice", ""), "espeak": p.get("accent", "")}[sp.engine]
        lines.append(f"{sp.id:<5}| {sp.sex} | {subset:<16} | {minutes:5.2f} | synthetic {sp.engine} {detail} s{sp.id}")
    return "\n".join(lines) + "\n"


def cpc_split(seed: int, by_speaker: dict[int, list[str]]) -> tuple[list[str], list[str]]:
    """About 80/20 within every speaker (at least one utterance on each side), seeded per speaker."""
    train, test = [], []
    for sid in sorted(by_speaker):
        utts = sorted(by_speaker[sid])
        order = np.random.default_rng([seed, sid, 3]).permutation(len(utts))
        n_test = min(len(utts) - 1, max(1, int(round(len(utts) / 5))))
        for rank, j in enumerate(order):
            (test if rank < n_test else train).append(utts[j])
    return sorted(train), sorted(test)


def build(cfg: CorpusConfig, out: Path, jobs: int) -> dict:
    """Generate the whole corpus into the directory `out` (which must be empty); return the manifest."""
    t0 = time.time()
    plan = plan_speakers(cfg)
    sentences = textlib.load_sentences()
    spare = max(2, cfg.utts // 8 + 1)
    text_rng = np.random.default_rng([cfg.seed, 1])
    n_texts = [(cfg.utts if subset == TRAIN else cfg.eval_utts) + spare for subset, _, _ in plan]
    all_texts = textlib.make_texts(sentences, text_rng, sum(n_texts))
    with corpus.espeak_scratch("synth_work_", [sp for _, sp, _ in plan]) as (scratch, espeak_data):
        job_list, k = [], 0
        for (subset, sp, chapters), n in zip(plan, n_texts):
            job_list.append(SpeakerJob(
                speaker=sp, subset=subset, chapters=chapters, n_utts=n - spare, texts=all_texts[k:k + n],
                seed=cfg.seed, root=str(out / "LibriSpeech" / subset), workdir=str(scratch),
                espeak_data=espeak_data, with_labels=subset == TRAIN))
            k += n
        results = _run_jobs(job_list, jobs)

    rows, subset_stats, label_lines, by_speaker = [], {}, [], {}
    tsv = []
    for subset, sp, chapters in plan:
        res = results[sp.id]
        seconds = sum(n for _, _, _, n in res) / SR
        rows.append((sp, subset, seconds / 60))
        st = subset_stats.setdefault(subset, {"speakers": 0, "utterances": 0, "seconds": 0.0})
        st["speakers"] += 1
        st["utterances"] += len(res)
        st["seconds"] += seconds
        tsv.append(f"{sp.id}\t{subset}\t{sp.engine}\t{sp.sex}\t{','.join(map(str, chapters))}\t{sp.params_json()}")
        if subset == TRAIN:
            label_lines += [lab + "\n" for _, _, lab, _ in res]
            by_speaker[sp.id] = [uid for uid, _, _, _ in res]
    train, test = cpc_split(cfg.seed, by_speaker)
    cpc = out / "cpc"
    cpc.mkdir()
    (cpc / "converted_aligned_phones.txt").write_text("".join(sorted(label_lines)), encoding="utf-8")
    (cpc / "train_split.txt").write_text("".join(u + "\n" for u in train), encoding="utf-8")
    (cpc / "test_split.txt").write_text("".join(u + "\n" for u in test), encoding="utf-8")
    (cpc / "phones.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(PHONES)), encoding="utf-8")
    (out / "LibriSpeech" / "SPEAKERS.TXT").write_text(speakers_txt(rows), encoding="utf-8")
    n_lex = len(write_lexicon(out).read_text(encoding="utf-8").splitlines())
    corpus.write_speakers_tsv(out, "speaker\tsubset\tengine\tsex\tchapters\tparams", tsv)
    for st in subset_stats.values():
        st["seconds"] = round(st["seconds"], 3)
    cfg_dict = to_dict(cfg)
    manifest = {
        "generator": "tools/synth/librispeech.py", "format_version": FORMAT_VERSION,
        "preset": cfg.preset, "seed": cfg.seed, "config": cfg_dict, "subsets": subset_stats,
        "total_seconds": round(sum(st["seconds"] for st in subset_stats.values()), 3),
        "cpc": {"utterances": len(label_lines), "train": len(train), "test": len(test), "classes": len(PHONES)},
        "engines": {e: sum(1 for _, sp, _ in plan if sp.engine == e) for e in engines.ENGINES},
        "sentences": len(sentences), "lexicon": n_lex, "packages": engines.package_versions(),
    }
    corpus.write_manifest(out, manifest)
    log.info("built %d utterances (%.1f min of audio) in %.1f s with %d jobs",
             sum(st["utterances"] for st in subset_stats.values()), manifest["total_seconds"] / 60,
             time.time() - t0, jobs)
    return manifest


def existing_manifest(out: Path, cfg: CorpusConfig) -> bool:
    """True if `out` is a complete corpus with the same settings; UserError if it holds anything else."""
    return corpus.existing_manifest(out, cfg)


def make_config(args: argparse.Namespace) -> CorpusConfig:
    """The preset with the command-line overrides applied."""
    return corpus.apply_args(PRESETS, args, ("speakers", "utts", "difficulty", "chapters"))


def generate(out: str | Path, cfg: CorpusConfig, jobs: int = 1) -> bool:
    """Build the corpus `cfg` at `out` unless it is already complete with the same settings.

    Returns True if a corpus was built, False if `out` was already complete (nothing done)."""
    summary = (f"preset {cfg.preset} seed {cfg.seed}, {cfg.speakers}+{cfg.eval_speakers}+{cfg.eval_speakers} "
               f"speakers, engines {','.join(cfg.engines)}")
    return corpus.generate_corpus(out, cfg, jobs, build, lambda o: existing_manifest(o, cfg), summary)


def main(argv: list[str] | None = None) -> int:
    ap = corpus.base_parser("librispeech.py", __doc__, PRESETS)
    ap.add_argument("--speakers", type=int, help="train-clean-100 speakers")
    ap.add_argument("--utts", type=int, help="utterances per train speaker")
    ap.add_argument("--chapters", type=int, help="recording sessions per speaker")
    corpus.finish_parser(ap, "comma list over which speakers are spread round robin (repeat a name to weight it), "
                             "from: ")
    args = ap.parse_args(argv)
    setup_logging()
    generate(args.out, make_config(args), args.jobs)
    return 0

if __name__ == "__main__":
    cli_main(main)
