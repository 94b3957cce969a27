"""Print a downstream results table of RESULTS.md, optionally adding finished runs to it.

Usage:
    python -m s3prl.bin.results_table [--table TASK] [--exp DIR]... [--update] [RESULTS.md]

--table: the task whose table is meant (s3prl.downstream.tasks.TASKS: phone, speaker, sentiment,
asr, ...; default phone). phone and speaker share one table, also called ``classification``.
Without --exp: print the table stored in RESULTS.md (default ./RESULTS.md). With --exp: read each
run's results.json (a dir without one is an error: the run is not complete) and print those runs'
rows; with --update also insert/replace them in RESULTS.md (one row per task, upstream, layer,
head; the rest of the file is kept).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

CLASSIFICATION_ALIAS = "classification"   # the phone / speaker table's name before tables were named by task


def main(argv: list[str] | None = None) -> int:
    from s3prl.downstream.tasks import TASKS

    p = argparse.ArgumentParser(prog="results_table", description=__doc__.split("\n")[0])
    p.add_argument("--exp", action="append", default=[], metavar="DIR", help="experiment dir with results.json")
    p.add_argument("--update", action="store_true", help="write the --exp rows into RESULTS.md")
    p.add_argument("--table", choices=sorted(TASKS) + [CLASSIFICATION_ALIAS], default="phone",
                   help="the task whose table is meant (phone and speaker share one: classification)")
    p.add_argument("results_md", nargs="?", default="RESULTS.md", help="RESULTS.md (default ./RESULTS.md)")
    args = p.parse_args(argv)
    setup_logging()
    from s3prl.downstream.results import format_table, parse_results_table, read_results, update_results_md

    spec = TASKS["phone" if args.table == CLASSIFICATION_ALIAS else args.table].table
    md = Path(args.results_md)
    if not args.exp:
        if args.update:
            raise UserError("--update needs at least one --exp DIR")
        if not md.is_file():
            raise UserError(f"{md}: no such file")
        print(format_table(parse_results_table(md.read_text(encoding="utf-8"), str(md), spec), spec))
        return 0
    rows = []
    for d in args.exp:
        rec = read_results(d, spec.required)
        if rec is None:
            raise UserError(f"{d}/results.json: missing or incomplete (has the run finished?)")
        rows.append(spec.row(rec, d))
        if args.update:
            update_results_md(md, rec, d, spec)
    print(format_table(sorted(rows, key=lambda r: tuple(r[:4])), spec))
    return 0


if __name__ == "__main__":
    cli_main(main)
