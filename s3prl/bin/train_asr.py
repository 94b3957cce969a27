"""Train and evaluate the CTC speech recognizer (BiLSTM + CTC over representations, greedy decoding).

Usage:
    python -m s3prl.bin.train_asr [options] --train <dir> --dev <dir> --test <dir> <exp-dir>

Examples (from egs/librispeech):
    # dumped representations (fast path): dump dirs carry feats.scp and text
    python -m s3prl.bin.train_asr --config conf/downstream/asr_bilstm.yaml \\
        --train dump/tera/last/train_clean_100 --dev dump/tera/last/dev_clean \\
        --test dump/tera/last/test_clean exp/asr_tera
    # an upstream on the fly (frozen weighted sum of all layers) over wav data dirs
    python -m s3prl.bin.train_asr --config conf/downstream/asr_bilstm.yaml --on-the-fly \\
        --upstream exp/tera/states-1000000.ckpt --layer weighted_sum \\
        --train data/train_clean_100 --dev data/dev_clean --test data/test_clean exp/asr_tera_ws
    # fbank features of the data dirs (compute_feats.sh output) as the baseline
    python -m s3prl.bin.train_asr --config conf/downstream/asr_bilstm.yaml --upstream fbank \\
        --train data/train_clean_100 --dev data/dev_clean --test data/test_clean exp/asr_fbank

Arguments:
    <exp-dir>          output: config.yaml, tokenizer.model, states-<step>.ckpt, best-dev.ckpt, tb/,
                       plots/, learning_curve.png, decode_<dev>/ and decode_<test>/ (hyp.txt, ref.txt,
                       wer, cer), results.json.
    --train/--dev/--test DIR
                       Kaldi data dirs with `text`; feats.scp holds the representations, unless
                       --on-the-fly. The unit set is trained on --train's text; dev selects the
                       best checkpoint (lowest WER, ties: CER); test is scored at it.
    --config YAML      s3prl.downstream.asr.AsrConfig (conf/downstream/asr_bilstm{,_tiny}.yaml).
    --override K=V     change one config key (repeatable), e.g. runner.total_steps=2000.
    --upstream U       checkpoint or baseline (fbank, mfcc, mel160): run on the fly with
                       --on-the-fly, otherwise the name of (and a check against) the dumped upstream.
    --on-the-fly       run --upstream inside the model; --layer and --fine-tune pick the transfer mode.
    --layer L          last | weighted_sum | <index> (input.layer); --fine-tune sets input.fine_tune.
    --results-md PATH  RESULTS.md whose ASR row for (upstream, layer) is updated (default ./RESULTS.md;
                       '' = none).
    --device D         auto | cpu | cuda (default auto: cuda when available).

An interrupted run resumes from its newest states-<step>.ckpt; a run whose results.json has the
same config hash (config + inputs) prints "complete" and does no work.
"""
from __future__ import annotations

import argparse

from s3prl.errors import cli_main
from s3prl.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_asr", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="ASR YAML config")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="config override (repeatable)")
    p.add_argument("--train", required=True, metavar="DIR", help="training data dir (with text)")
    p.add_argument("--dev", required=True, metavar="DIR", help="dev data dir (best-dev selection)")
    p.add_argument("--test", required=True, metavar="DIR", help="test data dir (scored at best dev)")
    p.add_argument("--upstream", help="checkpoint path or baseline name (fbank, mfcc, mel160)")
    p.add_argument("--on-the-fly", action="store_true", help="run --upstream on the data dirs inside the model")
    from s3prl.downstream.runner import add_run_arguments
    return add_run_arguments(p)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    from s3prl.downstream.asr import AsrInputs, describe, load_asr_config, run_asr
    from s3prl.downstream.runner import cli_command, cli_overrides, print_record
    from s3prl.errors import UserError

    if (args.layer is not None or args.fine_tune) and not args.on_the_fly:
        raise UserError("--layer and --fine-tune need --on-the-fly (dumped features are one fixed layer)")
    cfg = load_asr_config(args.config, cli_overrides(args))
    inputs = AsrInputs(train=args.train, dev=args.dev, test=args.test, upstream=args.upstream,
                       on_the_fly=args.on_the_fly)
    command = cli_command("train_asr", argv)
    record = run_asr(cfg, inputs, args.exp_dir, results_md=args.results_md or None, command=command,
                     device=args.device, progress=not args.no_progress)
    print_record(record, describe)
    return 0


if __name__ == "__main__":
    cli_main(main)
