"""Data-directory verbs behind the Kaldi-style shell wrappers in utils/.

    python -m s3prl.bin.data_dir validate [--no-feats] [--no-text] [--no-wav] [--non-print] [--no-spk-sort] <data>
    python -m s3prl.bin.data_dir fix <data>
    python -m s3prl.bin.data_dir split [--per-utt] <data> <num-to-split>
    python -m s3prl.bin.data_dir subset (--first N | --last N | --utt-list F | --spk-list F | --num-utts N [--seed S]) <data> <dest>
    python -m s3prl.bin.data_dir copy [--utt-prefix P] [--utt-suffix S] [--spk-prefix P] [--spk-suffix S] [--no-feats] <data> <dest>

Each verb follows the Kaldi script of the same name (kaldi-asr/kaldi, egs/wsj/s5/utils/:
validate_data_dir.sh, fix_data_dir.sh, split_data.sh, subset_data_dir.sh, copy_data_dir.sh) through
`s3prl.data.kaldi_dir`; errors are one line naming the file and line at fault.
"""
from __future__ import annotations

import argparse
import os
import logging

from s3prl.data import kaldi_dir
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

logger = logging.getLogger("data_dir")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{s}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{s}'")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="data_dir", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)

    v = sub.add_parser("validate", help="check a data directory like utils/validate_data_dir.sh")
    v.add_argument("--no-feats", action="store_true", help="feats.scp may be absent")
    v.add_argument("--no-text", action="store_true", help="text may be absent")
    v.add_argument("--no-wav", action="store_true", help="wav.scp may be absent")
    v.add_argument("--non-print", action="store_true", help="allow non-printable characters in text")
    v.add_argument("--no-spk-sort", action="store_true", help="do not require utt2spk to be sorted by speaker")
    v.add_argument("data")

    f = sub.add_parser("fix", help="sort and intersect the files of a data directory like utils/fix_data_dir.sh")
    f.add_argument("data")

    s = sub.add_parser("split", help="split a data directory like utils/split_data.sh")
    s.add_argument("--per-utt", action="store_true", help="split by utterance, not by speaker")
    s.add_argument("data")
    s.add_argument("num_to_split", type=_positive_int)

    b = sub.add_parser("subset", help="copy part of a data directory like utils/subset_data_dir.sh")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--first", type=_positive_int, help="the first N utterances (C order)")
    g.add_argument("--last", type=_positive_int, help="the last N utterances (C order)")
    g.add_argument("--utt-list", help="file with one utterance id per line (first field)")
    g.add_argument("--spk-list", help="file with one speaker id per line (first field)")
    g.add_argument("--num-utts", type=_positive_int, help="N utterances drawn at random with --seed")
    b.add_argument("--seed", type=int, default=0, help="seed of the random draw of --num-utts (default 0)")
    b.add_argument("data")
    b.add_argument("dest")

    c = sub.add_parser("copy", help="copy a data directory like utils/copy_data_dir.sh")
    for opt in ("utt-prefix", "utt-suffix", "spk-prefix", "spk-suffix"):
        c.add_argument(f"--{opt}", default="", help=f"{opt.replace('-', ' ')} added to every id")
    c.add_argument("--no-feats", action="store_true", help="leave out feats.scp, cmvn.scp and the other feature files")
    c.add_argument("data")
    c.add_argument("dest")
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    if args.verb == "validate":
        kaldi_dir.validate_data_dir(args.data, no_feats=args.no_feats, no_text=args.no_text, no_wav=args.no_wav,
                                    non_print=args.non_print, no_spk_sort=args.no_spk_sort)
        print(f"validate_data_dir: Successfully validated data-directory {args.data}")
    elif args.verb == "fix":
        stats = kaldi_dir.fix_data_dir(args.data)
        print(f"fix_data_dir: kept {stats['utts_after']} of {stats['utts_before']} utterances in {args.data}; "
              f"originals in {args.data}/.backup")
    elif args.verb == "split":
        parts = kaldi_dir.split_data(args.data, args.num_to_split, per_utt=args.per_utt)
        logger.info("split %s into %d parts under %s", args.data, len(parts), parts[0].parent)
    elif args.verb == "subset":
        for opt in ("utt_list", "spk_list"):
            path = getattr(args, opt)
            if path is not None and not os.path.isfile(path):
                raise UserError(f"--{opt.replace('_', '-')}: no such file: {path}")
        kaldi_dir.subset_data_dir(args.data, args.dest, utt_list=args.utt_list, first=args.first, last=args.last,
                                  speakers=args.spk_list, num_utts=args.num_utts, seed=args.seed)
        logger.info("subset_data_dir: wrote %s", args.dest)
    elif args.verb == "copy":
        written = kaldi_dir.copy_data_dir(args.data, args.dest, utt_prefix=args.utt_prefix, utt_suffix=args.utt_suffix,
                                          spk_prefix=args.spk_prefix, spk_suffix=args.spk_suffix,
                                          feats=not args.no_feats)
        print(f"copy_data_dir: copied {args.data} to {args.dest}"
              + (f" ({', '.join(written)} written)" if written else " (up to date)"))
    return 0


if __name__ == "__main__":
    cli_main(main)
