"""Typed configs of the trainer: optimizer, runner and data loader (`DataConfig`).

They map the 2020 S3PRL YAML sections (github.com/s3prl/s3prl @ b72a2cd9, config/*.yaml:
`optimizer:`, `dataloader:`, `runner:`) onto dataclasses loaded with `s3prl.config.load_config`.
`s3prl.train.pretrain.PretrainConfig` adds `upstream:` (UpstreamConfig) and `features:`
(FeatureConfig). Downstream training reuses `OptimizerConfig`, `RunnerConfig` and `DataConfig`
(the `dataloader:` section of both).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal



@dataclass
class OptimizerConfig:
    """Optimizer and lr schedule.

    name: AdamW (default) | Adam | BertAdam (the 2020 optimizer: no bias correction; use eps 1e-6,
    weight_decay 0.01 and per-parameter clip `bert_adam_max_grad_norm` 1.0).
    schedule: warmup_linear (warm-up over `warmup_proportion` of the steps, then linear decay to
    0) | constant. gradient_clipping: global grad-norm clip (0 = off); a non-finite grad norm
    skips the update. gradient_accumulation_steps: batches per update (the loss is divided by it).
    """
    name: Literal["AdamW", "Adam", "BertAdam"] = "AdamW"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    schedule: Literal["warmup_linear", "constant"] = "warmup_linear"
    warmup_proportion: float = 0.07
    gradient_clipping: float = 1.0
    gradient_accumulation_steps: int = 1
    bert_adam_max_grad_norm: float = 1.0

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_proportion < 1:
            raise ValueError(f"warmup_proportion must be in [0, 1), got {self.warmup_proportion}")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be >= 1")


@dataclass
class RunnerConfig:
    """The loop: `total_steps` optimizer updates; log / dev / save / plot every N steps.

    save_step writes `states-<step>.ckpt` keeping the newest `max_keep`; the final step is always
    saved. dev_step (0 = never) evaluates and keeps `best-dev.ckpt`. amp: none | bf16 | fp16:
    bf16 autocast on CUDA and on CPUs with bf16 units (AVX512-BF16 / AMX), fp16 on CUDA only; where
    the device cannot, one warning and float32. seed seeds torch, numpy and python `random`.
    """
    total_steps: int = 1000
    log_step: int = 50
    save_step: int = 500
    dev_step: int = 0
    plot_step: int = 0
    max_keep: int = 2
    seed: int = 1337
    amp: Literal["none", "bf16", "fp16"] = "none"

    def __post_init__(self):
        for k in ("total_steps", "log_step", "save_step", "max_keep"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.dev_step < 0 or self.plot_step < 0:
            raise ValueError("dev_step and plot_step must be >= 0")


@dataclass
class PretrainRunnerConfig(RunnerConfig):
    """The pre-training loop: `RunnerConfig` plus `keep_steps`, steps whose `states-<step>.ckpt` is
    written (whether or not a multiple of save_step) and never pruned by `max_keep`, so that a
    learning curve of representation quality can probe them later (egs/librispeech/run.sh
    --curve-steps, s3prl.downstream.curves). Empty by default: nothing else is kept. Pre-training
    only: the downstream runners' configs (and their config hashes) do not have the key.
    """
    keep_steps: list[int] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        bad = [s for s in self.keep_steps if s < 1]
        if bad:
            raise ValueError(f"keep_steps must be steps >= 1, got {bad[0]}")


@dataclass
class DataConfig:
    """Batching over a Kaldi data dir (S3PRL 2020 bucketing: github.com/s3prl/s3prl @ b72a2cd9,
    dataloader.py).

    batch_size is per process (global batch = batch_size x world size). Utterances are sorted by
    length (descending), cut into buckets of the global batch size, a bucket whose longest member
    exceeds `half_batch_above` frames is split in two (0 = never), and buckets are shuffled each
    epoch with `seed`. max_timestep (0 = off): utterances longer than it are dropped
    (`max_timestep_policy: drop`, the 2020 behaviour) or randomly cropped to it (`crop`, the
    crop offset seeded by seed, epoch and utterance). cmvn: none | utterance (per-utterance mean
    normalisation) | speaker (Kaldi apply-cmvn with the data dir's cmvn.scp) | global (one
    mean over the training set, applied to every set); norm_vars adds variance normalisation.
    delta_order / delta_window (downstream tasks only): Kaldi `add-deltas` on the normalised
    features, as Kaldi's nnet recipes and PyTorch-Kaldi's `fea_opts` chain them (apply-cmvn |
    add-deltas); 0 = off. For a downstream task over an upstream run on the fly, cmvn (utterance
    or none) and the deltas apply to the upstream's states, as they do to dumped states.
    cache_features keeps every utterance's features in memory after the first epoch (small
    corpora, the tiny presets).
    """
    batch_size: int = 8
    dev_batch_size: int = 16
    max_timestep: int = 0
    max_timestep_policy: Literal["drop", "crop"] = "drop"
    half_batch_above: int = 1000
    num_workers: int = 0
    seed: int = 1337
    cmvn: Literal["none", "utterance", "speaker", "global"] = "none"
    norm_vars: bool = False
    delta_order: int = 0
    delta_window: int = 2
    cache_features: bool = False

    def __post_init__(self):
        if self.delta_order < 0 or self.delta_window < 1:
            raise ValueError(f"delta_order must be >= 0 and delta_window >= 1, got {self.delta_order} and "
                             f"{self.delta_window}")
        if self.batch_size < 1 or self.dev_batch_size < 1:
            raise ValueError("batch_size and dev_batch_size must be >= 1")
        if self.max_timestep < 0 or self.num_workers < 0 or self.half_batch_above < 0:
            raise ValueError("max_timestep, half_batch_above and num_workers must be >= 0")
