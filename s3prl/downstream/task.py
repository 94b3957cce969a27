"""Downstream classification runs (phone / speaker, CPC protocol) on the one trainer.

`DownstreamModel` = [frozen or fine-tuned upstream + Featurizer] + head; `ClassificationTask`
plugs it into `s3prl.train.trainer.Trainer` (cross-entropy over valid frames or utterances,
accuracy as the dev metric that selects ``best-dev.ckpt``); `run_downstream` is the whole run:
splits and labels, datasets, training with resume, test scored at the best-dev checkpoint (the
number S3PRL 2020 reported: github.com/s3prl/s3prl @ b72a2cd9, downstream/runner.py), results.json,
the RESULTS.md row and the learning-curve PNG. `PHONE` and `SPEAKER` are the two tasks' specs
(s3prl.downstream.tasks); `RunInputs`, the representation helpers and `feature_dataset` are what
every task reading labelled utterances builds on.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from s3prl.data.labels import PHONE_FILE, cpc_splits
from s3prl.downstream.config import DownstreamConfig
from s3prl.downstream.data import IGNORE_INDEX, LabeledFeatureDataset, collate_labeled
from s3prl.downstream.heads import HEADS, build_head
from s3prl.downstream.phone import phone_labels
from s3prl.downstream.results import CLASSIFICATION
from s3prl.downstream.runner import TaskSpec, eval_loader, finish_run, load_best_dev, run_fields, run_spec
from s3prl.downstream.speaker import speaker_task_labels
from s3prl.dump import read_dump_info, same_upstream
from s3prl.errors import UserError
from s3prl.train.trainer import StepOutput, Task, Trainer

log = logging.getLogger(__name__)


class StateTransform(nn.Module):
    """The `dataloader` section's per-utterance CMVN and Kaldi deltas (FeatureDataset's order:
    CMVN, then add-deltas), done to an on-the-fly upstream's states inside the model, as they are
    done to dumped states read from feats.scp. forward(h (B, T, H), lengths (B,)) -> (B, T,
    H * (delta_order + 1)); differentiable, so a fine-tuned upstream trains through it."""

    def __init__(self, cmvn: bool, delta_order: int = 0, delta_window: int = 2):
        super().__init__()
        self.cmvn, self.delta_order, self.delta_window = bool(cmvn), int(delta_order), int(delta_window)

    def out_dim(self, dim: int) -> int:
        return dim * (self.delta_order + 1)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from s3prl.features.cmvn import utterance_cmvn_batch
        from s3prl.features.deltas import add_deltas_batch

        if self.cmvn:
            h = utterance_cmvn_batch(h, lengths)
        return add_deltas_batch(h, lengths, self.delta_order, self.delta_window) if self.delta_order else h

    def extra_repr(self) -> str:
        return f"cmvn={self.cmvn}, delta_order={self.delta_order}, delta_window={self.delta_window}"


class DownstreamModel(nn.Module):
    """Head over features, or over an upstream's (selected / weighted) hidden states.

    forward(feats (B, T, D), lengths (B,)) -> logits (B, T, C) for frame heads, (B, C) otherwise.
    With an upstream, `feats` are its input features and its output keeps T (one vector per frame);
    `states` (StateTransform) normalises the selected states before the head. `upstream_lr`: the
    fine-tuned upstream's own lr (`lr_by_prefix`, read by s3prl.train.optim.build_optimizer).
    """

    def __init__(self, head: nn.Module, upstream: nn.Module | None = None, featurizer: nn.Module | None = None,
                 states: StateTransform | None = None, upstream_lr: float | None = None):
        super().__init__()
        self.upstream = upstream
        self.featurizer = featurizer
        self.states = states
        self.head = head
        self.lr_by_prefix = {"upstream.": float(upstream_lr)} if upstream_lr is not None else None

    @property
    def frame_level(self) -> bool:
        return bool(self.head.frame_level)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.upstream is not None:
            out = self.upstream.forward_features(feats, lengths)
            feats = self.featurizer(out.hidden_states).to(lengths.device)
            if self.states is not None:
                feats = self.states(feats, lengths)
        return self.head(feats, lengths)


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) over the entries whose label is not IGNORE_INDEX.

    logits (B, T, C) with labels (B, T), or (B, C) with labels (B,).
    """
    valid = labels != IGNORE_INDEX
    pred = logits.argmax(dim=-1)
    return int(((pred == labels) & valid).sum()), int(valid.sum())


class DownstreamTask(Task):
    """What the downstream tasks' `Task`s share: a `DownstreamModel`, the dev history ([step,
    value] per dev evaluation, for the learning curve) and the checkpoint layout (a frozen
    upstream is not saved with every checkpoint: it is re-read from its own file)."""
    mismatch_hint = "another head or upstream"   # what a checkpoint that does not fit may differ in

    def __init__(self, model: DownstreamModel, save_upstream: bool):
        self.model = model
        self.save_upstream = save_upstream
        self.dev_history: list[list[float]] = []
        self.current_step = lambda: 0

    def checkpoint_state(self) -> dict:
        sd = {k: v for k, v in self.model.state_dict().items()
              if self.save_upstream or not k.startswith("upstream.")}
        return {"model": sd, "dev_history": [list(x) for x in self.dev_history]}

    def load_checkpoint_state(self, ckpt: dict) -> None:
        missing, unexpected = self.model.load_state_dict(ckpt["model"], strict=False)
        bad = [k for k in missing if self.save_upstream or not k.startswith("upstream.")] + list(unexpected)
        if bad:
            raise UserError(f"checkpoint does not match the model (e.g. key '{bad[0]}'): was it written with "
                            f"{self.mismatch_hint}?")
        self.dev_history = [list(x) for x in ckpt.get("dev_history", [])]


class ClassificationTask(DownstreamTask):
    """Frame- or utterance-level classification (the `Task` interface of the trainer)."""
    best_metric = "accuracy"
    metric_mode = "max"

    def __init__(self, model: DownstreamModel, num_classes: int, save_upstream: bool):
        super().__init__(model, save_upstream)
        self.num_classes = num_classes

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        flat_logits = logits.reshape(-1, logits.shape[-1]).float()
        flat = labels.reshape(-1)
        n = int((flat != IGNORE_INDEX).sum())
        loss = F.cross_entropy(flat_logits, flat, ignore_index=IGNORE_INDEX, reduction="sum")
        return loss / max(n, 1), n

    def training_step(self, model: nn.Module, batch, generator: torch.Generator) -> StepOutput | None:
        b = batch.to(self.device)
        logits = model(b.feats, b.lengths)
        loss, n = self._loss(logits, b.labels)
        if n == 0:
            return None
        correct, counted = accuracy_counts(logits.detach(), b.labels)
        return StepOutput(loss=loss, num_elements=float(n), logs={"accuracy": correct / max(counted, 1)})

    def evaluate(self, model: nn.Module, loader) -> dict[str, float]:
        correct = counted = 0
        loss_sum = 0.0
        with torch.no_grad():
            for batch in loader:
                b = batch.to(self.device)
                logits = model(b.feats, b.lengths)
                loss, n = self._loss(logits, b.labels)
                loss_sum += float(loss) * n
                c, k = accuracy_counts(logits, b.labels)
                correct += c
                counted += k
        if counted == 0:
            raise UserError("evaluation set has no labelled frames")
        acc = correct / counted
        self.dev_history.append([int(self.current_step()), acc])
        return {"accuracy": acc, "loss": loss_sum / counted, "count": float(counted)}


# ------------------------------------------------------------------------------------------------
@dataclass
class RunInputs:
    """Where a run's data come from (command-line arguments of train_downstream).

    label_dir: the CPC label dir. feats_dir: a data dir whose feats.scp holds ready representations
    (dump dir or Kaldi features). data_dir: a data dir (wav.scp, or feats.scp for upstreams trained
    on external features) fed through `upstream` on the fly. upstream: checkpoint path or baseline
    name; with feats_dir it only names (and is checked against) the upstream the dump recorded.
    name: the upstream's name in the results tables and results.json (default: from `upstream`),
    to tell apart two runs of one upstream that differ in their config (fbank read with global and
    with per-utterance CMVN).
    """
    label_dir: str
    feats_dir: str | None = None
    data_dir: str | None = None
    upstream: str | None = None
    name: str | None = None

    @staticmethod
    def add_arguments(p) -> None:
        """The command-line options of a task on labelled utterances (TaskSpec.add_arguments)."""
        p.add_argument("--labels", required=True, metavar="DIR",
                       help="label directory (CPC: converted_aligned_phones.txt, train/test_split.txt; "
                            "sentiment: utt2sentiment, train/dev/test.list)")
        src = p.add_mutually_exclusive_group(required=True)
        src.add_argument("--feats", metavar="DIR", help="data dir with dumped representations (feats.scp)")
        src.add_argument("--data", metavar="DIR", help="data dir to run --upstream on the fly")
        p.add_argument("--upstream", help="checkpoint path or baseline name (fbank, mfcc)")
        p.add_argument("--upstream-name", metavar="NAME",
                       help="the upstream's name in RESULTS.md and results.json (default: from --upstream), "
                            "e.g. fbank_uttcmvn for fbank read with another CMVN")

    @classmethod
    def from_args(cls, args) -> "RunInputs":
        return cls(label_dir=args.labels, feats_dir=args.feats, data_dir=args.data, upstream=args.upstream,
                   name=getattr(args, "upstream_name", None))

    def resolved(self) -> dict:
        from s3prl.dump import source_identity

        out = {"labels": str(Path(self.label_dir).resolve()),
               "feats": str(Path(self.feats_dir).resolve()) if self.feats_dir else None,
               "data": str(Path(self.data_dir).resolve()) if self.data_dir else None,
               "upstream": self.upstream}
        if self.name:   # only when given: runs made before the option existed keep their hash
            out["name"] = self.name
        made_by = source_identity(self.feats_dir) if self.feats_dir else source_identity(upstream=self.upstream)
        if made_by:
            out["made_by"] = made_by
        return out

    def fingerprint_sources(self):
        """What the run reads, for its fingerprints (s3prl.downstream.fingerprint)."""
        from s3prl.downstream.fingerprint import Sources

        return Sources(dirs={"data": str(self.feats_dir or self.data_dir)}, on_the_fly=not self.feats_dir,
                       upstream=self.upstream, labels=self.label_dir)


def upstream_label(name: str) -> str:
    """Short upstream name for tables: a checkpoint path becomes ``<dir>/<stem>``."""
    p = Path(name)
    if p.suffix in (".ckpt", ".pt", ".pth") or p.is_file():
        return f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem
    return name


@dataclass
class Representation:
    """Where a run's frames come from, as `build_*_run` uses it.

    name / layer: the upstream and layer as the results tables show them. upstream / featurizer:
    the model run on the fly (None for dumped or Kaldi features). features: the upstream's input
    feature config for FeatureDataset (None: the data dir's feats.scp). recorded: the upstream a
    dump dir recorded (None on the fly or for plain Kaldi feature dirs). fine_tune: the upstream
    trains with the head (and is then saved in every checkpoint).
    """
    name: str
    layer: str
    upstream: nn.Module | None = None
    featurizer: nn.Module | None = None
    features: object = None
    recorded: str | None = None
    fine_tune: bool = False
    states: StateTransform | None = None
    upstream_lr: float | None = None

    @property
    def save_upstream(self) -> bool:
        return bool(self.upstream is not None and self.fine_tune)

    @property
    def learned(self) -> bool:
        """An on-the-fly upstream with a model (not a parameter-free baseline such as fbank)."""
        return self.upstream is not None and getattr(self.upstream, "model", None) is not None

    def input_dim(self, dataset) -> int:
        """Width of the head's input: the upstream's hidden size (times 1 + delta order), or the
        dataset's feature dim."""
        if self.upstream is None:
            return dataset.features.dim
        h = int(self.upstream.hidden_size)
        return self.states.out_dim(h) if self.states is not None else h

    def model(self, head: nn.Module) -> DownstreamModel:
        return DownstreamModel(head, self.upstream, self.featurizer, self.states, self.upstream_lr)


def dumped_representation(feats_dir: str, upstream: str | None, default_layer) -> Representation:
    """Ready representations in `feats_dir`/feats.scp; a named `upstream` must be the one the dump
    recorded (s3prl.dump.same_upstream). `default_layer`: shown when none is recorded."""
    info = read_dump_info(feats_dir) or {}
    recorded = info.get("upstream")
    if upstream and recorded and not same_upstream(upstream, info):
        raise UserError(f"{feats_dir}: dumped from upstream '{recorded}', not '{upstream}'")
    return Representation(name=upstream_label(str(upstream or recorded or Path(feats_dir).name)),
                          layer=str(info.get("layer", default_layer)), recorded=recorded)


def on_the_fly_representation(upstream: str | None, input_cfg, device: str, option: str,
                              check: Callable | None = None, dataloader=None) -> Representation:
    """`upstream` (checkpoint or baseline name) loaded to run inside the model, frozen or
    fine-tuned per `input_cfg` (InputConfig, incl. the dump's chunk context); `check(upstream)` may
    refuse it. `option`: the command-line option that asked for on-the-fly features (named when
    --upstream is missing). `dataloader` (DataConfig): its per-utterance CMVN and deltas go to the
    states (StateTransform); a baseline's states are its features, which the dataset normalises."""
    if not upstream:
        raise UserError(f"{option} needs --upstream (a checkpoint or a baseline: fbank, mfcc)")
    from s3prl.upstream.hub import Featurizer, apply_chunk_context, load_upstream

    model = load_upstream(upstream, device=device, fine_tune=input_cfg.fine_tune)
    if check is not None:
        check(model)
    apply_chunk_context(model, input_cfg.chunk_context, "input.chunk_context")
    featurizer = Featurizer(model, layer=input_cfg.layer, normalize=input_cfg.normalize)
    states = None
    if dataloader is not None:
        learned = model.model is not None
        if learned and dataloader.cmvn in ("speaker", "global"):
            raise UserError(f"dataloader.cmvn: '{dataloader.cmvn}' CMVN of an upstream's states needs dumped "
                            f"representations (their cmvn.scp / training-set statistics); on the fly use "
                            f"'utterance' or 'none'")
        cmvn = learned and dataloader.cmvn == "utterance"
        if cmvn or dataloader.delta_order:
            states = StateTransform(cmvn, dataloader.delta_order, dataloader.delta_window)
    return Representation(name=upstream_label(upstream),
                          layer=str(input_cfg.layer) + ("+ft" if input_cfg.fine_tune else ""),
                          upstream=model, featurizer=featurizer,
                          features=model.feature_config,   # None: the upstream reads the dir's feats.scp
                          fine_tune=input_cfg.fine_tune, states=states, upstream_lr=input_cfg.upstream_lr)


def representation_of(inputs: RunInputs, input_cfg, device: str, check: Callable | None = None,
                      dataloader=None) -> Representation:
    """The representation `inputs` asks for: dumped (--feats) or on the fly (--data + --upstream)."""
    if bool(inputs.feats_dir) == bool(inputs.data_dir):
        raise UserError("give exactly one of --feats (dumped representations) and --data (run the upstream on the fly)")
    if inputs.feats_dir:
        rep = dumped_representation(inputs.feats_dir, inputs.upstream, input_cfg.layer)
    else:
        rep = on_the_fly_representation(inputs.upstream, input_cfg, device, "--data", check, dataloader)
    if getattr(inputs, "name", None):
        rep.name = inputs.name
    return rep


def feature_dataset(data_dir: str, dc, rep: Representation, *, utts: list[str] | None = None, train: bool = False,
                    max_timestep: bool = True, global_stats=None):
    """The FeatureDataset of one split as a downstream config's `dataloader` section (DataConfig
    `dc`) says: CMVN, deltas, cache; `max_timestep` (policy drop) on the training split only, and
    only where the task honours it.

    For an upstream run on the fly the dataset serves what the dump stage feeds it (the upstream's
    own features from its audio section; external features with the dir's cmvn.scp means, as
    `s3prl.dump.extract`), and the CMVN and deltas apply to its states in the model
    (`Representation.states`); a baseline's (fbank ...) states are its features, normalised here."""
    from s3prl.data.dataset import FeatureDataset

    cmvn, norm_vars, delta_order = dc.cmvn, dc.norm_vars, dc.delta_order
    if rep.upstream is not None and rep.states is None and (delta_order or (rep.learned and cmvn == "utterance")):
        raise ValueError("on-the-fly representation built without the dataloader section its states need "
                         "(on_the_fly_representation(..., dataloader=...))")
    if rep.upstream is not None:
        delta_order = 0   # Representation.states
        if rep.learned:
            cmvn = "speaker" if rep.features is None and (Path(data_dir) / "cmvn.scp").is_file() else "none"
            norm_vars, global_stats = False, None
    return FeatureDataset(data_dir, features=rep.features, cmvn=cmvn, norm_vars=norm_vars,
                          max_timestep=dc.max_timestep if train and max_timestep else 0, max_timestep_policy="drop",
                          seed=dc.seed, utts=utts, cache=dc.cache_features, global_stats=global_stats,
                          delta_order=delta_order, delta_window=dc.delta_window)


def check_frame_rate(upstream, where: str, labels: str = "the CPC labels") -> None:
    """Refuse an on-the-fly upstream whose frames are not 10 ms, the frames of `labels`."""
    # A 12.5 ms representation (mel160) cannot line up with 10 ms labels (S3PRL issue #44).
    if upstream is not None and int(upstream.hop_samples) != 160:
        raise UserError(f"{where}: upstream '{upstream.name}' gives one frame per {upstream.hop_samples} "
                        f"samples; {labels} need 10 ms frames (160 samples at 16 kHz)")


def check_dump_frame_shift(feats_dir: str, upstream: str | None, labels: str = "the CPC labels") -> None:
    """Refuse features that are not at 10 ms (the dir's `frame_shift` file, in seconds; mel160)."""
    if upstream == "mel160":
        raise UserError(f"{feats_dir}: mel160 features run at 12.5 ms and do not line up with the 10 ms frames "
                        f"of {labels} (S3PRL issue #44)")
    p = Path(feats_dir) / "frame_shift"
    if p.is_file():
        try:
            shift = float(p.read_text().split()[0])
        except (ValueError, IndexError):
            raise UserError(f"{p}: expected the frame shift in seconds") from None
        if abs(shift - 0.01) > 1e-6:
            raise UserError(f"{p}: frame shift {shift:g} s; {labels} need 10 ms frames")


def build_run(cfg: DownstreamConfig, inputs: RunInputs, exp_dir: str | Path | None = None, device: str = "cpu"):
    """-> (task, {split: LabeledFeatureDataset}, info dict with upstream/layer names). (`exp_dir`:
    TaskSpec.build's argument, not used here.)"""
    splits = cpc_splits(inputs.label_dir, cfg.labels.split_seed, cfg.labels.train_proportion)
    if cfg.task == "phone":
        labels = phone_labels(inputs.label_dir, splits, cfg.labels.num_phone_classes)
        num_classes = cfg.labels.num_phone_classes
        label_source = str(Path(inputs.label_dir) / PHONE_FILE)
    else:
        labels, speakers = speaker_task_labels(splits, inputs.label_dir)
        num_classes = len(speakers)
        label_source = str(Path(inputs.label_dir))
    rep = representation_of(inputs, cfg.input, device, check=lambda up: check_frame_rate(up, "--upstream"),
                            dataloader=cfg.dataloader)
    if inputs.feats_dir:
        check_dump_frame_shift(inputs.feats_dir, rep.recorded or inputs.upstream)
    data_dir = inputs.feats_dir or inputs.data_dir

    frame_labels = bool(HEADS[cfg.head.name].frame_level)
    datasets = {}
    stats = None   # cmvn "global": the training split's statistics normalise every split
    for name in ("train", "dev", "test"):
        fd = feature_dataset(data_dir, cfg.dataloader, rep, utts=splits[name], train=name == "train",
                             global_stats=stats)
        stats = fd.global_stats
        datasets[name] = LabeledFeatureDataset(fd, labels[name], frame_labels=frame_labels,
                                               max_mismatch=cfg.labels.max_frame_mismatch,
                                               label_source=label_source)
    input_dim = rep.input_dim(datasets["train"])
    head = build_head(cfg.head, input_dim, num_classes)
    task = ClassificationTask(rep.model(head), num_classes, save_upstream=rep.save_upstream)
    info = {"upstream": rep.name, "layer": rep.layer, "num_classes": num_classes, "input_dim": input_dim,
            "num_utts": {k: len(v) for k, v in datasets.items()}}
    log.info("%s task, %s head, %d classes, input dim %d, utterances %s", cfg.task, cfg.head.name,
             info["num_classes"], info["input_dim"], info["num_utts"])
    return task, datasets, info


def _loader(dataset: LabeledFeatureDataset, batch_size: int, cfg: DownstreamConfig):
    return eval_loader(dataset, batch_size, cfg.dataloader, collate_labeled)


def run_downstream(cfg: DownstreamConfig, inputs: RunInputs, exp_dir: str | Path, *,
                   results_md: str | Path | None = None, command: str | None = None,
                   device: str | None = None, progress: bool = True) -> dict:
    """Train, select the best dev step, score test there, write results; returns the record.

    Skip-if-complete: an exp dir whose results.json carries the same config hash is returned as
    is (its RESULTS.md row is refreshed). An exp dir holding a run of another config is refused.
    (The scaffolding is s3prl.downstream.runner.run_task.)
    """
    return run_spec(PHONE if cfg.task == "phone" else SPEAKER, cfg, inputs, exp_dir, results_md=results_md,
                    command=command, device=device, progress=progress)


def _score(task: ClassificationTask, trainer: Trainer, datasets: dict, info: dict, chash: str, history: list[dict],
           *, cfg: DownstreamConfig, inputs: RunInputs, exp_dir: Path, command: str | None) -> dict:
    """Evaluate dev and test at the best-dev checkpoint (the final model if dev was never run)."""
    best = load_best_dev(task, trainer, exp_dir)
    dev = task.evaluate(task.model, _loader(datasets["dev"], cfg.dataloader.dev_batch_size, cfg))
    test = task.evaluate(task.model, _loader(datasets["test"], cfg.dataloader.dev_batch_size, cfg))
    record = {
        "task": cfg.task, "upstream": info["upstream"], "layer": info["layer"], "head": cfg.head.name,
        "dev_accuracy": dev["accuracy"], "test_accuracy": test["accuracy"],
        **run_fields(best, chash, command, exp_dir, cfg=cfg, inputs=inputs),
        "num_classes": info["num_classes"], "num_utts": info["num_utts"],
        "metric": "frame accuracy" if task.model.frame_level else "utterance accuracy",
        "dev_count": int(dev["count"]), "test_count": int(test["count"]),
    }
    finish_run(exp_dir, record, history, [(int(s), a) for s, a in best.dev_history], best,
               title=f"{cfg.task} {cfg.head.name} on {info['upstream']} ({info['layer']})")
    log.info("%s %s: dev %.2f %%, test %.2f %% at best-dev step %d", cfg.task, cfg.head.name,
             100 * record["dev_accuracy"], 100 * record["test_accuracy"], best.step)
    return record


def describe(record: dict) -> str:
    return (f"{record['task']} {record['head']} {record['upstream']} ({record['layer']}): "
            f"dev {100 * record['dev_accuracy']:.2f} % test {100 * record['test_accuracy']:.2f} % "
            f"(best-dev step {record['best_step']} of {record['steps']})")


def _classification(name: str) -> TaskSpec:
    return TaskSpec(name=name, config=DownstreamConfig, add_arguments=RunInputs.add_arguments,
                    inputs=RunInputs.from_args, build=build_run, score=_score, collate_fn=collate_labeled,
                    table=CLASSIFICATION, describe=describe)


PHONE = _classification("phone")
SPEAKER = _classification("speaker")


__all__ = ["PHONE", "SPEAKER",
           "DownstreamModel", "StateTransform", "DownstreamTask", "ClassificationTask", "RunInputs", "Representation",
           "dumped_representation", "on_the_fly_representation", "representation_of", "check_frame_rate",
           "check_dump_frame_shift", "build_run", "run_downstream",
           "accuracy_counts", "describe"]
