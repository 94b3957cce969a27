"""What the synthetic-corpus generators share (librispeech.py, mosei.py).

A generator plans speakers from a seeded config, renders each speaker as one job (in worker
processes), then writes its corpus layout plus ``speakers.tsv`` and ``manifest.json``. This module
holds the parts that do not depend on the corpus:

- `existing_manifest`: whether an output dir already holds the same corpus (skip), nothing
  (build) or something else (UserError naming the differing settings);
- `generate_corpus`: the skip-if-complete / build-in-a-temporary-dir-and-rename frame around a
  generator's ``build(cfg, tmp, jobs)`` (s3prl.atomic: the corpus appears complete or not at all);
- `espeak_scratch`: the scratch dir with the espeak-ng voice data the speakers need;
- `run_jobs`: speaker jobs, longest first, in forked worker processes;
- `check_voice_options`, `write_manifest`, `write_speakers_tsv`, `apply_args`, `base_parser`,
  `finish_parser`: option checks, output files and the CLI.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import engines
from voices import espeak_variants

from s3prl.atomic import StageLock, atomic_dir, remove_stale_tmp
from s3prl.config import ConfigError, from_dict
from s3prl.errors import UserError

log = logging.getLogger("synth")


def check_voice_options(difficulty: float, engine_names: list[str]) -> None:
    """UserError unless --difficulty is in (0, 2] and --engines names known engines (engines.ENGINES)."""
    if not 0.0 < difficulty <= 2.0:
        raise UserError(f"--difficulty must be in (0, 2], got {difficulty}")
    if not engine_names:
        raise UserError("--engines is empty")
    for e in engine_names:
        if e not in engines.ENGINES:
            raise UserError(f"--engines: unknown engine '{e}' (choose from {', '.join(engines.ENGINES)})")


def existing_manifest(out: Path, cfg, *, what: str = "synthetic corpus", generator: str | None = None,
                      bad_manifest: str = "unreadable manifest") -> bool:
    """True if `out` is a complete corpus built with `cfg` (its manifest.json records the same
    config dataclass); False if `out` is absent or empty; UserError if it holds anything else.

    what: the corpus named in errors. generator: if given, the manifest must name it. bad_manifest:
    the error text for a manifest that cannot be read as one of this generator's."""
    man = out / "manifest.json"
    if not out.exists():
        return False
    if not man.is_file():
        if out.is_dir() and not any(out.iterdir()):
            return False
        raise UserError(f"{out}: exists but is not a complete {what} (no manifest.json); remove it")
    try:
        data = json.loads(man.read_text(encoding="utf-8"))
        if generator is not None and data.get("generator") != generator:
            raise KeyError("generator")
        old = from_dict(type(cfg), data["config"], str(man))
    except (ValueError, KeyError, ConfigError) as e:
        raise UserError(f"{man}: {bad_manifest} ({e}); remove {out}") from None
    if old != cfg:
        diff = [f"{f.name}={getattr(old, f.name)!r} (asked {getattr(cfg, f.name)!r})"
                for f in dataclasses.fields(cfg) if getattr(old, f.name) != getattr(cfg, f.name)]
        raise UserError(f"{out}: already holds a corpus built with {', '.join(diff)}; use another --out or remove it")
    return True


def generate_corpus(out: str | Path, cfg, jobs: int, build: Callable, is_complete: Callable[[Path], bool],
                    summary: str, *, lock: bool = True) -> bool:
    """Build `cfg` at `out` with ``build(cfg, tmp_dir, jobs)`` unless it is already complete.

    is_complete(out): `existing_manifest` bound to the generator. summary: logged when building.
    lock: hold a StageLock on out's parent while building (a second run fails at once instead of
    building the same corpus twice). Returns True if a corpus was built, False if `out` was
    already complete (nothing done)."""
    cfg.check()
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    out = Path(out).absolute()

    def done() -> bool:
        if is_complete(out):
            log.info("%s: complete (preset %s, seed %d), nothing to do", out, cfg.preset, cfg.seed)
            return True
        return False

    if done():
        return False
    engines.check_engines(sorted(set(cfg.engines)))
    if not lock:
        out.parent.mkdir(parents=True, exist_ok=True)
    with StageLock(out.parent, f"synthetic corpus {out.name}") if lock else contextlib.nullcontext():
        if lock and done():  # finished by another run meanwhile
            return False
        if out.exists():
            out.rmdir()  # existing_manifest() allowed only an empty directory
        remove_stale_tmp(out.parent)
        log.info("building %s: %s", out, summary)
        with atomic_dir(out) as tmp:
            build(cfg, tmp, jobs)
    return True


@contextlib.contextmanager
def espeak_scratch(prefix: str, speakers: list) -> Iterator[tuple[Path, str | None]]:
    """A scratch directory shared by all jobs (removed afterwards) and, if any of `speakers`
    uses an espeak variant, the espeak-ng data dir holding those variants (else None)."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        espeak_data = None
        variants = espeak_variants(speakers)
        if variants:
            espeak_data = str(engines.make_espeak_data(scratch, variants))
        yield scratch, espeak_data
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_jobs(run: Callable, jobs: list, n_workers: int, cost: Callable, *, fresh_process: bool = False) -> dict:
    """``run(job) -> (speaker id, result)`` over `jobs`, longest (`cost`) first for load balance;
    results are keyed by speaker, so completion order never matters. fresh_process: every job in a
    new forked process, also with one worker (for engines that keep state between calls);
    otherwise one worker runs the jobs in this process."""
    ordered = sorted(jobs, key=lambda j: (-cost(j), j.speaker.id))
    out = {}
    if n_workers <= 1 and not fresh_process:
        for job in ordered:
            sid, res = run(job)
            out[sid] = res
        return out
    with multiprocessing.get_context("fork").Pool(max(1, n_workers), maxtasksperchild=1 if fresh_process else None) \
            as pool:
        for sid, res in pool.imap_unordered(run, ordered, chunksize=1):
            out[sid] = res
    return out


def write_speakers_tsv(out: Path, header: str, rows: list[str]) -> None:
    """``<out>/speakers.tsv``: `header` and one tab-separated row per speaker."""
    (out / "speakers.tsv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def write_manifest(out: Path, manifest: dict) -> None:
    """``<out>/manifest.json`` (sorted keys; its "config" is what `existing_manifest` compares)."""
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def base_parser(prog: str, doc: str, presets: dict) -> argparse.ArgumentParser:
    """The options every generator has: --out, --preset, --seed (the others add theirs, then
    `finish_parser` adds --engines, --difficulty and --jobs)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output corpus directory")
    ap.add_argument("--preset", choices=sorted(presets), default="default")
    ap.add_argument("--seed", type=int, default=1)
    return ap


def finish_parser(ap: argparse.ArgumentParser, engines_help: str) -> argparse.ArgumentParser:
    ap.add_argument("--engines", help=engines_help + ",".join(engines.ENGINES))
    ap.add_argument("--difficulty", type=float, help="spread of speaker parameters (smaller = harder)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel speaker jobs")
    return ap


def apply_args(presets: dict, args: argparse.Namespace, names: tuple[str, ...]):
    """The preset `args.preset` with --seed, the options `names` given and --engines applied."""
    cfg = dataclasses.replace(presets[args.preset], seed=args.seed)
    for name in names:
        if getattr(args, name) is not None:
            cfg = dataclasses.replace(cfg, **{name: getattr(args, name)})
    if args.engines is not None:
        cfg = dataclasses.replace(cfg, engines=[e.strip() for e in args.engines.split(",") if e.strip()])
    cfg.check()
    return cfg
