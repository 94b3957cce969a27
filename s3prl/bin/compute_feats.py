"""Extract features for every utterance of a Kaldi data dir into one ark/scp pair.

The per-job worker of utils/compute_feats.sh (Kaldi's compute-fbank-feats | copy-feats):

    python -m s3prl.bin.compute_feats [--config conf/fbank.yaml] [--override key=value ...]
        [--compress false|true|1-7] [--write-utt2num-frames true|false] DATA_DIR OUT_PREFIX

writes OUT_PREFIX.ark, OUT_PREFIX.scp (absolute ark paths, sorted like DATA_DIR/utt2spk) and,
with --write-utt2num-frames true (the default), OUT_PREFIX.utt2num_frames. Audio comes from
wav.scp (paths or pipes) and segments (s3prl.data.audio). Every output appears only when complete.
If all outputs exist, are complete and newer than the config, it says so and does no work.
An unreadable utterance or one shorter than a frame is an error naming it. Utterances are
featurised 32 at a time with the batched fbank (output identical to one at a time).
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from s3prl.atomic import atomic_write_text, remove_stale_tmp
from s3prl.config import load_config
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("compute_feats")

# Utterances featurised together (s3prl.features.compute_features_batch); bounds the memory of
# one batched FFT to CHUNK utterances' frames.
CHUNK = 32


def parse_bool(s: str) -> bool:
    if s in ("true", "false"):
        return s == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got '{s}'")


def parse_compress(s: str) -> int | None:
    """false -> None (exact FM), true -> 1 (Kaldi's auto CM/CM2), 1-7 -> that method."""
    if s == "false":
        return None
    if s == "true":
        return 1
    if s.isdigit() and 1 <= int(s) <= 7:
        return int(s)
    raise argparse.ArgumentTypeError(f"expected true, false or a compression method 1-7, got '{s}'")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compute_feats", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="feature config YAML (s3prl.features.FeatureConfig)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. num_mel_bins=40 (repeatable)")
    p.add_argument("--compress", type=parse_compress, default=None, help="false (default), true or 1-7")
    p.add_argument("--write-utt2num-frames", type=parse_bool, default=True)
    p.add_argument("--verbose", "-v", action="count", default=0)
    p.add_argument("--plan", metavar="DATA_DIR", default=None,
                   help="print 'done' if DATA_DIR has complete features made with this config, else "
                        "'todo FEAT_TYPE DIM FRAME_SHIFT_SECONDS'; with --write-config PATH also write the "
                        "resolved config there (used by utils/compute_feats.sh; imports no torch)")
    p.add_argument("--write-config", metavar="PATH", default=None)
    p.add_argument("--write-inputs", metavar="PATH", default=None,
                   help="with --plan: also write the identity of DATA_DIR's input files there")
    p.add_argument("data_dir", nargs="?")
    p.add_argument("out_prefix", nargs="?", help="writes OUT_PREFIX.ark, .scp and .utt2num_frames")
    return p


def extract(data_dir: str, out_prefix: str, cfg, compression: int | None = None,
            write_utt2num_frames: bool = True) -> int:
    """Extract features of `data_dir` into OUT_PREFIX.{ark,scp[,utt2num_frames]}; returns #utts."""
    from tqdm import tqdm

    from s3prl.data.ark import ArkWriter
    from s3prl.data.audio import load_utterance
    from s3prl.data.kaldi_dir import DataDir
    from s3prl.features import compute_features_batch, feature_dim, utterance_seed

    dd = DataDir(data_dir)
    utts = list(dd.utts)
    if not utts:
        raise UserError(f"{data_dir}: no utterances (empty utt2spk)")
    prefix = Path(out_prefix)
    frames: list[str] = []
    dim = feature_dim(cfg)
    disable = not os.isatty(2) or logging.getLogger().level > logging.INFO
    with ArkWriter(f"{prefix}.ark", f"{prefix}.scp", compression=compression) as writer, \
            tqdm(total=len(utts), desc=f"features {Path(data_dir).name}", unit="utt", disable=disable) as bar:
        # CHUNK utterances at a time: one batched fbank (same output as per utterance) per chunk
        for start in range(0, len(utts), CHUNK):
            chunk = utts[start:start + CHUNK]
            wavs = [load_utterance(dd, utt, target_sr=cfg.sample_rate) for utt in chunk]
            feats_list = compute_features_batch(wavs, cfg, seeds=[utterance_seed(cfg, u) for u in chunk])
            for utt, wav, feats in zip(chunk, wavs, feats_list):
                if feats.shape[0] == 0:
                    raise UserError(f"utterance {utt}: {len(wav)} samples is shorter than one "
                                    f"{cfg.frame_length:g} ms frame")
                if feats.shape[1] != dim:
                    raise RuntimeError(f"feature dim {feats.shape[1]} != expected {dim}")
                writer.write(utt, feats.numpy())
                frames.append(f"{utt} {feats.shape[0]}\n")
            bar.update(len(chunk))
    if write_utt2num_frames:
        atomic_write_text(f"{prefix}.utt2num_frames", "".join(frames))
    return len(utts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from s3prl.features import FeatureConfig

    cfg = load_config(FeatureConfig, args.config, args.override)
    if args.plan is not None:
        from s3prl.features import feature_dim, frame_shift_seconds

        if args.write_config:
            atomic_write_text(args.write_config, config_yaml(cfg))
        if args.write_inputs:
            atomic_write_text(args.write_inputs, inputs_identity(args.plan))
        if features_done(args.plan, cfg):
            print("done")
        else:
            print(f"todo {cfg.feat_type} {feature_dim(cfg)} {frame_shift_seconds(cfg):g}")
        return 0
    if args.data_dir is None or args.out_prefix is None:
        raise UserError("expected DATA_DIR and OUT_PREFIX (see --help)")
    if not Path(args.data_dir).is_dir():
        raise UserError(f"{args.data_dir}: data directory does not exist")
    outs = [Path(f"{args.out_prefix}.ark"), Path(f"{args.out_prefix}.scp")]
    if args.write_utt2num_frames:
        outs.append(Path(f"{args.out_prefix}.utt2num_frames"))
    inputs = [Path(args.data_dir) / f for f in ("utt2spk", "wav.scp", "segments")]
    if args.config:
        inputs.append(Path(args.config))
    if not args.override and all(p.is_file() for p in outs):
        newest_in = max(p.stat().st_mtime for p in inputs if p.exists())
        if min(p.stat().st_mtime for p in outs) >= newest_in and _scp_complete(outs[1], args.data_dir):
            log.info("%s.scp is complete and up to date; skipping", args.out_prefix)
            return 0
    from s3prl.data.kaldi_dir import validate_data_dir

    # unsorted / duplicate keys, utterances missing from utt2spk: refused before any work
    validate_data_dir(args.data_dir, no_feats=True, no_text=True)
    remove_stale_tmp(Path(args.out_prefix).parent)  # left by a killed run (its pid is gone)
    n = extract(args.data_dir, args.out_prefix, cfg, args.compress, args.write_utt2num_frames)
    log.info("wrote %d utterances to %s.ark", n, args.out_prefix)
    return 0


def config_yaml(cfg) -> str:
    """The resolved config as YAML (utils/compute_feats.sh stores it as DATA_DIR/conf/feats.yaml)."""
    import yaml

    from s3prl.config import to_dict

    return yaml.safe_dump(to_dict(cfg), sort_keys=True)


# The data-dir files the features are made from (audio entries, segmentation, speakers for CMVN).
INPUT_FILES = ("wav.scp", "segments", "reco2file_and_channel", "utt2spk", "spk2utt")


def inputs_identity(data_dir: str | Path) -> str:
    """The identity of DATA_DIR's input files: one '<file> <sha256 of its bytes>' line each (absent
    files say 'absent'). Stored as DATA_DIR/conf/feats.inputs next to the config, so that features
    made from an older wav.scp, segments, utt2spk or spk2utt are recomputed, and features of
    unchanged inputs still skip (content, not mtime, decides: a touched file is unchanged)."""
    import hashlib

    d = Path(data_dir)
    lines = []
    for name in INPUT_FILES:
        p = d / name
        lines.append(f"{name} {hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else 'absent'}\n")
    return "".join(lines)


def features_done(data_dir: str | Path, cfg) -> bool:
    """True if DATA_DIR holds complete features made with `cfg` from its current inputs:
    conf/feats.yaml equal to the config, conf/feats.inputs equal to `inputs_identity`, feats.scp
    and utt2num_frames covering exactly the utterances, their arks present, feats_dim right, and
    cmvn.scp covering every speaker."""
    from s3prl.data.kaldi_dir import DataDir, read_kv
    from s3prl.features import feature_dim

    d = Path(data_dir)
    need = [d / "conf" / "feats.yaml", d / "feats.scp", d / "utt2num_frames", d / "feats_dim", d / "cmvn.scp",
            d / "conf" / "feats.inputs"]
    if not all(p.is_file() for p in need):
        return False
    if need[0].read_text() != config_yaml(cfg):
        return False
    if need[5].read_text() != inputs_identity(d):
        return False
    if need[3].read_text().strip() != str(feature_dim(cfg)):
        return False
    dd = DataDir(d)
    utts = set(dd.utts)
    feats = read_kv(need[1])
    if set(feats) != utts or set(read_kv(need[2])) != utts:
        return False
    if set(read_kv(need[4])) != set(dd.speakers):
        return False
    arks = {v.rsplit(":", 1)[0] for v in feats.values()}
    return all(Path(a).is_file() for a in arks)


def _scp_complete(scp: Path, data_dir: str) -> bool:
    from s3prl.data.kaldi_dir import DataDir

    keys = [line.split(None, 1)[0] for line in scp.read_text().splitlines() if line.strip()]
    return keys == list(DataDir(data_dir).utts)


if __name__ == "__main__":
    cli_main(main)
