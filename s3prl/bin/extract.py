"""Dump upstream representations of a Kaldi data dir to Kaldi ark/scp (the "extract" verb).

Three modes; `utils/dump_feats.sh` strings them together over `nj` jobs:

``--mode extract`` (default), one job on one (split) data dir::

    python -m s3prl.bin.extract --upstream CKPT_OR_NAME [--layer N|all|last|N,M] [--batch-size B]
        [--device cpu|cuda|auto] [--compress false|true] [--chunk-context N] [--dtype float32|bfloat16]
        <data-dir> <out-prefix>

  Utterances are read in length-sorted batches (longest first, so a batch pads little and the
  first batch shows the peak memory), pushed through the upstream (s3prl.upstream.hub) and written
  at once, so the split is never held in memory. For each requested layer k it writes
  ``<out-prefix>.layer-<k>.ark``/``.scp`` (binary ``FM``, or ``CM`` with ``--compress true``;
  scp sorted in C order, absolute ark paths) and the per-speaker CMVN stats
  ``<out-prefix>.layer-<k>.cmvn.ark``/``.scp`` (Kaldi's 2 x (D+1) double layout), plus
  ``<out-prefix>.utt2num_frames``. Each file is written atomically. Upstreams trained on external
  features read the data dir's feats.scp (mean-normalised with its cmvn.scp when present, as
  Kaldi's ``apply-cmvn --utt2spk``) instead of audio.

``--mode check <data-dir> <dump-dir>``: prints ``complete`` (the set's completion record exists,
  names this upstream and the data dir's current inputs, and covers every requested layer) or
  ``todo``; a dump made from another upstream is an error naming both.

``--mode merge --nj N <data-dir> <dump-dir>``: gathers the job outputs in
  ``<dump-dir>/ark/<set>/raw.{1..N}.*`` into one Kaldi data dir per layer,
  ``<dump-dir>/layer-<k>/<set>/`` (set = the data dir's base name): feats.scp (C-locale order),
  cmvn.scp (per speaker), utt2num_frames, feats_dim, frame_shift, upstream.json and copies of the
  data dir's utt2spk, spk2utt, text, wav.scp, segments, utt2dur ... Each layer dir is built under
  a temporary name, validated, then renamed: it appears complete or not at all. Last, once every
  requested layer is in place, the set's completion record ``<dump-dir>/complete/<set>.json``
  (upstream identity, the sha256 of every data-dir file read, the model's number of hidden
  states, the layers present). A dump killed between layers has no record and is not complete,
  although some of its layer dirs are; a record whose inputs differ from the data dir's is stale.

``--mode layers --layer SPEC <dump-dir> <set>...``: prints the layer dirs
  ``<dump-dir>/layer-<k>`` that SPEC names for this upstream, one a line; ``last`` is the
  checkpoint's last hidden state (never the highest layer dir that happens to exist). An error
  names the first set whose dump is absent, incomplete, stale or lacks a requested layer, so a
  recipe stage never reads a partial dump.

``--chunk-context N`` (transformer upstreams; 0 = S3PRL's non-overlapping chunks): inputs longer
than the model's ``sequence_length`` are encoded in overlapping windows so that every frame sees N
frames of context on each side instead of sitting next to a hard cut
(s3prl.upstream.transformer.TransformerModel._encode_windows). Recorded in upstream.json: a dump
dir holds one setting, like one upstream. APC and baselines encode in one pass and ignore it.

``--dtype float32|bfloat16`` (default float32: bit-for-bit reproducible dumps in parity with
S3PRL): bfloat16 runs the model under autocast (matmuls on the CPU's AMX / AVX512-BF16 units or
on CUDA; LayerNorm and softmax statistics in float32; states written as float32). A CPU without
bf16 units runs float32 with one warning (s3prl.precision.resolve_dtype). The dtype actually used
is recorded in upstream.json, so a bfloat16 dump never passes for a float32 one.

Output frames: exactly one vector per input feature frame (see s3prl.upstream.hub), so
utt2num_frames equals the fbank frame count ``1 + (N - 400) // 160`` of 16 kHz audio.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from s3prl.atomic import atomic_dir, atomic_write_text, file_sha256, remove_stale_tmp
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("s3prl.extract")

# Data-dir files copied into every dumped layer dir when present (utterance/speaker keyed).
# stm/glm: the TIMIT scorer's reference; PyTorch-Kaldi scores against the dumped dir.
COPY_FILES = ("utt2spk", "spk2utt", "text", "wav.scp", "segments", "reco2file_and_channel", "utt2dur",
              "spk2gender", "utt2lang", "stm", "glm")
INFO = "upstream.json"


# ------------------------------------------------------------------------ small helpers
def _parse_bool(value: str, option: str) -> bool:
    v = str(value).lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise UserError(f"{option}: '{value}' is not true or false")


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
    lengths: dict[str, float] = {}
    if external:
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
            lengths = {u: float(v) for u, v in read_kv(data / "utt2num_frames").items()}
    else:
        if not (data / "wav.scp").is_file():
            raise UserError(f"{data}/wav.scp: missing")
        tables["wav"] = read_kv(data / "wav.scp")
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
    utts = [_Utt(u, s, int(1000 * lengths.get(u, 0.0))) for u, s in utt2spk.items()]
    # Longest first; ties in C order so the job is deterministic.
    utts.sort(key=lambda x: (-x.length, x.utt.encode()))
    return utts, tables


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


# -------------------------------------------------------------------------------- dump layout
def layer_dir(dump: Path, k: int, set_name: str) -> Path:
    return dump / f"layer-{k}" / set_name


def job_prefix(dump: Path, set_name: str, job: int | str) -> Path:
    return dump / "ark" / set_name / f"raw.{job}"


def complete_record(dump: Path, set_name: str) -> Path:
    """The completion record of one set's dump (written last by `merge`)."""
    return dump / "complete" / f"{set_name}.json"



def inputs_identity(data: Path, external: bool) -> dict:
    """The identity of what a dump read from a data dir: the sha256 of every file it reads or
    copies (COPY_FILES; with external features also feats.scp, cmvn.scp, utt2num_frames) and, for
    external features, the size and mtime of every ark they point into. A dump whose record holds
    other values was made from older inputs and is redone."""
    names = list(COPY_FILES) + (["feats.scp", "cmvn.scp", "utt2num_frames"] if external else [])
    return files_identity(data, names, ("feats.scp", "cmvn.scp") if external else ())


def files_identity(data: Path, names: Sequence[str], ark_tables: Sequence[str] = ()) -> dict:
    """{name: sha256} of the files `names` of `data` that exist and, when `ark_tables` (scp files)
    are given, "arks": {ark path: [size, mtime_ns] or None if missing} of every ark they point into."""
    from s3prl.data.kaldi_dir import read_kv

    data = Path(data)
    out: dict = {name: file_sha256(data / name) for name in names if (data / name).is_file()}
    if ark_tables:
        arks = sorted({v.strip().rsplit(":", 1)[0] for t in ark_tables if (data / t).is_file()
                       for v in read_kv(data / t).values()})
        out["arks"] = {}
        for a in arks:
            try:
                st = os.stat(a)
                out["arks"][a] = [st.st_size, st.st_mtime_ns]
            except OSError:
                out["arks"][a] = None
    return out


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
    from the data dir's current inputs, as the set's completion record says."""
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
    return all(_layer_complete(layer_dir(dump, k, data.name), ident) for k in idx)


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
    """Build `<dump>/layer-<k>/<set>/` from the nj job outputs; returns the layer dirs made."""
    from s3prl.data.ark import read_scp_stats, write_cmvn_ark
    from s3prl.data.kaldi_dir import read_kv, validate_data_dir
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
    frame_shift = (up.downsample_rate / 16000.0)
    made = []
    prefixes = [job_prefix(dump, set_name, j) for j in range(1, nj + 1)]
    for p in prefixes:
        if not Path(f"{p}.utt2num_frames").is_file():
            raise UserError(f"{p}.utt2num_frames: missing; extraction job {p.name.split('.')[-1]} did not finish "
                            f"(see {dump}/log/{set_name}/extract.*.log)")
    n_frames: dict[str, str] = {}
    for p in prefixes:
        n_frames.update(read_kv(Path(f"{p}.utt2num_frames")))
    missing = [u for u in utt2spk if u not in n_frames]
    if missing:
        raise UserError(f"{data}: utterance {missing[0]} was not extracted by any of the {nj} jobs")
    if not (dump / INFO).is_file():
        atomic_write_text(dump / INFO, json.dumps(ident, indent=1, sort_keys=True) + "\n")
    inputs = inputs_identity(data, up.external_features)
    record = complete_record(dump, set_name)
    record.unlink(missing_ok=True)  # describes a dump being remade
    for k in idx:
        final = layer_dir(dump, k, set_name)
        if _layer_complete(final, ident, inputs):
            log.info("%s: complete, kept", final)
            continue
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
        cmvn_ark = dump / "ark" / set_name / f"cmvn.layer-{k}.ark"
        cmvn_scp = dump / "ark" / set_name / f"cmvn.layer-{k}.scp"
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
            (tmp / "frame_shift").write_text(f"{frame_shift:g}\n", encoding="utf-8")
            (tmp / INFO).write_text(json.dumps({**ident, "layer": k, "inputs": inputs}, indent=1, sort_keys=True)
                                    + "\n", encoding="utf-8")
            validate_data_dir(tmp, no_feats=False, no_text=not (tmp / "text").is_file(),
                              no_wav=not (tmp / "wav.scp").is_file())
        log.info("%s: %d utterances, dim %d", final, len(utt2spk), up.hidden_size)
        made.append(final)
    # Last: the record that makes the set's dump complete, listing every layer dir of these inputs.
    present = [k for k in range(up.num_hidden_states) if _layer_complete(layer_dir(dump, k, set_name), ident, inputs)]
    atomic_write_text(record, json.dumps({**ident, "set": set_name, "inputs": inputs, "layers": present,
                                          "num_hidden_states": up.num_hidden_states}, indent=1, sort_keys=True) + "\n")
    return made


def _write_table(path: Path, table: dict) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for k in _c_sorted(table):
            f.write(f"{k} {table[k]}\n")


# -------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    from s3prl.train.distributed import DEVICES

    p = argparse.ArgumentParser(prog="python -m s3prl.bin.extract",
                                description="Dump upstream representations of a Kaldi data dir to ark/scp.")
    p.add_argument("--upstream", required=True, help="checkpoint path or baseline name (fbank, mfcc, mel160)")
    p.add_argument("--layer", default="all", help="all | last | N | N,M,... (0 = input block)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", choices=DEVICES, help="auto (cuda when available) | cpu | cuda")
    p.add_argument("--compress", default="false", help="true: Kaldi CM compression (lossy); default false")
    p.add_argument("--apply-cmvn", default="true",
                   help="external-feature upstreams: mean-normalise feats.scp with the data dir's cmvn.scp")
    p.add_argument("--mode", default="extract", choices=["extract", "check", "merge", "layers"])
    p.add_argument("--nj", type=int, default=1, help="merge mode: number of jobs to gather")
    p.add_argument("--chunk-context", type=int, default=None,
                   help="transformers: frames of context each side in overlapping windows for inputs longer "
                        "than sequence_length (default 0 = non-overlapping chunks, as S3PRL; layers mode: "
                        "default the dump's own setting)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                   help="compute dtype of the model: float32 (default; reproducible, S3PRL parity) | bfloat16 "
                        "(autocast on CUDA or a CPU with bf16 units, else float32 with a notice); recorded "
                        "in upstream.json (layers mode: default the dump's own setting)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("data_dir", help="extract/check/merge: the data dir; layers: the dump dir")
    p.add_argument("out", nargs="+", help="extract: output prefix; check/merge: the dump dir; layers: the sets")
    return p


def main(argv: list[str] | None = None) -> int:
    from s3prl.train.distributed import resolve_device

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    compress = _parse_bool(args.compress, "--compress")
    apply_cmvn = _parse_bool(args.apply_cmvn, "--apply-cmvn")
    args.device = resolve_device(args.device)
    if args.chunk_context is not None and args.chunk_context < 0:
        raise UserError(f"--chunk-context: must be >= 0, got {args.chunk_context}")
    if args.dtype is not None:
        from s3prl.precision import resolve_dtype

        args.dtype = resolve_dtype(args.dtype, args.device)
    if args.mode == "layers":
        for d in dump_layer_dirs(args.upstream, args.data_dir, args.out, args.layer, args.chunk_context, args.dtype):
            print(d)
        return 0
    if len(args.out) != 1:
        raise UserError(f"--mode {args.mode}: expected <data-dir> and one output, got {len(args.out)}")
    args.out = args.out[0]
    args.chunk_context = args.chunk_context or 0
    args.dtype = args.dtype or "float32"
    if args.mode == "check":
        print("complete" if check(args.upstream, args.data_dir, args.out, args.layer, args.chunk_context, args.dtype)
              else "todo")
        return 0
    if args.mode == "merge":
        merge(args.upstream, args.data_dir, args.out, args.nj, args.layer, args.chunk_context, args.dtype)
        return 0
    extract(args.upstream, args.data_dir, args.out, layers=args.layer, batch_size=args.batch_size,
            device=args.device, compress=compress, apply_cmvn=apply_cmvn, chunk_context=args.chunk_context,
            dtype=args.dtype)
    return 0


if __name__ == "__main__":
    cli_main(main)
