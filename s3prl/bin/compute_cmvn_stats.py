"""CMVN statistics of a data dir's feats.scp, like Kaldi's steps/compute_cmvn_stats.sh.

    python -m s3prl.bin.compute_cmvn_stats [--per-utt false] [--fake false] DATA_DIR CMVN_DIR

Per speaker (spk2utt, the default) or per utterance (--per-utt true), accumulate (2, D+1) double
stats (row 0 sums + count, row 1 sums of squares; s3prl.features.cmvn) and write
CMVN_DIR/cmvn_<data-name>.ark plus DATA_DIR/cmvn.scp keyed by speaker (or utterance), absolute
paths, atomically. --fake writes identity stats (Kaldi's --fake: zeros and count 1, then ones).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("compute_cmvn_stats")


def compute_cmvn(data_dir: str | Path, cmvn_dir: str | Path, per_utt: bool = False,
                 fake: bool = False) -> Path:
    """Write the stats ark and DATA_DIR/cmvn.scp; returns the scp path."""
    from s3prl.data.ark import iter_scp, write_cmvn_ark
    from s3prl.data.kaldi_dir import DataDir
    from s3prl.features.cmvn import accumulate, init_stats

    data_dir, cmvn_dir = Path(data_dir), Path(cmvn_dir)
    feats_scp = data_dir / "feats.scp"
    if not feats_scp.is_file():
        raise UserError(f"{feats_scp}: no such file (compute features first)")
    dd = DataDir(data_dir)
    utt2spk = dd.utt2spk
    stats: dict[str, np.ndarray] = {}
    for utt, feats in iter_scp(feats_scp):
        key = utt if per_utt else utt2spk.get(utt)
        if key is None:
            raise UserError(f"{feats_scp}: utterance {utt} is not in utt2spk")
        if key not in stats:
            stats[key] = init_stats(feats.shape[1])
        if fake:
            continue
        if stats[key].shape[1] != feats.shape[1] + 1:
            raise UserError(f"{feats_scp}: utterance {utt} has dim {feats.shape[1]}, "
                            f"others {stats[key].shape[1] - 1}")
        accumulate(stats[key], feats)
    if fake:
        for s in stats.values():
            s[0, -1] = 1.0
            s[1, :-1] = 1.0
    if not per_utt:
        missing = [s for s in dd.speakers if s not in stats]
        if missing:
            raise UserError(f"{feats_scp}: speaker {missing[0]} has no features")
    name = data_dir.resolve().name
    scp = data_dir / "cmvn.scp"
    write_cmvn_ark(cmvn_dir / f"cmvn_{name}.ark", scp, stats)
    log.info("wrote CMVN stats of %d %s to %s", len(stats), "utterances" if per_utt else "speakers", scp)
    return scp


def main(argv: list[str] | None = None) -> int:
    from s3prl.bin.compute_feats import parse_bool

    p = argparse.ArgumentParser(prog="compute_cmvn_stats", description=__doc__.split("\n\n")[0])
    p.add_argument("--per-utt", type=parse_bool, default=False, help="stats per utterance, not per speaker")
    p.add_argument("--fake", type=parse_bool, default=False, help="identity stats")
    p.add_argument("data_dir")
    p.add_argument("cmvn_dir")
    args = p.parse_args(argv)
    setup_logging()
    compute_cmvn(args.data_dir, args.cmvn_dir, per_utt=args.per_utt, fake=args.fake)
    return 0


if __name__ == "__main__":
    cli_main(main)
