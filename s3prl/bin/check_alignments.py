"""Check a feature data dir's frame counts against a Kaldi alignment dir before the PyTorch-Kaldi
hand-off.

usage: python -m s3prl.bin.check_alignments [--tolerance 1] [--allow-missing] [--rekey-into DIR]
           <feats-data-dir> <ali-dir>

Frame counts come from `<feats-data-dir>/utt2num_frames` (or, when that file is absent, from the
matrices of its feats.scp); alignment lengths from `<ali-dir>/ali.*.gz` (gzip'ed Kaldi int32
vectors). A difference of more than `--tolerance` frames (default 1) in any utterance, or an
utterance on one side only, is a one-line error and exit status 1. See s3prl.data.alignments.

With --rekey-into DIR, Kaldi-style `spk_utt` alignment ids (Kaldi's own TIMIT recipe) are
rewritten to our `spk-utt` ids in a copy of the alignment dir at DIR (made once), which is then
checked and is what the PyTorch-Kaldi cfg should name.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from s3prl.data.alignments import compare_lengths, read_alignment_lengths, read_frame_counts, rekey_ali_dir
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging


def check_alignments(data_dir: str | Path, ali_dir: str | Path, *, tolerance: int = 1,
                     allow_missing: bool = False) -> dict[str, int]:
    """Run the check; returns {'utterances': n checked, 'missing': n without alignment}."""
    frames, where = read_frame_counts(data_dir)
    if not frames:
        raise UserError(f"{where}: no utterances")
    ali = read_alignment_lengths(ali_dir)
    missing = compare_lengths(frames, ali, tolerance=tolerance, feats_where=where,
                              ali_where=f"{ali_dir}/ali.*.gz", allow_missing=allow_missing)
    return {"utterances": len(frames) - len(missing), "missing": len(missing)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="check_alignments", description=__doc__.split("\n\n")[0])
    p.add_argument("--tolerance", type=int, default=1,
                   help="largest accepted |feature frames - alignment frames| (default 1)")
    p.add_argument("--allow-missing", action="store_true",
                   help="warn (not fail) about utterances with features but no alignment, as "
                        "PyTorch-Kaldi drops them")
    p.add_argument("--rekey-into", default=None, metavar="DIR",
                   help="write a copy of <ali-dir> with spk_utt ids rewritten to spk-utt, and check it")
    p.add_argument("feats_dir")
    p.add_argument("ali_dir")
    a = p.parse_args(argv)
    setup_logging()
    if a.tolerance < 0:
        raise UserError(f"--tolerance: must be >= 0, got {a.tolerance}")
    ali_dir = a.ali_dir
    if a.rekey_into:
        if Path(a.rekey_into, "final.mdl").is_file() and any(Path(a.rekey_into).glob("ali.*.gz")):
            logging.info("%s: re-keyed alignments already there", a.rekey_into)
        else:
            rekey_ali_dir(a.ali_dir, a.rekey_into)
            logging.info("wrote %s (alignments of %s with spk-utt ids)", a.rekey_into, a.ali_dir)
        ali_dir = a.rekey_into
    res = check_alignments(a.feats_dir, ali_dir, tolerance=a.tolerance, allow_missing=a.allow_missing)
    if res["missing"]:
        logging.warning("%d utterances of %s have no alignment in %s; PyTorch-Kaldi will skip them",
                        res["missing"], a.feats_dir, ali_dir)
    logging.info("%s vs %s: %d utterances, frame counts agree (tolerance %d)",
                 a.feats_dir, ali_dir, res["utterances"], a.tolerance)
    return 0


if __name__ == "__main__":
    cli_main(main)
