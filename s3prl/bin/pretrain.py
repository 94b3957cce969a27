"""Pre-train an upstream model (Mockingjay / TERA / AALBERT / APC) on a Kaldi data directory.

    python -m s3prl.bin.pretrain --config conf/tera_tiny.yaml [--override optimizer.lr=1e-4 ...]
        [--input audio|external] [--resume] <data-dir> <exp-dir>

    torchrun --nproc_per_node 2 -m s3prl.bin.pretrain --config ... <data-dir> <exp-dir>

Features are computed on the fly from the data dir's audio (`features:` section), or read from its
feats.scp with `--input external` (e.g. Kaldi fMLLR; `--override data.cmvn=speaker` applies its
cmvn.scp). Writes `<exp-dir>/config.yaml` (the resolved config), `states-<step>.ckpt` (newest
`runner.max_keep`), `tb/` (TensorBoard) and `plots/` (PNG spectrograms, learning curve). Logs
go to stderr (recipes redirect them through run.pl).

The sha256 of the data-dir files read goes to `<exp-dir>/inputs.json` when a run starts.

Reruns: when the final `states-<total_steps>.ckpt` exists the run is complete and nothing is done
but redrawing `plots/learning_curve.png` from the checkpoint's history if a kill lost it.
When `<exp-dir>` holds checkpoints, training resumes from the newest one (`--resume` says so
explicitly), provided the config equals the stored `config.yaml` except for the keys in
`FREE_KEYS` (and `runner.total_steps` with `--resume`, to train further); otherwise it stops with
an error naming the first differing key and touches nothing; so does a data dir whose files
differ from `inputs.json` (checkpoints trained on other data are neither resumed nor complete).
The exp dir is locked (s3prl.atomic.StageLock) against a second concurrent run.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from s3prl.atomic import atomic_write_text
from s3prl.config import ConfigError, from_dict, load_config, read_yaml, save_config, to_dict
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("s3prl.pretrain")

# Keys that may change between a run and its resumption (they do not change the result).
FREE_KEYS = {"runner.log_step", "runner.save_step", "runner.max_keep", "runner.plot_step", "runner.dev_step",
             "runner.amp", "data.num_workers", "data.cache_features"}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_difference(old: dict, new: dict, free: set[str]) -> str | None:
    """First dotted key whose value differs between two config dicts (ignoring `free`), or None."""
    a, b = _flatten(old), _flatten(new)
    for k in sorted(set(a) | set(b)):
        if k in free:
            continue
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, tuple):
            va = list(va)
        if isinstance(vb, tuple):
            vb = list(vb)
        if va != vb:
            return f"{k}: {va!r} in the existing run, {vb!r} now"
    return None


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
    from s3prl.train.pretrain import PretrainConfig

    overrides = list(args.override) + ([f"input={args.input}"] if args.input else [])
    cfg = load_config(PretrainConfig, args.config, overrides)
    exp_dir = Path(args.exp_dir)
    total = cfg.runner.total_steps

    from s3prl.train import distributed as D
    info = D.init_distributed(args.device)
    try:
        if info.is_main:
            from s3prl.atomic import StageLock
            with StageLock(exp_dir, what="pretrain"):
                return _run(args, cfg, exp_dir, total, info)
        return _run(args, cfg, exp_dir, total, info)
    finally:
        D.cleanup()


def _run(args, cfg, exp_dir: Path, total: int, info) -> int:
    from s3prl.checkpoints import find_checkpoints

    ckpts = find_checkpoints(exp_dir)
    stored = exp_dir / "config.yaml"
    if ckpts:
        if stored.is_file():
            from s3prl.train.pretrain import PretrainConfig
            try:
                old = to_dict(from_dict(PretrainConfig, read_yaml(stored), str(stored)))
            except ConfigError as e:
                raise UserError(f"{stored}: cannot read the existing run's config ({e})") from None
            free = FREE_KEYS | ({"runner.total_steps"} if args.resume else set())
            diff = config_difference(old, to_dict(cfg), free)
            if diff:
                raise UserError(f"{exp_dir} holds checkpoints of a different config ({diff}); "
                                f"use another exp dir or the same config")
        else:
            raise UserError(f"{exp_dir} holds checkpoints but no config.yaml; use another exp dir")
        if any(step >= total for step, _ in ckpts):
            _check_inputs(exp_dir, args.data_dir, cfg)
            if info.is_main:
                _finish_plots(exp_dir, ckpts[-1][1])
            log.info("%s: pre-training is complete (%s exists); nothing to do", exp_dir, ckpts[-1][1].name)
            return 0
    if info.is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, stored)
        if not ckpts or not (exp_dir / INPUTS).is_file():
            atomic_write_text(exp_dir / INPUTS, json.dumps(inputs_identity(args.data_dir, cfg), indent=1,
                                                           sort_keys=True) + "\n")

    from s3prl.data.dataset import FeatureDataset, collate_features
    from s3prl.data.sampler import BucketBatchSampler
    from s3prl.train.pretrain import PretrainTask, target_features
    from s3prl.train.trainer import Trainer, seed_everything

    d = cfg.data
    external = cfg.input == "external"
    tfeat = target_features(cfg)
    if not external and d.cmvn == "speaker":
        raise UserError("data.cmvn=speaker reads the data dir's cmvn.scp and needs --input external")
    if d.delta_order:
        # The hub computes an upstream's input from its features section when it extracts; deltas
        # added by the data loader alone would leave extraction one stream short.
        raise UserError("data.delta_order: pre-training takes deltas from the features section "
                        "(features.delta_order), which extraction applies too")
    data = FeatureDataset(args.data_dir, features=None if external else cfg.features, target_features=tfeat,
                          cmvn=d.cmvn, norm_vars=d.norm_vars, max_timestep=d.max_timestep,
                          max_timestep_policy=d.max_timestep_policy, seed=d.seed,
                          cache=d.cache_features)
    log.info("%s: %d utterances, %s features of dim %d", args.data_dir, len(data),
             "external" if external else cfg.features.feat_type, data.dim)
    sampler = BucketBatchSampler(data.bucket_lengths(), d.batch_size, seed=d.seed, shuffle=True,
                                 half_batch_above=d.half_batch_above, rank=info.rank, world_size=info.world_size)
    seed_everything(cfg.runner.seed)  # the same model initialisation on every rank
    task = PretrainTask(cfg, data.dim, None if tfeat is None else 1025)
    trainer = Trainer(task, train_data=data, collate_fn=collate_features, sampler=sampler,
                      optimizer_cfg=cfg.optimizer, runner_cfg=cfg.runner, exp_dir=exp_dir, dist=info,
                      num_workers=d.num_workers, progress=not args.no_progress)
    if ckpts:
        trainer.resume(ckpts[-1][1])  # refuses a checkpoint of another input kind or dim first
        _check_inputs(exp_dir, args.data_dir, cfg)
    elif args.resume:
        log.info("%s: no checkpoint to resume from; starting from step 0", exp_dir)
    trainer.fit()
    if info.is_main:
        log.info("pre-training done: %s", exp_dir / f"states-{trainer.step}.ckpt")
    return 0


INPUTS = "inputs.json"


def inputs_identity(data_dir: str | Path, cfg) -> dict:
    """sha256 of the data-dir files pre-training reads: wav.scp, segments, utt2spk, spk2utt for
    audio input; feats.scp, cmvn.scp, utt2spk, spk2utt and the arks' size/mtime for external
    features. Recorded as <exp-dir>/inputs.json when a run starts."""
    from s3prl.bin.extract import files_identity

    if cfg.input == "external":
        return files_identity(Path(data_dir), ("feats.scp", "cmvn.scp", "utt2spk", "spk2utt"), ("feats.scp", "cmvn.scp"))
    return files_identity(Path(data_dir), ("wav.scp", "segments", "utt2spk", "spk2utt"))


def _check_inputs(exp_dir: Path, data_dir: str, cfg) -> None:
    """Checkpoints trained on other data are not resumed nor reported complete: a data dir whose
    files changed since the run started is an error naming the first changed file (nothing is
    touched; as with a changed config, use another exp dir or remove this one). Runs made before
    the record existed are not checked."""
    stored = exp_dir / INPUTS
    if not stored.is_file():
        return
    try:
        old = json.loads(stored.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{stored}: unreadable ({e})") from None
    new = inputs_identity(data_dir, cfg)
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            what = "the arks its feats.scp/cmvn.scp point into" if name == "arks" else f"{Path(data_dir) / name}"
            raise UserError(f"{exp_dir} holds checkpoints trained on other data: {what} changed since the run "
                            f"started (see {stored}); use another exp dir or remove it")


def _finish_plots(exp_dir: Path, final_ckpt: Path) -> None:
    """The learning curve is part of a finished run: a run killed after its final checkpoint and
    before the plot gets it redrawn here from the history the checkpoint holds (the trainer's
    logged scalars), so a rerun that skips training still leaves every output in place."""
    from s3prl.train.observe import Observer

    curve = exp_dir / "plots" / "learning_curve.png"
    if curve.is_file():
        return
    from s3prl.upstream.checkpoint import OURS, load_checkpoint

    history = ((load_checkpoint(final_ckpt).get(OURS) or {}).get("extra") or {}).get("Trainer", {}).get("history")
    if not history:
        log.warning("%s: no logged history to draw %s from", final_ckpt, curve)
        return
    obs = Observer(exp_dir, enabled=True, total_steps=0, tensorboard=False, progress=False)
    obs.learning_curve(history)
    obs.close()
    log.info("%s: redrawn from %s", curve, final_ckpt.name)


if __name__ == "__main__":
    cli_main(main)
