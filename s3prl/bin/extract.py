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
  Once the checkpoint's last hidden state is dumped, ``<dump-dir>/last`` is (atomically) a relative
  symlink to its ``layer-<k>``: ``<dump-dir>/last/<set>`` is the last layer's data dir.

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

This verb parses arguments; the dump layout, the extraction job, check and merge are s3prl.dump.
"""
from __future__ import annotations

import argparse

from s3prl.dump import check, dump_layer_dirs, extract, merge
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging


def _parse_bool(value: str, option: str) -> bool:
    v = str(value).lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise UserError(f"{option}: '{value}' is not true or false")


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
