"""Learning curves of representation quality (s3prl.downstream.curves): find the kept pre-training
checkpoints at the curve's steps, and report the probes run on them.

Usage:
    python -m s3prl.bin.learning_curve checkpoints --steps "500 1000 2000" EXP_DIR...
        One line per (run, step) up to the run's runner.total_steps: EXP_DIR<TAB>STEP<TAB>CKPT.
        A missing states-<step>.ckpt is an error naming it, checked for every run before any
        line is printed.
    python -m s3prl.bin.learning_curve report --run NAME:STEP:PROBE_DIR... [--fbank PROBE_DIR]
            [--results-md RESULTS.md] OUT_PREFIX
        Read each probe's results.json and write OUT_PREFIX.png (accuracy vs pre-training step,
        one line per upstream NAME, fbank as a horizontal line), OUT_PREFIX.json (the numbers)
        and the rows of the curve in RESULTS.md's learning-curves table. Unchanged numbers: no
        rewrite.

Example (egs/librispeech stage 10):
    python -m s3prl.bin.learning_curve checkpoints --steps "500 1000" exp/tera_tiny
    python -m s3prl.bin.learning_curve report --run tera_tiny:500:exp/curves/phone_linear_tera_tiny_step500_layer-3 \\
        --fbank exp/downstream/phone_linear_fbank --results-md RESULTS.md exp/curves/phone_linear
"""
from __future__ import annotations

import argparse

from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging


def _run_spec(text: str) -> tuple[str, int, str]:
    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2]:
        raise UserError(f"--run {text}: expected NAME:STEP:PROBE_DIR")
    return parts[0], int(parts[1]), parts[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="learning_curve", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("checkpoints", help="the kept checkpoints at the curve's steps")
    c.add_argument("--steps", required=True, help="pre-training steps, space or comma separated")
    c.add_argument("exp_dirs", nargs="+", metavar="EXP_DIR")
    r = sub.add_parser("report", help="PNG, JSON and RESULTS.md rows of one probe's curve")
    r.add_argument("--run", action="append", default=[], metavar="NAME:STEP:PROBE_DIR")
    r.add_argument("--fbank", metavar="PROBE_DIR", help="the fbank probe (the baseline line)")
    r.add_argument("--results-md", metavar="PATH", help="RESULTS.md to update (default: none)")
    r.add_argument("out_prefix", metavar="OUT_PREFIX")
    args = p.parse_args(argv)
    setup_logging()
    from s3prl.downstream import curves

    if args.cmd == "checkpoints":
        steps = curves.parse_steps(args.steps)
        found = [(d, step, path) for d in args.exp_dirs for step, path in curves.curve_checkpoints(d, steps)]
        for d, step, path in found:
            print(f"{d}\t{step}\t{path}")
        return 0
    runs = [_run_spec(x) for x in args.run]
    curve = curves.collect_curve(runs, args.fbank)
    wrote = curves.write_curve_report(curve, args.out_prefix, args.results_md)
    print(f"{args.out_prefix}.png {'written' if wrote else 'complete (unchanged)'}: "
          f"{sum(len(x['points']) for x in curve['curves'])} points, "
          f"{len(curve['curves'])} upstream line(s){', fbank' if curve['fbank'] else ''}")
    return 0


if __name__ == "__main__":
    cli_main(main)
