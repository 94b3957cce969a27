"""Train and evaluate a downstream classifier on the CPC protocol (phone or speaker).

Usage:
    python -m s3prl.bin.train_downstream [options] --labels <cpc-dir> (--feats <dir> | --data <dir> --upstream <u>) <exp-dir>

Examples (from egs/librispeech):
    # dumped representations (fast path): a dump dir holding train_split + test_split utterances
    python -m s3prl.bin.train_downstream --config conf/downstream/phone_linear.yaml \\
        --labels data/cpc_phone --feats dump/tera/last/train_clean_100 exp/phone_linear_tera
    # upstream on the fly: frozen weighted sum of all layers, from a wav data dir
    python -m s3prl.bin.train_downstream --config conf/downstream/speaker_utterance.yaml \\
        --labels data/cpc_phone --data data/train_clean_100 --upstream exp/tera/states-1000000.ckpt \\
        --layer weighted_sum exp/speaker_utt_tera_ws
    # baseline features computed on the fly
    python -m s3prl.bin.train_downstream --config conf/downstream/phone_linear.yaml \\
        --labels data/cpc_phone --data data/train_clean_100 --upstream fbank exp/phone_linear_fbank

Arguments:
    <exp-dir>          output: config.yaml, states-<step>.ckpt, best-dev.ckpt, tb/, plots/,
                       learning_curve.png, results.json.
    --config YAML      downstream config (s3prl.downstream.config.DownstreamConfig).
    --override K=V     change one config key (repeatable), e.g. runner.total_steps=2000.
    --task T           phone | speaker | sentiment (overrides the config's `task`).
    --labels DIR       CPC label dir: converted_aligned_phones.txt, train_split.txt, test_split.txt;
                       for sentiment the MOSEI label dir of s3prl.bin.prepare_mosei
                       (utt2sentiment, train/dev/test.list; s3prl.downstream.sentiment).
    --feats DIR        data dir whose feats.scp holds the representations (utils/dump_feats.sh
                       output or any Kaldi feature dir); it must cover train_split and test_split.
    --data DIR         data dir (wav.scp) to run --upstream on the fly (feats.scp for upstreams
                       trained on external features such as fMLLR).
    --upstream U       checkpoint or baseline (fbank, mfcc). With --feats it is checked against
                       the upstream the dump recorded.
    --layer L          last | weighted_sum | <index> (input.layer); --fine-tune sets input.fine_tune.
    --results-md PATH  RESULTS.md whose row for (task, upstream, layer, head) is updated
                       (default: ./RESULTS.md; '' = none).
    --device D         auto | cpu | cuda (default auto: cuda when available).

The 2020 protocol (github.com/s3prl/s3prl @ b72a2cd9, downstream/runner.py): frozen runs train the
head with Adam lr 4e-3, evaluate dev every runner.dev_step, keep best-dev.ckpt and report test
accuracy at the best-dev step. An interrupted run resumes from its newest states-<step>.ckpt; a run
whose results.json has the same config hash (config + inputs) prints "complete" and does no work.
"""
from __future__ import annotations

import argparse

from s3prl.errors import cli_main
from s3prl.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_downstream", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="downstream YAML config")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="config override (repeatable)")
    p.add_argument("--task", choices=("phone", "speaker", "sentiment"), help="task (overrides the config)")
    p.add_argument("--labels", required=True, metavar="DIR", help="CPC label directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--feats", metavar="DIR", help="data dir with dumped representations (feats.scp)")
    src.add_argument("--data", metavar="DIR", help="data dir to run --upstream on the fly")
    p.add_argument("--upstream", help="checkpoint path or baseline name (fbank, mfcc)")
    from s3prl.downstream.runner import add_run_arguments
    return add_run_arguments(p)


def _task_of(args) -> str | None:
    """--task, else the config's `task:` key (the sentiment task has its own config schema)."""
    if args.task is not None or not args.config:
        return args.task
    from s3prl.config import read_yaml
    data = read_yaml(args.config)
    return data.get("task") if isinstance(data, dict) else None


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    from s3prl.downstream.config import load_downstream_config
    from s3prl.downstream.runner import cli_command, cli_overrides, print_record
    from s3prl.downstream.task import RunInputs, describe, run_downstream

    command = cli_command("train_downstream", argv)
    if _task_of(args) == "sentiment":  # CMU-MOSEI: --labels is the sentiment label dir
        from s3prl.downstream.sentiment import main_from_args
        return main_from_args(args, command)
    cfg = load_downstream_config(args.config, cli_overrides(args), task=args.task)
    inputs = RunInputs(label_dir=args.labels, feats_dir=args.feats, data_dir=args.data, upstream=args.upstream)
    record = run_downstream(cfg, inputs, args.exp_dir, results_md=args.results_md or None, command=command,
                            device=args.device, progress=not args.no_progress)
    print_record(record, describe)
    return 0


if __name__ == "__main__":
    cli_main(main)
