"""Short fingerprints of what a downstream run read: corpus, features, upstream checkpoint.

Every downstream task records them in its ``results.json`` (``"fingerprints": {"corpus",
"features", "checkpoint"}``, each the first 10 hex digits of a sha256; s3prl.downstream.runner
`run_fields`) and the RESULTS.md tables show the first 4 of each as ``c:ab12 f:cd34 k:ef56``.
Two runs of the same row can then be told apart (`compare`, ``python -m s3prl.bin.results_table
--compare A B``):

- ``corpus``: the data dir's utterance tables (``text``, ``utt2spk``, ``segments``: their bytes,
  `s3prl.data.kaldi_dir.files_identity`), ``wav.scp`` with every audio file it names replaced by
  the sha256 of the file's bytes (streamed, `s3prl.atomic.file_sha256`; each file hashed once per
  run however many dirs name it) and, for tasks with a label dir, the bytes of the label files. No
  absolute path enters the hash: the same corpus generated in another clone has the same
  fingerprint.
- ``features``: the representations the head read. For ``feats.scp`` input (a dump layer dir, Kaldi
  fbank): each utterance's (ark file, byte offset) and the sha256 of every ark's bytes, ark files
  named relative to their common directory (again no absolute path). For an upstream run on the
  fly: the corpus and checkpoint fingerprints with the upstream's identity (a baseline's name and
  feature config, s3prl.dump.upstream_identity), since the features are computed from them
  inside the run.
- ``checkpoint``: the sha256 of the upstream checkpoint's tensors (every tensor's key, dtype,
  shape and bytes, in key order; optimizer and scheduler state left out), read with
  `s3prl.checkpoints.load_checkpoint` (weights_only) from the file the dump recorded in
  ``upstream.json`` or the one run on the fly; ``-`` for baselines (fbank), ``?`` when the
  recorded file is gone or is no longer the file the dump read (another sha256). Not the file's
  bytes: ``torch.save`` names the zip archive's folder after the file it writes, and our atomic
  writes (s3prl.atomic.atomic_path) write a temporary name holding the writer's process id, so
  two saves of the same tensors differ in their bytes.

Reading two rows (`compare`): same corpus and features but different results -> the probe's own
training (seed, nondeterministic kernels); same corpus, different checkpoint -> the upstream's
pre-training differed (nondeterminism or a changed recipe); same checkpoint, different features ->
the dump differed (chunk context, dtype, code); different corpus -> the data differed, nothing
else can be concluded.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from s3prl.atomic import file_sha256
from s3prl.data.kaldi_dir import files_identity, read_kv

LENGTH = 10           # hex digits kept in results.json
SHORT = 4             # hex digits shown in the RESULTS.md tables
KINDS = (("corpus", "c"), ("features", "f"), ("checkpoint", "k"))
CORPUS_TABLES = ("text", "utt2spk", "segments")
NONE = "-"


@dataclass
class Sources:
    """What a run read. dirs: {role: data dir} (the dir of each split the run reads: a dump layer
    dir, a Kaldi feature dir or a wav data dir); on_the_fly: the features are computed inside the
    run from the dirs by `upstream`; upstream: checkpoint path, exp dir or baseline name; labels:
    a label dir whose files are part of the corpus (CPC labels, MOSEI labels)."""
    dirs: dict[str, str]
    on_the_fly: bool = False
    upstream: str | None = None
    labels: str | None = None


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()[:LENGTH]


class _AudioHashes:
    """sha256 of audio files, each file read once (keyed by its real path)."""

    def __init__(self):
        self.cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        real = os.path.realpath(path)
        if real not in self.cache:
            self.cache[real] = file_sha256(real)
        return self.cache[real]


def _wav_scp_identity(path: Path, audio: _AudioHashes) -> dict:
    """{recording: value} of wav.scp with every token that is an existing file (the audio, or a
    file inside a pipe command) replaced by ``sha256:<hex>``."""
    out = {}
    for key, value in read_kv(path).items():
        if os.path.isfile(value):   # a plain path (spaces and all)
            out[key] = f"sha256:{audio(value)}"
            continue
        tokens = []
        for tok in value.split():
            tokens.append(f"sha256:{audio(tok)}" if os.path.isabs(tok) and os.path.isfile(tok) else tok)
        out[key] = " ".join(tokens)
    return out


def corpus_identity(data_dir: str | Path, audio: _AudioHashes) -> dict:
    """The corpus part of one data dir: its utterance tables' sha256 and wav.scp's audio hashes."""
    d = Path(data_dir)
    out: dict = {"tables": files_identity(d, CORPUS_TABLES)}
    if (d / "wav.scp").is_file():
        out["wav.scp"] = _wav_scp_identity(d / "wav.scp", audio)
    return out


def _label_identity(label_dir: str | Path) -> dict:
    d = Path(label_dir)
    if not d.is_dir():
        return {}
    return {p.name: file_sha256(p) for p in sorted(d.iterdir()) if p.is_file() and not p.name.startswith(".")}


def feats_identity(data_dir: str | Path) -> dict | None:
    """The features part of one dir: feats.scp as (utt, ark relative to the arks' common dir,
    offset) and every ark's sha256; None without feats.scp."""
    scp = Path(data_dir) / "feats.scp"
    if not scp.is_file():
        return None
    entries = {}
    for utt, value in read_kv(scp).items():
        ark, _, offset = value.strip().rpartition(":")
        entries[utt] = (ark or offset, offset if ark else "")
    arks = sorted({a for a, _ in entries.values()})
    base = os.path.commonpath([os.path.dirname(os.path.abspath(a)) for a in arks]) if arks else ""

    def rel(a: str) -> str:
        return os.path.relpath(os.path.abspath(a), base) if base else a

    return {"scp": {u: [rel(a), o] for u, (a, o) in entries.items()},
            "arks": {rel(a): (file_sha256(a) if os.path.isfile(a) else None) for a in arks}}


UNKNOWN = "?"
_SKIP_SECTIONS = ("optim", "sched")   # top-level keys holding training state, not the model


def checkpoint_fingerprint(path: str | Path) -> str:
    """sha256 (10 hex) of a checkpoint's tensors: each one's dotted key, dtype, shape and bytes, in
    key order, outside the optimizer / scheduler sections."""
    import torch

    from s3prl.checkpoints import load_checkpoint

    h = hashlib.sha256()

    def walk(obj, key: str) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode("utf-8"))
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                walk(obj[k], f"{key}.{k}" if key else str(k))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{key}.{i}")

    ckpt = load_checkpoint(path, lenient=True)
    walk({k: v for k, v in ckpt.items() if not any(s in str(k).lower() for s in _SKIP_SECTIONS)}, "")
    return h.hexdigest()[:LENGTH]


def _checkpoint(src: Sources) -> str:
    """The upstream checkpoint's fingerprint, "-" for a baseline, "?" for a recorded file that is gone."""
    from s3prl.dump import read_dump_info
    from s3prl.upstream.checkpoint import resolve_checkpoint
    from s3prl.upstream.hub import BASELINES

    if not src.on_the_fly:
        for d in src.dirs.values():
            info = read_dump_info(d) or {}
            if info.get("sha256"):   # the recorded file, if it is still the one the dump read
                path = info.get("path")
                if path and Path(path).is_file() and file_sha256(path) == info["sha256"]:
                    return checkpoint_fingerprint(path)
                return UNKNOWN
        return NONE
    if not src.upstream or src.upstream in BASELINES:
        return NONE
    path = resolve_checkpoint(src.upstream)
    return checkpoint_fingerprint(path) if path.is_file() else UNKNOWN


def _upstream_identity(upstream: str | None) -> dict:
    """s3prl.dump.upstream_identity without the fields that depend on where the file lies."""
    from s3prl.dump import upstream_identity
    from s3prl.errors import UserError

    if not upstream:
        return {}
    try:
        ident = upstream_identity(upstream)
    except UserError:
        return {"name": upstream}
    return {k: v for k, v in ident.items() if k not in ("path", "size", "mtime", "sha256")}


def fingerprints(src: Sources) -> dict[str, str]:
    """{"corpus", "features", "checkpoint"} of a run's `src` (see the module docstring)."""
    audio = _AudioHashes()
    corpus = {role: corpus_identity(d, audio) for role, d in sorted(src.dirs.items())}
    if src.labels:
        corpus["labels"] = _label_identity(src.labels)
    corpus_fp = _digest(corpus)
    checkpoint = _checkpoint(src)
    if src.on_the_fly:
        feats = {"corpus": corpus_fp, "checkpoint": checkpoint, "upstream": _upstream_identity(src.upstream),
                 "feats.scp": {role: feats_identity(d) for role, d in sorted(src.dirs.items())
                               if not (Path(d) / "wav.scp").is_file()}}
    else:
        feats = {role: feats_identity(d) for role, d in sorted(src.dirs.items())}
    return {"corpus": corpus_fp, "features": _digest(feats), "checkpoint": checkpoint}


def short(fps: dict | None) -> str:
    """The table cell of a record's fingerprints: ``c:ab12 f:cd34 k:ef56`` (``-`` when none)."""
    if not isinstance(fps, dict) or not fps:
        return NONE
    return " ".join(f"{tag}:{str(fps.get(kind) or NONE)[:SHORT]}" for kind, tag in KINDS)


def compare(a: dict | None, b: dict | None) -> str:
    """What differs between two runs' fingerprints, and what that tells (module docstring)."""
    if not a or not b:
        return "cannot tell: a run has no fingerprints (results.json written before they were recorded)"
    same = {kind: a.get(kind) == b.get(kind) for kind, _ in KINDS}
    if not same["corpus"]:
        return "different corpus: the data differ (audio, transcripts, speakers or labels); compare nothing else"
    if UNKNOWN in (a.get("checkpoint"), b.get("checkpoint")):
        return "same corpus; cannot tell about the checkpoint (a run's upstream checkpoint file is gone)"
    if not same["checkpoint"]:
        return ("same corpus, different checkpoint: the upstream's pre-training differed (training "
                "nondeterminism or another pre-training recipe)")
    if not same["features"]:
        return ("same corpus and checkpoint, different features: the dump differed (feature config, chunk "
                "context, dtype or extraction code)")
    return ("same corpus, features and checkpoint: a difference in results comes from the probe's own "
            "training (its seed or nondeterministic kernels)")


__all__ = ["Sources", "fingerprints", "corpus_identity", "feats_identity", "checkpoint_fingerprint", "short", "compare",
           "KINDS"]
