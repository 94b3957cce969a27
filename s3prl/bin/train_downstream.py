"""Train and evaluate a downstream task: phone or speaker (CPC protocol), sentiment (MOSEI), ASR (CTC),
the DNN of the hybrid DNN-HMM recognizer.

Usage:
    python -m s3prl.bin.train_downstream --task phone|speaker|sentiment [options] --labels <dir> \\
        (--feats <dir> | --data <dir> --upstream <u>) <exp-dir>
    python -m s3prl.bin.train_downstream --task asr [options] --train <dir> --dev <dir> --test <dir> \\
        [--upstream <u> [--on-the-fly]] <exp-dir>

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
    # CTC ASR over dump dirs (dump dirs carry feats.scp and text); `train_asr` is the same verb
    python -m s3prl.bin.train_downstream --task asr --config conf/downstream/asr_bilstm.yaml \\
        --train dump/tera/last/train_clean_100 --dev dump/tera/last/dev_clean \\
        --test dump/tera/last/test_clean exp/asr_tera

Arguments of every task:
    <exp-dir>          output: config.yaml, states-<step>.ckpt, best-dev.ckpt, tb/, plots/,
                       learning_curve.png, results.json (ASR: also tokenizer.model, decode_<set>/).
    --task T           the task (s3prl.downstream.tasks.TASKS); default: the config's `task:` key,
                       else phone. `--task T --help` lists T's own options.
    --config YAML      the task's config (phone / speaker: s3prl.downstream.config.DownstreamConfig;
                       sentiment: s3prl.downstream.sentiment.SentimentConfig; asr:
                       s3prl.downstream.asr.AsrConfig).
    --override K=V     change one config key (repeatable), e.g. runner.total_steps=2000.
    --layer L          last | weighted_sum | <index> (input.layer); --fine-tune sets input.fine_tune.
    --results-md PATH  RESULTS.md whose row for the run is updated (default: ./RESULTS.md; '' = none).
    --device D         auto | cpu | cuda (default auto: cuda when available).

phone, speaker, sentiment:
    --labels DIR       CPC label dir: converted_aligned_phones.txt, train_split.txt, test_split.txt;
                       for sentiment the MOSEI label dir of s3prl.bin.prepare_mosei
                       (utt2sentiment, train/dev/test.list; s3prl.downstream.sentiment).
    --feats DIR        data dir whose feats.scp holds the representations (utils/dump_feats.sh
                       output or any Kaldi feature dir); it must cover train_split and test_split.
    --data DIR         data dir (wav.scp) to run --upstream on the fly (feats.scp for upstreams
                       trained on external features such as fMLLR).
    --upstream U       checkpoint or baseline (fbank, mfcc). With --feats it is checked against
                       the upstream the dump recorded.

asr (s3prl.downstream.asr):
    --train/--dev/--test DIR
                       Kaldi data dirs with `text`; feats.scp holds the representations, unless
                       --on-the-fly. The unit set is trained on --train's text; dev selects the
                       best checkpoint (lowest WER, ties: CER); test is scored at it.
    --upstream U       checkpoint or baseline (fbank, mfcc, mel160): run on the fly with
                       --on-the-fly, otherwise the name of (and a check against) the dumped upstream.
    --on-the-fly       run --upstream inside the model; --layer and --fine-tune pick the transfer mode.

hybrid (s3prl.downstream.hybrid; `train_hybrid_dnn` is the same verb):
    --train/--dev/--test DIR, --upstream U, --on-the-fly   as for asr (--upstream default: fbank)
    --ali-train/--ali-dev/--ali-test DIR
                       alignment dirs of s3prl.bin.hybrid_gmm (ali.*.gz, final.pt): pdf targets
                       and priors; --graph DIR its HCLG dir. Dev picks the LM weight (--lmwts,
                       decode.lmwts), test is decoded at it (--beam, decode.beam).

The 2020 protocol (github.com/s3prl/s3prl @ b72a2cd9, downstream/runner.py): frozen runs train the
head with Adam lr 4e-3, evaluate dev every runner.dev_step, keep best-dev.ckpt and report test
accuracy at the best-dev step. An interrupted run resumes from its newest states-<step>.ckpt; a run
whose results.json has the same config hash (config + inputs) prints "complete" and does no work.
"""
from __future__ import annotations

import argparse

from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

DEFAULT_TASK = "phone"


def task_name(argv: list[str] | None) -> str:
    """The task a command line asks for: --task, else the `task:` key of its --config, else phone."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task")
    pre.add_argument("--config")
    args, _ = pre.parse_known_args(argv)
    if args.task is not None:
        return args.task
    if args.config:
        from s3prl.config import read_yaml

        data = read_yaml(args.config)
        if isinstance(data, dict) and data.get("task") is not None:
            return str(data["task"])
    return DEFAULT_TASK


def get_parser(task: str = DEFAULT_TASK, prog: str = "train_downstream",
               fixed_task: bool = False) -> argparse.ArgumentParser:
    """The parser of `task`'s command line: the common options, the task's own
    (TaskSpec.add_arguments), the run options. `fixed_task`: the verb runs one task (train_asr)
    and has no --task."""
    from s3prl.downstream.runner import add_run_arguments
    from s3prl.downstream.tasks import TASKS, get_task

    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if not fixed_task:
        p.add_argument("--task", choices=sorted(TASKS), help="the downstream task (default: the config's task:)")
    p.add_argument("--config", help="the task's YAML config")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="config override (repeatable)")
    get_task(task if task in TASKS else DEFAULT_TASK).add_arguments(p)   # an unknown --task: argparse names it
    return add_run_arguments(p)


def main(argv: list[str] | None = None, *, task: str | None = None, verb: str = "train_downstream") -> int:
    """Run the command line `argv`; `task` fixes the task (the train_asr alias), `verb` names the CLI
    in messages and in the command recorded in results.json."""
    from s3prl.downstream.tasks import TASKS

    name = task or task_name(argv)
    args = get_parser(name, prog=verb, fixed_task=task is not None).parse_args(argv)
    setup_logging(args.verbose)
    from s3prl.downstream.config import load_task_config
    from s3prl.downstream.runner import cli_command, cli_overrides, print_record, run_spec

    spec = TASKS.get(name)
    if spec is None:   # an unknown --task is refused by argparse: this one is the config's task: key
        raise UserError(f"{args.config}: task '{name}' is not a downstream task (valid: {', '.join(sorted(TASKS))})")
    inputs = spec.inputs(args)
    overrides = cli_overrides(args) + (spec.overrides(args) if spec.overrides is not None else [])
    cfg = load_task_config(spec.config, args.config, overrides, {"task": name})
    record = run_spec(spec, cfg, inputs, args.exp_dir, results_md=args.results_md or None,
                      command=cli_command(verb, argv), device=args.device, progress=not args.no_progress)
    print_record(record, spec.describe)
    return 0


if __name__ == "__main__":
    cli_main(main)
