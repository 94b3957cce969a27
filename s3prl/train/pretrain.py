"""Upstream pre-training as a task of the one trainer: `PretrainConfig` and `PretrainTask`.

The task wraps an objective from `s3prl.upstream.objectives.build_objective` (Mockingjay / TERA /
AALBERT masked reconstruction, APC) and writes checkpoints with
`s3prl.upstream.checkpoint.save_upstream_checkpoint` (today's S3PRL layout, github.com/s3prl/s3prl
v0.4.18, s3prl/pretrain/runner.py; docs/checkpoint-formats.md), the trainer's resume state under
``S3PRL_Recipes.extra.Trainer`` and the input description under ``S3PRL_Recipes.extra.Input``
(``{"kind": "audio"|"external", "dim": D}``). External (Kaldi feats.scp) inputs record an ``audio``
section ``{"external_features": true, "feat_dim": D, "cmvn": ...}`` since no on-the-fly extractor
can reproduce them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from s3prl.config import to_dict
from s3prl.errors import UserError
from s3prl.features import FeatureConfig
from s3prl.train.config import DataConfig, OptimizerConfig, RunnerConfig
from s3prl.train.trainer import StepOutput, Task
from s3prl.upstream.config import UpstreamConfig


@dataclass
class PretrainConfig:
    """One pre-training preset (egs/*/conf/<model>*.yaml).

    input: audio (features computed on the fly with `features`) | external (the data dir's
    feats.scp, e.g. Kaldi fMLLR, with `data.cmvn: speaker` for its cmvn.scp); the command line's
    `--input` overrides it.
    """
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    input: Literal["audio", "external"] = "audio"
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)


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
        return {"external_features": True, "feat_dim": int(input_dim), "cmvn": cfg.data.cmvn,
                "norm_vars": cfg.data.norm_vars}
    from s3prl.upstream.families import family_of

    return family_of(cfg.upstream.model).audio_section(cfg.features)


class PretrainTask(Task):
    """Pre-training: the objective is the model; the loss is the objective's loss."""

    def __init__(self, cfg: PretrainConfig, input_dim: int, target_dim: int | None = None):
        from s3prl.upstream.objectives import build_objective

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
                  "data": to_dict(self.cfg.data), "input": self.cfg.input}
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

