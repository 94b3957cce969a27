"""Dumped upstream representations: the one owner of the dump layout, its identity records, the
extraction job, the completeness check and the merge (``python -m s3prl.bin.extract`` and
``utils/dump_feats.sh`` are its command line; s3prl.downstream reads dumps through
`read_dump_info`).

Layout of a dump dir ``dump/<name>/`` (one upstream per dump dir; docs/formats.md):

- ``upstream.json``: the upstream's identity (`upstream_identity`): a checkpoint's absolute path,
  size, mtime and sha256 (the sha256 decides), or a baseline's name and feature config; plus the
  chunk context when not 0. A dump of another upstream into the same dir is refused.
- ``ark/<set>/raw.<job>.layer-<k>.{ark,scp}``, ``raw.<job>.layer-<k>.cmvn.{ark,scp}``,
  ``raw.<job>.utt2num_frames``: the outputs of extraction job <job> (`extract`, `job_prefix`);
  ``ark/<set>/cmvn.layer-<k>.{ark,scp}``: the merged per-speaker CMVN stats.
- ``layer-<k>/<set>/``: a Kaldi data dir per dumped hidden state k (0 = the input block):
  feats.scp (C order, absolute ark paths), cmvn.scp, utt2num_frames, feats_dim, frame_shift,
  upstream.json (identity + "layer" + "inputs") and copies of the data dir's COPY_FILES. Built
  under a temporary name, validated, renamed: complete or absent (`merge`).
- ``complete/<set>.json``: the set's completion record, written last by `merge` (identity, the
  sha256 of every data-dir file read, the model's number of hidden states, the layers present).
  Without it a set's layer dirs are not a dump (`check_dump_complete`): a dump killed between
  layers leaves complete-looking layer dirs behind.
- ``last -> layer-<k>``: a relative symlink to the layer dir of the checkpoint's last hidden
  state (k = number of hidden states - 1, never the highest layer dir that happens to exist),
  written atomically by `merge` once that layer is dumped (and by `check` for a complete dump
  made before the link existed), as Kaldi recipes link
  ``final.mdl -> <iter>.mdl``. ``dump/<name>/last/<set>`` is then the data dir of the last
  layer, checked for completeness like ``layer-<k>/<set>`` when read.

Extraction: utterances are read in length-sorted batches (longest first, so a batch pads little
and the first batch shows the peak memory), pushed through the upstream (s3prl.upstream.hub) and
written at once, so a split is never held in memory. Output frames: exactly one vector per input
feature frame, so utt2num_frames equals the fbank frame count ``1 + (N - 400) // 160`` of 16 kHz
audio. Upstreams trained on external features read the data dir's feats.scp (mean-normalised with
its cmvn.scp when present, as Kaldi's ``apply-cmvn --utt2spk``) instead of audio. Chunk context
(transformer upstreams; 0 = S3PRL's non-overlapping chunks): inputs longer than the model's
``sequence_length`` are encoded in overlapping windows, every frame seeing N frames of context on
each side (s3prl.upstream.transformer.TransformerModel._encode_windows); a dump dir holds one
setting, like one upstream.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from s3prl.atomic import atomic_dir, atomic_write_text, file_sha256, remove_stale_tmp
from s3prl.data.kaldi_dir import ark_stats, files_identity
from s3prl.errors import UserError

log = logging.getLogger("s3prl.extract")

# Data-dir files copied into every dumped layer dir when present (utterance/speaker keyed).
# stm/glm: the TIMIT scorer's reference; PyTorch-Kaldi scores against the dumped dir.
COPY_FILES = ("utt2spk", "spk2utt", "text", "wav.scp", "segments", "reco2file_and_channel", "utt2dur",
              "spk2gender", "utt2lang", "stm", "glm")
INFO = "upstream.json"


# -------------------------------------------------------------------------------- dump layout
LAST = "last"
_LAYER_RE = re.compile(r"layer-(\d+)")


def layer_dir(dump: Path, k: int, set_name: str) -> Path:
    """``<dump>/layer-<k>/<set>``: the Kaldi data dir of hidden state k of one set."""
    return Path(dump) / f"layer-{k}" / set_name


def layer_of(path: Path) -> int | None:
    """k of a ``layer-<k>`` dir name, None for any other name."""
    m = _LAYER_RE.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def job_prefix(dump: Path, set_name: str, job: int | str) -> Path:
    """``<dump>/ark/<set>/raw.<job>``: the prefix of extraction job <job>'s outputs."""
    return Path(dump) / "ark" / set_name / f"raw.{job}"


def complete_record(dump: Path, set_name: str) -> Path:
    """The completion record of one set's dump (written last by `merge`)."""
    return Path(dump) / "complete" / f"{set_name}.json"


def last_link(dump: Path) -> Path:
    """``<dump>/last``: the symlink to the layer dir of the checkpoint's last hidden state."""
    return Path(dump) / LAST


def write_last_link(dump: Path, k: int) -> Path:
    """Point ``<dump>/last`` at ``layer-<k>`` (relative symlink), atomically: a symlink made under
    a temporary name is renamed over the old one, so a reader sees the old target or the new one.
    Something else called ``last`` (a directory, a file) is an error, left as it is."""
    link = last_link(dump)
    if os.path.lexists(link) and not link.is_symlink():
        raise UserError(f"{link}: exists and is not a symlink; remove it (merge points {LAST} at layer-{k})")
    tmp = link.with_name(f".{LAST}.tmp.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(f"layer-{k}", tmp)
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return link


# ------------------------------------------------------------------------ small helpers
def resolve_layers(spec: str, num_states: int) -> list[int]:
    """'all' | 'last' | 'N' | 'N,M,...' -> sorted unique indices in [0, num_states)."""
    from s3prl.upstream.featurizer import resolve_layer

    spec = str(spec).strip()
    if spec == "all":
        return list(range(num_states))
    parts = [p for p in spec.split(",") if p.strip()]
    if not parts:
        raise UserError(f"--layer: empty layer list '{spec}'")
    return sorted({resolve_layer(p.strip(), num_states, "--layer") for p in parts})


def upstream_identity(name: str, chunk_context: int = 0, dtype: str = "float32") -> dict:
    """What a dump records about its upstream: a baseline's name and feature config, or a
    checkpoint's absolute path, size, mtime and sha256 (the sha256 decides identity), the chunk
    context when not 0 and the compute dtype when not float32 (a bf16 dump is another dump). An
    experiment directory stands for its newest checkpoint."""
    if chunk_context < 0:
        raise UserError(f"--chunk-context: must be >= 0, got {chunk_context}")
    ident = _upstream_identity(name)
    if chunk_context:
        ident["chunk_context"] = int(chunk_context)
    if dtype != "float32" and "sha256" in ident:   # baselines have no model to run in bf16
        ident["dtype"] = dtype
    return ident


def _upstream_identity(name: str) -> dict:
    from s3prl.upstream.checkpoint import resolve_checkpoint
    from s3prl.upstream.hub import BASELINES

    p = resolve_checkpoint(name) if name not in BASELINES else Path(name)
    if not p.is_file():
        from s3prl.features.config import FeatureConfig

        if name in BASELINES:
            return {"name": name, "features": FeatureConfig(feat_type=name).to_s3prl_audio()}
        raise UserError(f"upstream '{name}': no such checkpoint file (or use a baseline: {', '.join(BASELINES)})")
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": int(st.st_mtime), "sha256": file_sha256(p)}


def _same_upstream(a: dict, b: dict) -> bool:
    if int(a.get("chunk_context", 0)) != int(b.get("chunk_context", 0)):
        return False
    if a.get("dtype", "float32") != b.get("dtype", "float32"):
        return False
    if "sha256" in a or "sha256" in b:
        return a.get("sha256") == b.get("sha256")
    return a.get("name") == b.get("name") and a.get("features") == b.get("features")


def _describe(ident: dict) -> str:
    ctx = f" with chunk context {ident['chunk_context']}" if ident.get("chunk_context") else ""
    ctx += f" in {ident['dtype']}" if ident.get("dtype", "float32") != "float32" else ""
    if "sha256" in ident:
        return f"{ident.get('path')} (sha256 {str(ident['sha256'])[:12]}){ctx}"
    return f"baseline '{ident.get('name')}'{ctx}"


def _read_info(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable upstream record ({e})") from None


def check_identity(path: Path, ident: dict) -> bool:
    """True if `path` (an upstream.json) records `ident`; False if absent; UserError if another."""
    rec = _read_info(path)
    if rec is None:
        return False
    if not _same_upstream(rec, ident):
        raise UserError(f"{path.parent}: made from upstream {_describe(rec)}, not {_describe(ident)}; "
                        f"use another dump dir or remove it")
    return True


def _c_sorted(keys) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


# ------------------------------------------------------------------------- reading a data dir
@dataclass
class _Utt:
    utt: str
    spk: str
    length: int  # samples or frames; only the order matters


def _data_utts(data: Path, external: bool) -> tuple[list[_Utt], dict]:
    """Utterances of a data dir with an approximate length each, and the tables needed to read them."""
    from s3prl.data.kaldi_dir import read_kv

    if not data.is_dir():
        raise UserError(f"{data}: no such data directory")
    if not (data / "utt2spk").is_file():
        raise UserError(f"{data}/utt2spk: missing (not a Kaldi data dir)")
    utt2spk = read_kv(data / "utt2spk")
    if not utt2spk:
        raise UserError(f"{data}/utt2spk: empty data directory")
    tables: dict = {"utt2spk": utt2spk}
    lengths = _external_tables(data, utt2spk, tables) if external else _audio_tables(data, tables)
    utts = [_Utt(u, s, int(1000 * lengths.get(u, 0.0))) for u, s in utt2spk.items()]
    # Longest first; ties in C order so the job is deterministic.
    utts.sort(key=lambda x: (-x.length, x.utt.encode()))
    return utts, tables


def _external_tables(data: Path, utt2spk: dict, tables: dict) -> dict[str, float]:
    """Add feats (and cmvn) of an external-feature data dir to `tables`; -> utt lengths (frames)."""
    from s3prl.data.kaldi_dir import read_kv

    if not (data / "feats.scp").is_file():
        raise UserError(f"{data}/feats.scp: missing; this upstream takes external features (e.g. fMLLR)")
    feats = read_kv(data / "feats.scp")
    missing = [u for u in utt2spk if u not in feats]
    if missing:
        raise UserError(f"{data}/feats.scp: no entry for utterance {missing[0]}")
    tables["feats"] = feats
    if (data / "cmvn.scp").is_file():
        tables["cmvn"] = read_kv(data / "cmvn.scp")
    if (data / "utt2num_frames").is_file():
        return {u: float(v) for u, v in read_kv(data / "utt2num_frames").items()}
    return {}


def _audio_tables(data: Path, tables: dict) -> dict[str, float]:
    """Add wav (and segments) of an audio data dir to `tables`; -> utt lengths (seconds) from
    segments, utt2dur or the audio headers (unknown lengths sort last)."""
    from s3prl.data.kaldi_dir import read_kv

    if not (data / "wav.scp").is_file():
        raise UserError(f"{data}/wav.scp: missing")
    tables["wav"] = read_kv(data / "wav.scp")
    lengths: dict[str, float] = {}
    if (data / "segments").is_file():
        segs = {}
        for u, v in read_kv(data / "segments").items():
            f = v.split()
            if len(f) != 3:
                raise UserError(f"{data}/segments: utterance {u}: expected '<utt> <reco> <start> <end>'")
            try:
                segs[u] = (f[0], float(f[1]), float(f[2]))
            except ValueError:
                raise UserError(f"{data}/segments: utterance {u}: bad start/end '{f[1]} {f[2]}'") from None
        tables["segments"] = segs
        lengths = {u: (e - s if e >= 0 else 1e9) for u, (_, s, e) in segs.items()}
    elif (data / "utt2dur").is_file():
        try:
            lengths = {u: float(v) for u, v in read_kv(data / "utt2dur").items()}
        except ValueError:
            lengths = {}
    else:
        import soundfile as sf

        for u, entry in tables["wav"].items():
            if not entry.rstrip().endswith("|"):
                try:
                    lengths[u] = sf.info(entry.strip()).duration
                except Exception:
                    pass  # unreadable files are reported, with their utterance, when read
    return lengths


class _Reader:
    """Reads one utterance's upstream input: audio (N,) or external features (T, D)."""

    def __init__(self, data: Path, tables: dict, external: bool, apply_cmvn: bool):
        self.data, self.tables, self.external = data, tables, external
        self.apply_cmvn = apply_cmvn and "cmvn" in tables
        self._stats: dict[str, np.ndarray] = {}

    def audio(self, utt: str) -> np.ndarray:
        from s3prl.data.audio import load_audio

        seg = self.tables.get("segments", {}).get(utt)
        if seg is not None:
            reco, s, e = seg
            if reco not in self.tables["wav"]:
                raise UserError(f"{self.data}/segments: recording '{reco}' of utterance {utt} is not in wav.scp")
            return load_audio(self.tables["wav"][reco], utt_id=utt, segment=(s, e))
        if utt not in self.tables["wav"]:
            raise UserError(f"{self.data}/wav.scp: no entry for utterance {utt}")
        return load_audio(self.tables["wav"][utt], utt_id=utt)

    def features(self, utt: str) -> torch.Tensor:
        from s3prl.data.ark import read_scp_matrix, read_scp_stats
        from s3prl.features.cmvn import apply_cmvn

        mat = read_scp_matrix(self.tables["feats"][utt], key=utt)
        if self.apply_cmvn:
            spk = self.tables["utt2spk"][utt]
            if spk not in self._stats:
                if spk not in self.tables["cmvn"]:
                    raise UserError(f"{self.data}/cmvn.scp: no stats for speaker {spk} (utterance {utt})")
                self._stats[spk] = read_scp_stats(self.tables["cmvn"][spk], key=spk)
            stats = self._stats[spk]
            if stats.shape[1] != mat.shape[1] + 1:
                raise UserError(f"{self.data}/cmvn.scp: speaker {spk} has {stats.shape[1] - 1}-dim stats "
                                f"but utterance {utt} has {mat.shape[1]}-dim features")
            mat = np.asarray(apply_cmvn(mat, stats), dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(mat, dtype=np.float32))


def _batches(utts: Sequence[_Utt], batch_size: int) -> Iterator[list[_Utt]]:
    for i in range(0, len(utts), batch_size):
        yield list(utts[i:i + batch_size])


# ------------------------------------------------------------------------------ extract mode
def extract(upstream_name: str, data: str | Path, out_prefix: str | Path, *, layers: str = "all",
            batch_size: int = 8, device: str = "cpu", compress: bool = False, apply_cmvn: bool = True,
            upstream=None, chunk_context: int = 0, dtype: str = "float32") -> list[int]:
    """Run one extraction job (see the module docstring); returns the layer indices written."""
    from s3prl.data.ark import ArkWriter, write_cmvn_ark
    from s3prl.features.cmvn import accumulate, init_stats
    from s3prl.upstream.hub import apply_chunk_context, load_upstream, pad_features

    data, out_prefix = Path(data), Path(out_prefix)
    if batch_size < 1:
        raise UserError(f"--batch-size: must be >= 1, got {batch_size}")
    up = upstream if upstream is not None else load_upstream(upstream_name, device=device)
    apply_chunk_context(up, chunk_context, "--chunk-context")
    if up.model is not None:
        up.dtype = dtype
    idx = resolve_layers(layers, up.num_hidden_states)
    utts, tables = _data_utts(data, up.external_features)
    reader = _Reader(data, tables, up.external_features, apply_cmvn)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_prefix.parent)  # left by a killed run (its pid is gone)
    base = str(out_prefix)
    unsorted = {k: Path(f"{base}.layer-{k}.scp.unsorted") for k in idx}
    stats: dict[int, dict[str, np.ndarray]] = {k: {} for k in idx}
    frames: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        writers = {k: stack.enter_context(ArkWriter(f"{base}.layer-{k}.ark", unsorted[k],
                                                    compression=2 if compress else None)) for k in idx}
        for batch in _batches(utts, batch_size):
            ids = [u.utt for u in batch]
            if up.external_features:
                feats, flen = pad_features([reader.features(u) for u in ids])
                out = up.forward_features(feats, flen, utt_ids=ids)
            else:
                out = up([torch.from_numpy(reader.audio(u)) for u in ids], utt_ids=ids)
            for b, u in enumerate(batch):
                n = int(out.lengths[b])
                frames[u.utt] = n
                for k in idx:
                    mat = out.hidden_states[k][b, :n].detach().cpu().numpy()
                    writers[k].write(u.utt, mat)
                    st = stats[k].get(u.spk)
                    if st is None:
                        st = stats[k][u.spk] = init_stats(mat.shape[1])
                    accumulate(st, mat)
            log.info("%s: %d/%d utterances", data, len(frames), len(utts))
    # The scp in C order (Kaldi tables are sorted); the ark keeps the length-sorted order.
    for k in idx:
        lines = unsorted[k].read_text(encoding="utf-8").splitlines(keepends=True)
        atomic_write_text(f"{base}.layer-{k}.scp", "".join(sorted(lines, key=lambda s: s.split(" ", 1)[0].encode())))
        unsorted[k].unlink()
        write_cmvn_ark(f"{base}.layer-{k}.cmvn.ark", f"{base}.layer-{k}.cmvn.scp", stats[k])
    atomic_write_text(f"{base}.utt2num_frames", "".join(f"{u} {frames[u]}\n" for u in _c_sorted(frames)))
    log.info("wrote %d utterances x %d layers to %s.layer-*.ark", len(frames), len(idx), base)
    return idx


def inputs_identity(data: Path, external: bool) -> dict:
    """The identity of what a dump read from a data dir: the sha256 of every file it reads or
    copies (COPY_FILES; with external features also feats.scp, cmvn.scp, utt2num_frames) and, for
    external features, the size and mtime of every ark they point into. A dump whose record holds
    other values was made from older inputs and is redone."""
    names = list(COPY_FILES) + (["feats.scp", "cmvn.scp", "utt2num_frames"] if external else [])
    return files_identity(data, names, ("feats.scp", "cmvn.scp") if external else ())


def _layer_complete(d: Path, ident: dict, inputs: dict | None = None) -> bool:
    """A layer dir is complete when it exists with feats.scp and records this upstream (it is
    only ever renamed into place after validation) and, when `inputs` is given, these inputs;
    another upstream's record is an error."""
    if not (d / "feats.scp").is_file():
        return False
    if not check_identity(d / INFO, ident):
        return False
    return inputs is None or (_read_info(d / INFO) or {}).get("inputs") == inputs


def _read_record(dump: Path, set_name: str) -> dict | None:
    rec = _read_info(complete_record(dump, set_name))
    return rec if isinstance(rec, dict) else None


def check(upstream_name: str, data: str | Path, dump: str | Path, layers: str = "all",
          chunk_context: int = 0, dtype: str = "float32") -> bool:
    """True if every requested layer of `data` is already dumped under `dump` by this upstream
    from the data dir's current inputs, as the set's completion record says. A complete dump made
    before `merge` wrote ``<dump>/last`` gets the link here (the one thing a skipped merge adds)."""
    from s3prl.upstream.hub import load_upstream

    data, dump = Path(data), Path(dump)
    ident = upstream_identity(upstream_name, chunk_context, dtype)
    check_identity(dump / INFO, ident)
    up = load_upstream(upstream_name)
    idx = resolve_layers(layers, up.num_hidden_states)
    rec = _read_record(dump, data.name)
    if rec is None or not _same_upstream(rec, ident):
        return False
    if rec.get("inputs") != inputs_identity(data, up.external_features):
        return False
    if not set(idx) <= set(rec.get("layers") or []):
        return False
    if not all(_layer_complete(layer_dir(dump, k, data.name), ident) for k in idx):
        return False
    last = up.num_hidden_states - 1
    if last in (rec.get("layers") or []) and not os.path.lexists(last_link(dump)):
        write_last_link(dump, last)
    return True


def dump_layer_dirs(upstream_name: str, dump: str | Path, sets: Sequence[str], layers: str = "last",
                    chunk_context: int | None = None, dtype: str | None = None) -> list[Path]:
    """The layer dirs ``<dump>/layer-<k>`` that `layers` names, every requested layer complete for
    every set (see the module docstring, ``--mode layers``). `layers` is resolved against the
    upstream's own number of hidden states; `chunk_context` / `dtype` None accept the dump's setting."""
    from s3prl.upstream.hub import load_upstream

    dump = Path(dump)
    up = load_upstream(upstream_name)
    idx = resolve_layers(layers, up.num_hidden_states)
    for set_name in sets:
        rec = _read_record(dump, set_name)
        if rec is None:
            raise UserError(f"{dump}: the dump of '{set_name}' is incomplete or absent (no "
                            f"{complete_record(dump, set_name).relative_to(dump)}); run utils/dump_feats.sh for it")
        ctx = int(rec.get("chunk_context", 0)) if chunk_context is None else chunk_context
        ident = upstream_identity(upstream_name, ctx, rec.get("dtype", "float32") if dtype is None else dtype)
        if not _same_upstream(rec, ident):
            raise UserError(f"{complete_record(dump, set_name)}: made from upstream {_describe(rec)}, "
                            f"not {_describe(ident)}; dump it again")
        missing = [k for k in idx if k not in (rec.get("layers") or [])
                   or not (layer_dir(dump, k, set_name) / "feats.scp").is_file()]
        if missing:
            raise UserError(f"{dump}: layer {missing[0]} of '{set_name}' was not dumped (dumped: "
                            f"{', '.join(map(str, rec.get('layers') or [])) or 'none'}); dump it with --layer {layers}")
    return [dump / f"layer-{k}" for k in idx]


def merge(upstream_name: str, data: str | Path, dump: str | Path, nj: int, layers: str = "all",
          chunk_context: int = 0, dtype: str = "float32") -> list[Path]:
    """Build ``<dump>/layer-<k>/<set>/`` from the nj job outputs, then the set's completion
    record and, once the last hidden state is dumped, ``<dump>/last``; returns the layer dirs made."""
    from s3prl.data.kaldi_dir import read_kv
    from s3prl.upstream.hub import load_upstream

    data, dump = Path(data).resolve(), Path(dump).resolve()
    if nj < 1:
        raise UserError(f"--nj: must be >= 1, got {nj}")
    ident = upstream_identity(upstream_name, chunk_context, dtype)
    check_identity(dump / INFO, ident)
    up = load_upstream(upstream_name)
    idx = resolve_layers(layers, up.num_hidden_states)
    set_name = data.name
    utt2spk = read_kv(data / "utt2spk")
    prefixes = [job_prefix(dump, set_name, j) for j in range(1, nj + 1)]
    n_frames = _job_frames(prefixes, data, dump, utt2spk)
    if not (dump / INFO).is_file():
        atomic_write_text(dump / INFO, json.dumps(ident, indent=1, sort_keys=True) + "\n")
    inputs = inputs_identity(data, up.external_features)
    record = complete_record(dump, set_name)
    record.unlink(missing_ok=True)  # describes a dump being remade
    made = []
    for k in idx:
        final = layer_dir(dump, k, set_name)
        if _layer_complete(final, ident, inputs):
            log.info("%s: complete, kept", final)
            continue
        _write_layer_dir(final, k, prefixes, data, utt2spk, n_frames, {**ident, "layer": k, "inputs": inputs}, up)
        made.append(final)
    # Last: the record that makes the set's dump complete, listing every layer dir of these inputs.
    present = [k for k in range(up.num_hidden_states) if _layer_complete(layer_dir(dump, k, set_name), ident, inputs)]
    atomic_write_text(record, json.dumps({**ident, "set": set_name, "inputs": inputs, "layers": present,
                                          "num_hidden_states": up.num_hidden_states}, indent=1, sort_keys=True) + "\n")
    if up.num_hidden_states - 1 in present:
        write_last_link(dump, up.num_hidden_states - 1)
    return made


def _job_frames(prefixes: list[Path], data: Path, dump: Path, utt2spk: dict) -> dict[str, str]:
    """utt -> frame count over every job's utt2num_frames; a missing job or utterance is an error."""
    from s3prl.data.kaldi_dir import read_kv

    set_name = data.name
    for p in prefixes:
        if not Path(f"{p}.utt2num_frames").is_file():
            raise UserError(f"{p}.utt2num_frames: missing; extraction job {p.name.split('.')[-1]} did not finish "
                            f"(see {dump}/log/{set_name}/extract.*.log)")
    n_frames: dict[str, str] = {}
    for p in prefixes:
        n_frames.update(read_kv(Path(f"{p}.utt2num_frames")))
    missing = [u for u in utt2spk if u not in n_frames]
    if missing:
        raise UserError(f"{data}: utterance {missing[0]} was not extracted by any of the {len(prefixes)} jobs")
    return n_frames


def _write_layer_dir(final: Path, k: int, prefixes: list[Path], data: Path, utt2spk: dict, n_frames: dict,
                     info: dict, up) -> None:
    """Gather layer k of the jobs into the data dir `final` (built under a temporary name,
    validated, renamed) and its merged CMVN ark; `info` is its upstream.json."""
    from s3prl.data.ark import read_scp_stats, write_cmvn_ark
    from s3prl.data.kaldi_dir import read_kv, validate_data_dir

    entries: dict[str, str] = {}
    stats: dict[str, np.ndarray] = {}
    for p in prefixes:
        scp = Path(f"{p}.layer-{k}.scp")
        if not scp.is_file():
            raise UserError(f"{scp}: missing; extraction job did not write layer {k}")
        entries.update(read_kv(scp))
        for spk, entry in read_kv(Path(f"{p}.layer-{k}.cmvn.scp")).items():
            s = read_scp_stats(entry, key=spk)
            stats[spk] = stats[spk] + s if spk in stats else s
    ark_dir = prefixes[0].parent   # <dump>/ark/<set>
    cmvn_ark, cmvn_scp = ark_dir / f"cmvn.layer-{k}.ark", ark_dir / f"cmvn.layer-{k}.scp"
    write_cmvn_ark(cmvn_ark, cmvn_scp, stats)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final) as tmp:
        for name in COPY_FILES:
            if (data / name).is_file():
                shutil.copyfile(data / name, tmp / name)
        _write_table(tmp / "feats.scp", {u: entries[u] for u in utt2spk})
        _write_table(tmp / "utt2num_frames", {u: n_frames[u] for u in utt2spk})
        _write_table(tmp / "cmvn.scp", read_kv(cmvn_scp))
        (tmp / "feats_dim").write_text(f"{up.hidden_size}\n", encoding="utf-8")
        (tmp / "frame_shift").write_text(f"{up.hop_samples / 16000.0:g}\n", encoding="utf-8")
        (tmp / INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        validate_data_dir(tmp, no_feats=False, no_text=not (tmp / "text").is_file(),
                          no_wav=not (tmp / "wav.scp").is_file())
    log.info("%s: %d utterances, dim %d", final, len(utt2spk), up.hidden_size)


def _write_table(path: Path, table: dict) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for k in _c_sorted(table):
            f.write(f"{k} {table[k]}\n")



# ------------------------------------------------------------------- reading a dump back
# The upstream.json fields that decide what a dump holds (not where the checkpoint lies or when
# it was touched: a copied or moved checkpoint with the same sha256 made the same states).
IDENTITY_KEYS = ("sha256", "name", "features", "layer", "chunk_context", "dtype", "inputs")
# The files of a plain Kaldi feature dir (fbank, fMLLR) whose content a run's results depend on;
# conf/feats.{yaml,inputs} are utils/compute_feats.sh's record of the config and the audio inputs.
FEATURE_DIR_FILES = ("feats.scp", "cmvn.scp", "utt2spk", "text", "conf/feats.yaml", "conf/feats.inputs")


def source_identity(feats_dir: str | Path | None = None, upstream: str | None = None) -> dict | None:
    """What made a run's inputs, for the config hash that decides skip-if-complete: a dump dir's
    upstream.json (checkpoint sha256, layer, chunk context, sha256 of the data-dir files dumped),
    for a plain Kaldi feature dir the sha256 of its tables and of compute_feats.sh's record (or,
    without that record, the size and mtime of every ark), or for an upstream run on the fly its
    checkpoint's sha256 (an experiment dir stands for its newest checkpoint). A re-trained
    upstream, a re-made dump or features recomputed from edited inputs then no longer match a
    finished run's hash, so the run is not skipped with stale results. None for baselines' names."""
    if feats_dir is not None:
        info = read_dump_info(feats_dir)
        if info:
            return {k: info[k] for k in IDENTITY_KEYS if k in info}
        return feature_dir_identity(feats_dir)
    if upstream:
        try:
            ident = upstream_identity(upstream)
        except UserError:
            return None   # not a checkpoint: the loader names the problem when the run starts
        return {"sha256": ident["sha256"]} if "sha256" in ident else None
    return None


def feature_dir_identity(feats_dir: str | Path) -> dict | None:
    """The identity of a plain Kaldi feature dir (see `source_identity`); None without feats.scp."""
    d = Path(feats_dir)
    if not (d / "feats.scp").is_file():
        return None
    out: dict = {"files": {n: file_sha256(d / n) for n in FEATURE_DIR_FILES if (d / n).is_file()}}
    if not (d / "conf" / "feats.inputs").is_file():
        arks = set()
        for table in ("feats.scp", "cmvn.scp"):
            if (d / table).is_file():
                for line in (d / table).read_text(encoding="utf-8").splitlines():
                    parts = line.split(None, 1)
                    if len(parts) == 2:
                        arks.add(parts[1].strip().rsplit(":", 1)[0])
        out["arks"] = ark_stats(arks)
    return out


def read_dump_info(feats_dir: str | Path) -> dict | None:
    """What a dump dir records about how it was made, or None (plain Kaldi feature dirs).

    `merge` (``utils/dump_feats.sh``) writes ``upstream.json`` into every layer dir:
    ``{"path", "size", "mtime", "sha256", "layer"}`` for a checkpoint or ``{"name", "features",
    "layer"}`` for a baseline. Returned with "upstream" set to the path or name.
    """
    p = Path(feats_dir) / INFO
    if not p.is_file():
        return None
    info = _read_json(p)
    check_dump_complete(feats_dir, info)
    up = info.get("upstream", info.get("path", info.get("name")))
    return {**info, "upstream": str(up)} if up is not None else dict(info)


def _read_json(p: Path) -> dict:
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{p}: malformed JSON: {e}") from None
    if not isinstance(info, dict):
        raise UserError(f"{p}: expected a JSON object")
    return info


def check_dump_complete(feats_dir: str | Path, info: dict) -> None:
    """Refuse a layer dir ``<dump>/layer-<k>/<set>`` (or ``<dump>/last/<set>``) of a dump that
    `merge` has not finished: the set's completion record ``<dump>/complete/<set>.json`` (written
    last) must exist, list layer k and name the same upstream. A dump killed between layers leaves
    complete-looking layer dirs behind; reading one would evaluate the wrong layer or a set dumped
    from older inputs. Feature dirs outside that layout are not dumps: no check."""
    d = Path(feats_dir)
    layer = d.parent.resolve() if d.parent.is_symlink() else d.parent   # last -> layer-<k>
    k = layer_of(layer)
    dump = layer.parent
    if k is None or not (dump / INFO).is_file():
        return
    rec_path = complete_record(dump, d.name)
    if not rec_path.is_file():
        raise UserError(f"{d}: part of an incomplete dump (no {rec_path}: utils/dump_feats.sh did not finish "
                        f"'{d.name}'); run it again")
    rec = _read_json(rec_path)
    if k not in (rec.get("layers") or []):
        raise UserError(f"{d}: layer {k} is not part of the complete dump {rec_path} "
                        f"(layers {rec.get('layers')}); run utils/dump_feats.sh again")
    if any(rec.get(key) != info.get(key) for key in ("sha256", "name", "chunk_context", "dtype", "inputs")):
        raise UserError(f"{d}: made by another dump than the one {rec_path} records complete "
                        f"(upstream or inputs differ); run utils/dump_feats.sh again")


def same_upstream(named: str, info: dict) -> bool:
    """Whether an upstream named on the command line is the one a dump recorded (`info` from
    `read_dump_info`).

    A named checkpoint file must have the recorded sha256 (or resolve to the recorded path when
    none is recorded). A name is otherwise accepted if it equals the recorded name/path, or is a
    path component (or file stem) of the recorded checkpoint path: ``tera_tiny`` and
    ``exp/tera_tiny`` match ``/abs/exp/tera_tiny/states-1000.ckpt``; ``apc_tiny`` does not.
    """
    recorded = str(info.get("upstream"))
    a, b = Path(named), Path(recorded)
    if a.is_file():
        if info.get("sha256"):
            return file_sha256(a) == info["sha256"]
        return b.exists() and a.resolve() == b.resolve()
    if named == recorded:
        return True
    if a.is_dir() and b.exists() and b.resolve().is_relative_to(a.resolve()):
        return True
    named_parts = tuple(p for p in a.parts if p not in (".", ""))
    n = len(named_parts)
    if n and any(b.parts[i:i + n] == named_parts for i in range(len(b.parts) - n + 1)):
        return True
    return a.name == b.stem
