"""Pre-train an upstream model (Mockingjay / TERA / AALBERT / APC) on a Kaldi data directory.

    python -m s3prl.bin.pretrain --config conf/tera_tiny.yaml [--override optimizer.lr=1e-4 ...]
        [--input audio|external] [--resume] <data-dir> <exp-dir>

    torchrun --nproc_per_node 2 -m s3prl.bin.pretrain --config ... <data-dir> <exp-dir>

Features are computed on the fly from the data dir's audio (`features:` section), or read from its
feats.scp with `--input external` (e.g. Kaldi fMLLR; `--override dataloader.cmvn=speaker` applies its
cmvn.scp). Writes `<exp-dir>/config.yaml` (the resolved config), `states-<step>.ckpt` (newest
`runner.max_keep`), `tb/` (TensorBoard) and `plots/` (PNG spectrograms, learning curve). Logs
go to stderr (recipes redirect them through run.pl).

The sha256 of the data-dir files read goes to `<exp-dir>/inputs.json` when a run starts.

Reruns, resumption (`--resume` says it explicitly and allows a larger runner.total_steps) and the
exp-dir lock are those of `s3prl.train.pretrain.run_pretrain`, which this command calls after
parsing its arguments.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from s3prl.config import load_config
from s3prl.errors import cli_main
from s3prl.log import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3prl.bin.pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="pre-training YAML (egs/*/conf/<model>.yaml)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. optimizer.lr=1e-4 (repeatable)")
    p.add_argument("--input", choices=["audio", "external"], default=None,
                   help="features from the audio (on the fly) or the data dir's feats.scp (default: config)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint (automatic when one exists); "
                        "also allows a larger runner.total_steps")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="auto (the default): cuda when available")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("data_dir", help="Kaldi data directory (wav.scp or feats.scp)")
    p.add_argument("exp_dir", help="output directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    from s3prl.train.pretrain import PretrainConfig, run_pretrain

    overrides = list(args.override) + ([f"input={args.input}"] if args.input else [])
    cfg = load_config(PretrainConfig, args.config, overrides)
    return run_pretrain(cfg, args.data_dir, Path(args.exp_dir), resume=args.resume, device=args.device,
                        progress=not args.no_progress)


if __name__ == "__main__":
    cli_main(main)
