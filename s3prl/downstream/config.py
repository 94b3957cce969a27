"""Typed configs of the downstream tasks: the base every task's config extends, and the phone /
speaker (CPC protocol) config.

`TaskConfig` holds the sections every task has (`task`, `input`, `optimizer`, `runner`,
`dataloader`; the defaults are the 2020 frozen-upstream protocol); a task's config extends it with
its own sections (`head`, `labels`, ASR's `model` ...) and may change the defaults. The phone /
speaker config maps the 2020 S3PRL `config/downstream.yaml` (github.com/s3prl/s3prl @ b72a2cd9)
onto dataclasses loaded with `s3prl.config.load_config`:

```yaml
task: phone            # phone | speaker
head: {name: linear}   # s3prl.downstream.heads.HeadConfig
input: {layer: last, fine_tune: false}
labels: {split_seed: 1337, train_proportion: 0.9, num_phone_classes: 41, max_frame_mismatch: 2}
optimizer: {name: Adam, lr: 4.0e-3, schedule: constant, weight_decay: 0.0, gradient_clipping: 1.0}
runner: {total_steps: 500000, log_step: 2000, save_step: 2000, dev_step: 10000, max_keep: 2}
dataloader: {batch_size: 6, dev_batch_size: 12, cmvn: none}   # s3prl.train.config.DataConfig
```

The defaults are the 2020 frozen-upstream protocol: plain Adam, lr 4e-3, no schedule, global
clip 1.0, batch 6 bucketed, 500k steps, dev every 10k steps. Fine-tuning in 2020 used BertAdam
with 7 % warm-up and weight decay 0.01 (set those in the optimizer section with
`input.fine_tune: true`).

`load_task_config` merges the YAML onto a config class's defaults section by section (a YAML that
sets only `optimizer.lr` keeps Adam / constant schedule rather than OptimizerConfig's own AdamW
defaults), then applies `--override` strings. The head names a task accepts are listed once, in its
config class (`heads_by_task`); the tasks themselves are s3prl.downstream.tasks.TASKS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from s3prl.config import apply_overrides, from_dict, read_yaml, to_dict
from s3prl.downstream.heads import HeadConfig
from s3prl.train.config import DataConfig, OptimizerConfig, RunnerConfig

@dataclass
class InputConfig:
    """How representations reach the head.

    layer: which upstream hidden state to use when the upstream runs on the fly: "last",
    "weighted_sum" (learned softmax weights over all states, upstream frozen unless fine_tune) or
    an index (0 = input block). For dumped features the layer is the one recorded by the dump.
    fine_tune: train the upstream jointly with the head. normalize: parameter-free layer norm of
    each hidden state before selection (S3PRL's weighted_sum_norm). chunk_context: frames of
    context per side when a transformer run on the fly encodes inputs longer than its
    sequence_length in overlapping windows (the dump's --chunk-context; 0 = S3PRL's hard cuts).
    upstream_lr: lr of the fine-tuned upstream's parameters (null: optimizer.lr; the schedule
    scales it as it scales optimizer.lr).

    On the fly, the `dataloader` section's per-utterance CMVN and deltas apply to the states the
    head reads, as they apply to dumped states read from feats.scp (frozen on the fly == dumped).
    """
    layer: int | str = "last"
    fine_tune: bool = False
    normalize: bool = False
    chunk_context: int = 0
    upstream_lr: float | None = None

    def __post_init__(self):
        if isinstance(self.layer, str) and self.layer not in ("last", "weighted_sum"):
            try:
                self.layer = int(self.layer)
            except ValueError:
                raise ValueError(f"layer {self.layer!r} is not 'last', 'weighted_sum' or an integer") from None
        if isinstance(self.layer, int) and self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")
        if self.chunk_context < 0:
            raise ValueError(f"chunk_context must be >= 0, got {self.chunk_context}")
        if self.upstream_lr is not None:
            if not self.upstream_lr > 0:
                raise ValueError(f"upstream_lr must be > 0, got {self.upstream_lr}")
            if not self.fine_tune:
                raise ValueError("upstream_lr is the fine-tuned upstream's lr: set fine_tune: true (or remove it)")


@dataclass
class LabelConfig:
    """The CPC protocol: 41 phone classes, seeded 90/10 train/dev split.

    As github.com/s3prl/s3prl @ b72a2cd9, dataloader.py, CPC_Phone_Dataset.
    """
    num_phone_classes: int = 41
    split_seed: int = 1337
    train_proportion: float = 0.9
    max_frame_mismatch: int = 2

    def __post_init__(self):
        if self.num_phone_classes < 2:
            raise ValueError("num_phone_classes must be >= 2")
        if not 0.0 < self.train_proportion < 1.0:
            raise ValueError(f"train_proportion must be in (0, 1), got {self.train_proportion}")
        if self.max_frame_mismatch < 0:
            raise ValueError("max_frame_mismatch must be >= 0")


def frozen_optimizer() -> OptimizerConfig:
    """The 2020 frozen-upstream optimizer: plain Adam, lr 4e-3, constant, global clip 1.0."""
    return OptimizerConfig(name="Adam", lr=4e-3, weight_decay=0.0, schedule="constant", warmup_proportion=0.0,
                           gradient_clipping=1.0)


def protocol_runner() -> RunnerConfig:
    """The 2020 protocol's schedule: 500k steps, dev every 10k, checkpoints every 2k."""
    return RunnerConfig(total_steps=500000, log_step=2000, save_step=2000, dev_step=10000, max_keep=2)


def protocol_dataloader() -> DataConfig:
    """The 2020 protocol's batches: 6 utterances (12 for dev / test)."""
    return DataConfig(batch_size=6, dev_batch_size=12)


@dataclass
class TaskConfig:
    """The sections every downstream task's config has; a task's config extends it.

    task: the task name (s3prl.downstream.tasks.TASKS). input: how representations reach the head
    (InputConfig). optimizer / runner / dataloader: the trainer's sections (s3prl.train.config),
    defaulting to the 2020 frozen-upstream protocol; a task redeclares a field to change its default.

    `heads_by_task`: task name -> the `head.name`s that task accepts (listed once, here; its
    TaskSpec.heads reads them); a config with a `head` section must name one of them.
    `yaml_order`: the order of the sections in config.yaml (empty: the dataclass order, which puts
    these base sections first). The built-in tasks keep the order their config.yaml was always
    written in, so the config hash (sha1 of that text) of a run stays the one already recorded.
    """
    task: str = ""
    input: InputConfig = field(default_factory=InputConfig)
    optimizer: OptimizerConfig = field(default_factory=frozen_optimizer)
    runner: RunnerConfig = field(default_factory=protocol_runner)
    dataloader: DataConfig = field(default_factory=protocol_dataloader)

    heads_by_task: ClassVar[dict[str, tuple[str, ...]]] = {}
    yaml_order: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        head = getattr(self, "head", None)
        valid = self.heads_by_task.get(self.task)
        if head is not None and valid is not None and head.name not in valid:
            raise ValueError(f"head.name {head.name!r} is not a {self.task} head (valid: {', '.join(valid)})")


def config_dict(cfg: TaskConfig) -> dict:
    """`cfg` as plain Python, its sections in `yaml_order` (the text config.yaml holds and hashes)."""
    data = to_dict(cfg)
    order = [k for k in cfg.yaml_order if k in data]
    return {**{k: data[k] for k in order}, **{k: v for k, v in data.items() if k not in order}}


@dataclass
class DownstreamConfig(TaskConfig):
    """Phone or speaker classification on the CPC protocol (the module docstring's YAML)."""
    task: Literal["phone", "speaker"] = "phone"
    head: HeadConfig = field(default_factory=HeadConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)

    heads_by_task: ClassVar[dict[str, tuple[str, ...]]] = {"phone": ("linear", "1hidden", "concat"),
                                                           "speaker": ("frame", "utterance", "rnn")}
    yaml_order: ClassVar[tuple[str, ...]] = ("task", "head", "input", "labels", "optimizer", "runner", "dataloader")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def load_task_config(cls: type, path=None, overrides: list[str] | None = None, set_keys: dict | None = None):
    """A task's YAML (`path`, or none) merged section by section over the defaults of the config
    dataclass `cls`, then `overrides` (``a.b=v``), then `set_keys` (top-level keys that win over
    the file). Keys unknown to the schema are still reported by from_dict (ConfigErrors name the
    file and key): only known sections are merged."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    data.update(set_keys or {})
    return from_dict(cls, _merge(to_dict(cls()), data), str(path) if path is not None else "config")


def load_downstream_config(path=None, overrides: list[str] | None = None,
                           task: str | None = None) -> DownstreamConfig:
    """Load a downstream YAML over the protocol defaults, then `overrides` (``a.b=v``), then
    `task` (the CLI's --task, which wins over the file). Errors are ConfigErrors naming file and key."""
    return load_task_config(DownstreamConfig, path, overrides, {"task": task} if task is not None else None)
