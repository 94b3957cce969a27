"""The second-corpus (generalisation) table of RESULTS.md (s3prl.downstream.transfer): the rows of
finished probes on a corpus the upstreams were not pre-trained on, printed and, with
--results-md, written between RESULTS.md's eval-corpus markers.

Usage:
    python -m s3prl.bin.transfer_table --corpus NAME --exp DIR... [--ref-root DIR] [--results-md PATH]

--corpus: the corpus' name in the table (egs/librispeech stage 11: eval_synth_<preset>_seed<N> or
eval_<dir name>). --exp: a probe's exp dir (results.json; a dir without one is an error). --ref-root:
where the probes of the same names on the pre-training corpus are (e.g. exp/downstream).

Example (egs/librispeech stage 11):
    python -m s3prl.bin.transfer_table --corpus eval_synth_tiny_seed2 --ref-root exp/downstream \\
        --exp exp/downstream_eval_synth_tiny_seed2/phone_linear_fbank --results-md RESULTS.md
"""
from __future__ import annotations

import argparse

from s3prl.errors import cli_main
from s3prl.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="transfer_table", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--corpus", required=True, help="the corpus' name in the table")
    p.add_argument("--exp", action="append", required=True, metavar="DIR", help="a probe's exp dir (repeatable)")
    p.add_argument("--ref-root", metavar="DIR", help="the probes of the same names on the pre-training corpus")
    p.add_argument("--results-md", metavar="PATH", help="RESULTS.md to update (default: print only)")
    args = p.parse_args(argv)
    setup_logging()
    from s3prl.downstream.results import format_table
    from s3prl.downstream.transfer import TABLE, transfer_rows, update_transfer_table

    rows = transfer_rows(args.corpus, args.exp, args.ref_root)
    if args.results_md:
        update_transfer_table(args.results_md, rows)
    print(format_table(sorted(rows, key=lambda r: tuple(r[:TABLE.key_columns])), TABLE))
    return 0


if __name__ == "__main__":
    cli_main(main)
