"""Upstream pre-training: `PretrainConfig`, `PretrainTask` (a task of the one trainer) and
`run_pretrain`, the whole run callable from Python (`s3prl.bin.pretrain` parses arguments and
calls it).

The task wraps an objective from `s3prl.upstream.families.build_objective` (Mockingjay / TERA /
AALBERT masked reconstruction, APC) and writes checkpoints with
`s3prl.upstream.checkpoint.save_upstream_checkpoint` (today's S3PRL layout, github.com/s3prl/s3prl
v0.4.18, s3prl/pretrain/runner.py; docs/checkpoint-formats.md), the trainer's resume state under
``S3PRL_Recipes.extra.Trainer`` and the input description under ``S3PRL_Recipes.extra.Input``
(``{"kind": "audio"|"external", "dim": D}``). External (Kaldi feats.scp) inputs record an ``audio``
section ``{"external_features": true, "feat_dim": D, "cmvn": ...}`` since no on-the-fly extractor
can reproduce them.

A run (`run_pretrain`) writes `<exp-dir>/config.yaml` (the resolved config), `inputs.json` (the
sha256 of the data-dir files read), `states-<step>.ckpt` (newest `runner.max_keep`, plus those of `runner.keep_steps`), `tb/` and
`plots/`. Reruns: when the final `states-<total_steps>.ckpt` exists the run is complete and
nothing is done but redrawing `plots/learning_curve.png` from the checkpoint's history if a kill
lost it. When `<exp-dir>` holds checkpoints, training resumes from the newest one, provided the
config equals the stored `config.yaml` except for the keys in `FREE_KEYS` (and
`runner.total_steps` with resume=True, to train further); otherwise it stops with an error naming
the first differing key and touches nothing; so does a data dir whose files differ from
`inputs.json`. The exp dir is locked (s3prl.atomic.StageLock) against a second concurrent run.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from s3prl.atomic import StageLock, atomic_write_text
from s3prl.checkpoints import find_checkpoints, load_checkpoint
from s3prl.config import ConfigError, from_dict, read_yaml, save_config, to_dict, upgrade_keys
from s3prl.errors import UserError
from s3prl.features import FeatureConfig
from s3prl.train.config import DataConfig, OptimizerConfig, PretrainRunnerConfig
from s3prl.train.trainer import StepOutput, Task
from s3prl.upstream.config import UpstreamConfig


@dataclass
class PretrainConfig:
    """One pre-training preset (egs/*/conf/<model>*.yaml).

    input: audio (features computed on the fly with `features`) | external (the data dir's
    feats.scp, e.g. Kaldi fMLLR, with `dataloader.cmvn: speaker` for its cmvn.scp); the command
    line's `--input` overrides it. dataloader: batching and normalisation, the section downstream
    configs and S3PRL's own configs (`dataloader:`) call so; it was `data:` before.
    """
    RENAMED_KEYS = {"data": "dataloader"}

    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    input: Literal["audio", "external"] = "audio"
    dataloader: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    runner: PretrainRunnerConfig = field(default_factory=PretrainRunnerConfig)


def window_mismatch(cfg: PretrainConfig) -> str | None:
    """Why the inputs training sees differ from the windows the upstream encodes at extraction,
    or None. The presets crop or drop utterances at `dataloader.max_timestep` frames and encode
    in windows of `sequence_length` (stacked) frames of the same length, so that the dumped states
    see what training saw; a run that sets them apart gets this as a warning. A family without
    windows (APC) has no `sequence_length`."""
    from s3prl.upstream.families import family_of

    family = family_of(cfg.upstream.model)
    sub = family.config(cfg.upstream)
    seq, dr = int(getattr(sub, "sequence_length", 0) or 0), int(getattr(sub, "frame_stacking", 1) or 1)
    mt = cfg.dataloader.max_timestep
    if not seq or not mt or mt == seq * dr:
        return None
    key = f"upstream.{family.config_section}"
    stacked = f" x {key}.frame_stacking {dr}" if dr > 1 else ""
    return (f"dataloader.max_timestep {mt} != {key}.sequence_length {seq}{stacked}: training sees inputs of up "
            f"to {mt} frames, extraction encodes windows of {seq * dr}")


def target_features(cfg: PretrainConfig) -> FeatureConfig | None:
    """The second feature stream for `upstream.target: linear1025` (same framing as the input)."""
    if cfg.upstream.target == "input":
        return None
    if cfg.input == "external":
        raise UserError("upstream.target: linear1025 needs input: audio (the target is computed from the audio)")
    f = cfg.features
    return FeatureConfig(feat_type="linear1025", sample_rate=f.sample_rate, frame_length=f.frame_length,
                         frame_shift=f.frame_shift)


def audio_section(cfg: PretrainConfig, input_dim: int) -> dict:
    """The checkpoint's feature description (S3PRL 'audio' layout, or the external marker)."""
    if cfg.input == "external":
        return {"external_features": True, "feat_dim": int(input_dim), "cmvn": cfg.dataloader.cmvn,
                "norm_vars": cfg.dataloader.norm_vars}
    from s3prl.upstream.families import family_of

    return family_of(cfg.upstream.model).audio_section(cfg.features)


class PretrainTask(Task):
    """Pre-training: the objective is the model; the loss is the objective's loss."""

    def __init__(self, cfg: PretrainConfig, input_dim: int, target_dim: int | None = None):
        from s3prl.upstream.families import build_objective

        self.cfg = cfg
        self.input_dim = int(input_dim)
        try:
            self.model = build_objective(cfg.upstream, self.input_dim, target_dim)
        except ValueError as e:
            raise UserError(f"upstream: {e}") from None

    def training_step(self, model, batch, generator):
        batch = batch.to(self.device)
        out = model(batch.feats, batch.lengths, generator, target=batch.target)
        if not out.num_elements:
            return None  # no utterance was masked (S3PRL's batch_is_valid)
        return StepOutput(loss=out.loss, num_elements=float(out.num_elements), extras=out.extras)

    def plot(self, extras, step):
        from s3prl.train.observe import spectrogram_figure

        mats = {k.replace("_", " "): extras[k].float().cpu().numpy()
                for k in ("masked_input", "prediction", "target") if k in extras}
        if not mats:
            return {}
        return {"spectrogram": spectrogram_figure(mats, title=f"{self.cfg.upstream.model} step {step}")}

    def save_checkpoint(self, path: Path, trainer_state: dict) -> None:
        from s3prl.upstream.checkpoint import save_upstream_checkpoint

        rest = {k: v for k, v in trainer_state.items() if k not in ("optimizer", "scheduler", "step")}
        runner = {"runner": to_dict(self.cfg.runner), "optimizer": to_dict(self.cfg.optimizer),
                  "dataloader": to_dict(self.cfg.dataloader), "input": self.cfg.input}
        save_upstream_checkpoint(
            path, objective=self.model, optimizer_state=trainer_state["optimizer"],
            scheduler_state=trainer_state["scheduler"], step=trainer_state["step"], runner_config=runner,
            upstream_cfg=self.cfg.upstream, audio=audio_section(self.cfg, self.input_dim),
            extra={"Trainer": rest, "Input": {"kind": self.cfg.input, "dim": self.input_dim}})

    def read_checkpoint(self, path: Path) -> dict:
        from s3prl.upstream.checkpoint import OURS, load_checkpoint, restore_objective

        ckpt = load_checkpoint(path)
        ours = ckpt.get(OURS) or {}
        extra = ours.get("extra") or {}
        if "Trainer" not in extra:
            raise UserError(f"{path}: not a checkpoint of this trainer (no {OURS}.extra.Trainer); cannot resume")
        stored = extra.get("Input", {})
        if stored.get("kind") != self.cfg.input or int(stored.get("dim", -1)) != self.input_dim:
            raise UserError(f"{path}: checkpoint was trained on {stored.get('kind')} features of dim "
                            f"{stored.get('dim')}, but this run has {self.cfg.input} features of dim {self.input_dim}")
        restore_objective(self.model, ckpt, path)
        return {**extra["Trainer"], "optimizer": ckpt["Optimizer"], "scheduler": ckpt.get("Scheduler"),
                "step": int(ckpt["Step"])}


# --------------------------------------------------------------------------------------------
# The run
log = logging.getLogger("s3prl.pretrain")

# Keys that may change between a run and its resumption (they do not change the result).
FREE_KEYS = {"runner.log_step", "runner.save_step", "runner.max_keep", "runner.keep_steps", "runner.plot_step", "runner.dev_step",
             "runner.amp", "dataloader.num_workers", "dataloader.cache_features"}
INPUTS = "inputs.json"


def run_pretrain(cfg: PretrainConfig, data_dir: str | Path, exp_dir: str | Path, *, resume: bool = False,
                 device: str | None = None, progress: bool = True) -> int:
    """Pre-train `cfg` on Kaldi data dir `data_dir` into `exp_dir` (see the module docstring).

    resume: say that resuming is meant (it is automatic when checkpoints exist) and allow a
    larger `runner.total_steps`. device: auto | cpu | cuda (None = auto). Under torchrun every
    rank calls it; rank 0 locks the exp dir and writes. Returns 0.
    """
    from s3prl.train import distributed as D

    exp_dir = Path(exp_dir)
    info = D.init_distributed(device)
    try:
        if info.is_main:
            with StageLock(exp_dir, what="pretrain"):
                return _run(cfg, Path(data_dir), exp_dir, resume, info, progress)
        return _run(cfg, Path(data_dir), exp_dir, resume, info, progress)
    finally:
        D.cleanup()


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


def _check_same_config(cfg: PretrainConfig, exp_dir: Path, resume: bool) -> None:
    """An exp dir holding checkpoints continues only with the config it was started with."""
    stored = exp_dir / "config.yaml"
    if not stored.is_file():
        raise UserError(f"{exp_dir} holds checkpoints but no config.yaml; use another exp dir")
    try:
        old = to_dict(from_dict(PretrainConfig, upgrade_keys(PretrainConfig, read_yaml(stored)), str(stored)))
    except ConfigError as e:
        raise UserError(f"{stored}: cannot read the existing run's config ({e})") from None
    free = FREE_KEYS | ({"runner.total_steps"} if resume else set())
    diff = config_difference(old, to_dict(cfg), free)
    if diff:
        raise UserError(f"{exp_dir} holds checkpoints of a different config ({diff}); "
                        f"use another exp dir or the same config")


def _run(cfg: PretrainConfig, data_dir: Path, exp_dir: Path, resume: bool, info, progress: bool) -> int:
    ckpts = find_checkpoints(exp_dir)
    if ckpts:
        _check_same_config(cfg, exp_dir, resume)
        if any(step >= cfg.runner.total_steps for step, _ in ckpts):
            _check_inputs(exp_dir, data_dir, cfg)
            if info.is_main:
                _finish_plots(exp_dir, ckpts[-1][1])
            log.info("%s: pre-training is complete (%s exists); nothing to do", exp_dir, ckpts[-1][1].name)
            return 0
    if info.is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, exp_dir / "config.yaml")
        if not ckpts or not (exp_dir / INPUTS).is_file():
            atomic_write_text(exp_dir / INPUTS, json.dumps(inputs_identity(data_dir, cfg), indent=1,
                                                           sort_keys=True) + "\n")
    trainer = _build_trainer(cfg, data_dir, exp_dir, info, progress)
    if ckpts:
        trainer.resume(ckpts[-1][1])  # refuses a checkpoint of another input kind or dim first
        _check_inputs(exp_dir, data_dir, cfg)
    elif resume:
        log.info("%s: no checkpoint to resume from; starting from step 0", exp_dir)
    trainer.fit()
    if info.is_main:
        log.info("pre-training done: %s", exp_dir / f"states-{trainer.step}.ckpt")
    return 0


def _build_trainer(cfg: PretrainConfig, data_dir: Path, exp_dir: Path, info, progress: bool):
    """The data set, sampler, task and trainer of a run."""
    from s3prl.data.dataset import FeatureDataset, collate_features
    from s3prl.data.sampler import BucketBatchSampler
    from s3prl.train.trainer import Trainer, seed_everything

    d = cfg.dataloader
    external = cfg.input == "external"
    tfeat = target_features(cfg)
    if not external and d.cmvn == "speaker":
        raise UserError("dataloader.cmvn=speaker reads the data dir's cmvn.scp and needs --input external")
    if d.delta_order:
        # The hub computes an upstream's input from its features section when it extracts; deltas
        # added by the data loader alone would leave extraction one stream short.
        raise UserError("dataloader.delta_order: pre-training takes deltas from the features section "
                        "(features.delta_order), which extraction applies too")
    why = window_mismatch(cfg)
    if why:
        log.warning("%s", why)
    data = FeatureDataset(data_dir, features=None if external else cfg.features, target_features=tfeat,
                          cmvn=d.cmvn, norm_vars=d.norm_vars, max_timestep=d.max_timestep,
                          max_timestep_policy=d.max_timestep_policy, seed=d.seed,
                          cache=d.cache_features)
    log.info("%s: %d utterances, %s features of dim %d", data_dir, len(data),
             "external" if external else cfg.features.feat_type, data.dim)
    sampler = BucketBatchSampler(data.bucket_lengths(), d.batch_size, seed=d.seed, shuffle=True,
                                 half_batch_above=d.half_batch_above, rank=info.rank, world_size=info.world_size)
    seed_everything(cfg.runner.seed)  # the same model initialisation on every rank
    task = PretrainTask(cfg, data.dim, None if tfeat is None else 1025)
    return Trainer(task, train_data=data, collate_fn=collate_features, sampler=sampler,
                   optimizer_cfg=cfg.optimizer, runner_cfg=cfg.runner, exp_dir=exp_dir, dist=info,
                   num_workers=d.num_workers, progress=progress)


def inputs_identity(data_dir: str | Path, cfg: PretrainConfig) -> dict:
    """sha256 of the data-dir files pre-training reads: wav.scp, segments, utt2spk, spk2utt for
    audio input; feats.scp, cmvn.scp, utt2spk, spk2utt and the arks' size/mtime for external
    features. Recorded as <exp-dir>/inputs.json when a run starts."""
    from s3prl.data.kaldi_dir import files_identity

    if cfg.input == "external":
        return files_identity(Path(data_dir), ("feats.scp", "cmvn.scp", "utt2spk", "spk2utt"), ("feats.scp", "cmvn.scp"))
    return files_identity(Path(data_dir), ("wav.scp", "segments", "utt2spk", "spk2utt"))


def _check_inputs(exp_dir: Path, data_dir: Path, cfg: PretrainConfig) -> None:
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
    from s3prl.upstream.checkpoint import OURS

    curve = exp_dir / "plots" / "learning_curve.png"
    if curve.is_file():
        return
    history = ((load_checkpoint(final_ckpt).get(OURS) or {}).get("extra") or {}).get("Trainer", {}).get("history")
    if not history:
        log.warning("%s: no logged history to draw %s from", final_ckpt, curve)
        return
    obs = Observer(exp_dir, enabled=True, total_steps=0, tensorboard=False, progress=False)
    obs.learning_curve(history)
    obs.close()
    log.info("%s: redrawn from %s", curve, final_ckpt.name)
