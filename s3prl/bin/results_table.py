"""Print a downstream results table of RESULTS.md, optionally adding finished runs to it, or
compare two runs' fingerprints.

Usage:
    python -m s3prl.bin.results_table [--table TASK] [--exp DIR]... [--update] [RESULTS.md]
    python -m s3prl.bin.results_table [--table TASK] --refresh [RESULTS.md]
    python -m s3prl.bin.results_table --compare A B

--table: the task whose table is meant (s3prl.downstream.tasks.TASKS: phone, speaker, sentiment,
asr, ...; default phone). phone and speaker share one table, also called ``classification``.
Without --exp: print the table stored in RESULTS.md (default ./RESULTS.md), and for phone /
speaker the summary over seeds above it (mean +- sd per task, upstream, layer, head; each learned
upstream against the baselines: s3prl.downstream.aggregate). With --exp: read each run's
results.json (a dir without one is an error: the run is not complete) and print those runs'
rows; with --update also insert/replace them in RESULTS.md (one row per task, upstream, layer,
head, seed; the rest of the file is kept). --refresh: rewrite the table in RESULTS.md with
today's columns (a table written before the seed / fingerprints columns existed gets them, as
"-") and its summary.

--compare A B: A and B are exp dirs or results.json files of two runs (e.g. the same row of two
clones); prints each run's seed, metrics and fingerprints, then what differs: different corpus
-> the data; same corpus, different checkpoint -> the upstream's pre-training (training
nondeterminism); same checkpoint and features -> the probe's own training
(s3prl.downstream.fingerprint).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

CLASSIFICATION_ALIAS = "classification"   # the phone / speaker table's name before tables were named by task


def _read_run(arg: str) -> dict:
    """The results.json of an exp dir or the file itself (UserError naming it when unreadable)."""
    p = Path(arg)
    path = p / "results.json" if p.is_dir() else p
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise UserError(f"{path}: no such results.json (has the run finished?)") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(rec, dict):
        raise UserError(f"{path}: expected a JSON object")
    return rec


def compare_runs(a: str, b: str) -> str:
    """The --compare report of the runs `a` and `b` (exp dirs or results.json files)."""
    from s3prl.downstream.fingerprint import compare

    lines = []
    recs = []
    for label, arg in (("A", a), ("B", b)):
        rec = _read_run(arg)
        recs.append(rec)
        metrics = " ".join(f"{k}={rec[k]:.4f}" if isinstance(rec[k], float) else f"{k}={rec[k]}"
                           for k in sorted(rec) if k.startswith(("dev_", "test_")) and isinstance(rec[k], (int, float)))
        fps = rec.get("fingerprints") or {}
        lines.append(f"{label}: {arg}: {rec.get('task', '?')} {rec.get('upstream', '?')} ({rec.get('layer', '?')}) "
                     f"{rec.get('head', '?')} seed {rec.get('seed', '-')}: {metrics}")
        lines.append(f"   corpus {fps.get('corpus', '-')} features {fps.get('features', '-')} "
                     f"checkpoint {fps.get('checkpoint', '-')} config {rec.get('config_hash', '-')}")
    lines.append(compare(recs[0].get("fingerprints"), recs[1].get("fingerprints")))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from s3prl.downstream.tasks import TASKS

    p = argparse.ArgumentParser(prog="results_table", description=__doc__.split("\n")[0])
    p.add_argument("--exp", action="append", default=[], metavar="DIR", help="experiment dir with results.json")
    p.add_argument("--update", action="store_true", help="write the --exp rows into RESULTS.md")
    p.add_argument("--refresh", action="store_true",
                   help="rewrite RESULTS.md's table with today's columns and its summary")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two exp dirs or results.json files: what differs between the runs")
    p.add_argument("--table", choices=sorted(TASKS) + [CLASSIFICATION_ALIAS], default="phone",
                   help="the task whose table is meant (phone and speaker share one: classification)")
    p.add_argument("results_md", nargs="?", default="RESULTS.md", help="RESULTS.md (default ./RESULTS.md)")
    args = p.parse_args(argv)
    setup_logging()
    from s3prl.downstream.results import (format_table, parse_results_table, read_results, refresh_results_md,
                                          update_results_md)

    if args.compare:
        if args.exp or args.update or args.refresh:
            raise UserError("--compare takes two runs and no --exp, --update or --refresh")
        print(compare_runs(*args.compare))
        return 0
    spec = TASKS["phone" if args.table == CLASSIFICATION_ALIAS else args.table].table
    md = Path(args.results_md)
    if not args.exp:
        if args.update:
            raise UserError("--update needs at least one --exp DIR")
        if not md.is_file():
            raise UserError(f"{md}: no such file")
        if args.refresh:
            refresh_results_md(md, spec)
        rows = parse_results_table(md.read_text(encoding="utf-8"), str(md), spec)
        if spec.summary is not None and rows:
            columns, summary = spec.summary(sorted(rows, key=lambda r: tuple(r[:spec.key_columns])))
            print(format_table(summary, spec, columns))
            print()
        print(format_table(rows, spec))
        return 0
    if args.refresh:
        raise UserError("--refresh rewrites RESULTS.md's table as it is; it takes no --exp (use --update)")
    rows = []
    for d in args.exp:
        rec = read_results(d, spec.required)
        if rec is None:
            raise UserError(f"{d}/results.json: missing or incomplete (has the run finished?)")
        rows.append(spec.row(rec, d))
        if args.update:
            update_results_md(md, rec, d, spec)
    print(format_table(sorted(rows, key=lambda r: tuple(r[:spec.key_columns])), spec))
    return 0


if __name__ == "__main__":
    cli_main(main)
