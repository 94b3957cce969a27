"""Downstream classification runs (phone / speaker, CPC protocol) on the one trainer.

`DownstreamModel` = [frozen or fine-tuned upstream + Featurizer] + head; `ClassificationTask`
plugs it into `s3prl.train.trainer.Trainer` (cross-entropy over valid frames or utterances,
accuracy as the dev metric that selects ``best-dev.ckpt``); `run_downstream` is the whole run:
splits and labels, datasets, training with resume, test scored at the best-dev checkpoint (the
number S3PRL 2020 reported, reference/s3prl.md §4), results.json, the RESULTS.md row and the
learning-curve PNG.
"""
from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from s3prl.config import to_dict
from s3prl.data.labels import PHONE_FILE, cpc_splits
from s3prl.downstream.config import DownstreamConfig
from s3prl.downstream.data import (IGNORE_INDEX, LabeledFeatureDataset, collate_labeled, read_dump_info,
                                   same_upstream)
from s3prl.downstream.heads import build_head
from s3prl.downstream.phone import phone_labels
from s3prl.downstream.results import (config_hash, plot_learning_curve, read_results, update_results_md,
                                      write_results)
from s3prl.downstream.speaker import speaker_task_labels
from s3prl.errors import UserError
from s3prl.train.trainer import BEST_NAME, StepOutput, Task, Trainer

log = logging.getLogger(__name__)


class DownstreamModel(nn.Module):
    """Head over features, or over an upstream's (selected / weighted) hidden states.

    forward(feats (B, T, D), lengths (B,)) -> logits (B, T, C) for frame heads, (B, C) otherwise.
    With an upstream, `feats` are its input features and its output keeps T (one vector per frame).
    """

    def __init__(self, head: nn.Module, upstream: nn.Module | None = None, featurizer: nn.Module | None = None):
        super().__init__()
        self.upstream = upstream
        self.featurizer = featurizer
        self.head = head

    @property
    def frame_level(self) -> bool:
        return bool(self.head.frame_level)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.upstream is not None:
            out = self.upstream.forward_features(feats, lengths)
            feats = self.featurizer(out.hidden_states).to(lengths.device)
        return self.head(feats, lengths)


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) over the entries whose label is not IGNORE_INDEX.

    logits (B, T, C) with labels (B, T), or (B, C) with labels (B,).
    """
    valid = labels != IGNORE_INDEX
    pred = logits.argmax(dim=-1)
    return int(((pred == labels) & valid).sum()), int(valid.sum())


class ClassificationTask(Task):
    """Frame- or utterance-level classification (the `Task` interface of the trainer)."""
    best_metric = "accuracy"
    metric_mode = "max"

    def __init__(self, model: DownstreamModel, num_classes: int, save_upstream: bool):
        self.model = model
        self.num_classes = num_classes
        self.save_upstream = save_upstream
        self.dev_history: list[list[float]] = []   # [step, accuracy] per dev evaluation
        self.current_step = lambda: 0

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

    def checkpoint_state(self) -> dict:
        # A frozen upstream is not saved with every checkpoint: it is re-read from its own file.
        sd = {k: v for k, v in self.model.state_dict().items()
              if self.save_upstream or not k.startswith("upstream.")}
        return {"model": sd, "dev_history": [list(x) for x in self.dev_history]}

    def load_checkpoint_state(self, ckpt: dict) -> None:
        missing, unexpected = self.model.load_state_dict(ckpt["model"], strict=False)
        bad = [k for k in missing if self.save_upstream or not k.startswith("upstream.")] + list(unexpected)
        if bad:
            raise UserError(f"checkpoint does not match the model (e.g. key '{bad[0]}'): was it written with "
                            f"another head or upstream?")
        self.dev_history = [list(x) for x in ckpt.get("dev_history", [])]


# ------------------------------------------------------------------------------------------------
@dataclass
class RunInputs:
    """Where a run's data come from (command-line arguments of train_downstream).

    label_dir: the CPC label dir. feats_dir: a data dir whose feats.scp holds ready representations
    (dump dir or Kaldi features). data_dir: a data dir (wav.scp, or feats.scp for upstreams trained
    on external features) fed through `upstream` on the fly. upstream: checkpoint path or baseline
    name; with feats_dir it only names (and is checked against) the upstream the dump recorded.
    """
    label_dir: str
    feats_dir: str | None = None
    data_dir: str | None = None
    upstream: str | None = None

    def resolved(self) -> dict:
        return {"labels": str(Path(self.label_dir).resolve()),
                "feats": str(Path(self.feats_dir).resolve()) if self.feats_dir else None,
                "data": str(Path(self.data_dir).resolve()) if self.data_dir else None,
                "upstream": self.upstream}


def resolved_config_yaml(cfg: DownstreamConfig, inputs: RunInputs) -> str:
    """The text hashed for skip-if-complete: the full config plus the resolved inputs."""
    return yaml.safe_dump({**to_dict(cfg), "inputs": inputs.resolved()}, sort_keys=False)


def upstream_label(name: str) -> str:
    """Short upstream name for tables: a checkpoint path becomes ``<dir>/<stem>``."""
    p = Path(name)
    if p.suffix in (".ckpt", ".pt", ".pth") or p.is_file():
        return f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem
    return name


def _feature_dataset(data_dir: str, utts: list[str], cfg: DownstreamConfig, features=None, train: bool = False):
    from s3prl.data.dataset import FeatureDataset

    dc = cfg.dataloader
    return FeatureDataset(data_dir, features=features, cmvn=dc.cmvn, norm_vars=dc.norm_vars,
                          max_timestep=dc.max_timestep if train else 0, max_timestep_policy="drop",
                          seed=dc.seed, utts=utts)


def _check_frame_rate(upstream, where: str) -> None:
    # The CPC labels are 10 ms frames; a 12.5 ms representation (mel160) cannot line up (issue #44).
    if upstream is not None and int(upstream.downsample_rate) != 160:
        raise UserError(f"{where}: upstream '{upstream.name}' gives one frame per {upstream.downsample_rate} "
                        f"samples; the CPC labels need 10 ms frames (160 samples at 16 kHz)")


def _check_dump_frame_shift(feats_dir: str, upstream: str | None) -> None:
    """Refuse features that are not at 10 ms (the dir's `frame_shift` file, in seconds; mel160)."""
    if upstream == "mel160":
        raise UserError(f"{feats_dir}: mel160 features run at 12.5 ms and do not line up with the 10 ms CPC "
                        f"labels (S3PRL issue #44)")
    p = Path(feats_dir) / "frame_shift"
    if p.is_file():
        try:
            shift = float(p.read_text().split()[0])
        except (ValueError, IndexError):
            raise UserError(f"{p}: expected the frame shift in seconds") from None
        if abs(shift - 0.01) > 1e-6:
            raise UserError(f"{p}: frame shift {shift:g} s; the CPC labels need 10 ms frames")


def build_run(cfg: DownstreamConfig, inputs: RunInputs, device: str = "cpu"):
    """-> (task, {split: LabeledFeatureDataset}, info dict with upstream/layer names)."""
    splits = cpc_splits(inputs.label_dir, cfg.labels.split_seed, cfg.labels.train_proportion)
    if cfg.task == "phone":
        labels = phone_labels(inputs.label_dir, splits, cfg.labels.num_phone_classes)
        num_classes = cfg.labels.num_phone_classes
        label_source = str(Path(inputs.label_dir) / PHONE_FILE)
    else:
        labels, speakers = speaker_task_labels(splits, inputs.label_dir)
        num_classes = len(speakers)
        label_source = str(Path(inputs.label_dir))
    if bool(inputs.feats_dir) == bool(inputs.data_dir):
        raise UserError("give exactly one of --feats (dumped representations) and --data (run the upstream on the fly)")

    upstream = featurizer = None
    features = None
    if inputs.feats_dir:
        info = read_dump_info(inputs.feats_dir) or {}
        recorded = info.get("upstream")
        if inputs.upstream and recorded and not same_upstream(inputs.upstream, info):
            raise UserError(f"{inputs.feats_dir}: dumped from upstream '{recorded}', not '{inputs.upstream}'")
        _check_dump_frame_shift(inputs.feats_dir, recorded or inputs.upstream)
        upstream_name = upstream_label(str(inputs.upstream or recorded or Path(inputs.feats_dir).name))
        layer = str(info.get("layer", cfg.input.layer))
        data_dir = inputs.feats_dir
    else:
        if not inputs.upstream:
            raise UserError("--data needs --upstream (a checkpoint or a baseline: fbank, mfcc)")
        from s3prl.upstream.hub import Featurizer, load_upstream

        upstream = load_upstream(inputs.upstream, device=device, fine_tune=cfg.input.fine_tune)
        _check_frame_rate(upstream, "--upstream")
        featurizer = Featurizer(upstream, layer=cfg.input.layer, normalize=cfg.input.normalize)
        features = upstream.feature_config   # None: the upstream reads the dir's feats.scp
        upstream_name = upstream_label(inputs.upstream)
        layer = str(cfg.input.layer) + ("+ft" if cfg.input.fine_tune else "")
        data_dir = inputs.data_dir

    frame_labels = cfg.head.name in ("linear", "1hidden", "concat", "frame")
    datasets = {}
    for name in ("train", "dev", "test"):
        fd = _feature_dataset(data_dir, splits[name], cfg, features, train=name == "train")
        datasets[name] = LabeledFeatureDataset(fd, labels[name], frame_labels=frame_labels,
                                               max_mismatch=cfg.labels.max_frame_mismatch,
                                               label_source=label_source)
    input_dim = upstream.hidden_size if upstream is not None else datasets["train"].features.dim
    head = build_head(cfg.head, input_dim, num_classes)
    model = DownstreamModel(head, upstream, featurizer)
    task = ClassificationTask(model, num_classes, save_upstream=bool(upstream is not None and cfg.input.fine_tune))
    info = {"upstream": upstream_name, "layer": layer, "num_classes": num_classes, "input_dim": input_dim,
            "num_utts": {k: len(v) for k, v in datasets.items()}}
    return task, datasets, info


def _loader(dataset: LabeledFeatureDataset, batch_size: int, cfg: DownstreamConfig):
    from s3prl.data.sampler import BucketBatchSampler

    sampler = BucketBatchSampler(dataset.bucket_lengths(), batch_size, shuffle=False,
                                 half_batch_above=cfg.dataloader.half_batch_above)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_labeled,
                                       num_workers=cfg.dataloader.num_workers)


def run_downstream(cfg: DownstreamConfig, inputs: RunInputs, exp_dir: str | Path, *,
                   results_md: str | Path | None = None, command: str | None = None,
                   device: str | None = None, progress: bool = True) -> dict:
    """Train, select the best dev step, score test there, write results; returns the record.

    Skip-if-complete: an exp dir whose results.json carries the same config hash is returned as
    is (its RESULTS.md row is refreshed). An exp dir holding a run of another config is refused.
    """
    from s3prl.atomic import StageLock, atomic_write_text
    from s3prl.data.sampler import BucketBatchSampler
    from s3prl.train import distributed as D

    exp_dir = Path(exp_dir)
    text = resolved_config_yaml(cfg, inputs)
    chash = config_hash(text)
    done = read_results(exp_dir)
    if done is not None and done.get("config_hash") == chash:
        log.info("%s: complete (results.json, config %s)", exp_dir, chash)
        if results_md:
            update_results_md(results_md, done, str(exp_dir))
        return {**done, "skipped": True}
    cfg_file = exp_dir / "config.yaml"
    if cfg_file.is_file() and config_hash(cfg_file.read_text(encoding="utf-8")) != chash:
        raise UserError(f"{cfg_file}: {exp_dir} holds a run with another config or inputs; use a new exp dir "
                        f"or remove it")

    dist = D.init_distributed(device)
    with StageLock(exp_dir, "train_downstream") if dist.is_main else contextlib.nullcontext():
        if dist.is_main:
            atomic_write_text(cfg_file, text)
        from s3prl.train.trainer import seed_everything
        seed_everything(cfg.runner.seed)  # the head's initialisation comes from the config's seed
        task, datasets, info = build_run(cfg, inputs, device=dist.device)
        log.info("%s task, %s head, %d classes, input dim %d, utterances %s", cfg.task, cfg.head.name,
                 info["num_classes"], info["input_dim"], info["num_utts"])
        train = datasets["train"]
        sampler = BucketBatchSampler(train.bucket_lengths(), cfg.dataloader.batch_size, seed=cfg.dataloader.seed,
                                     shuffle=True, half_batch_above=cfg.dataloader.half_batch_above,
                                     rank=dist.rank, world_size=dist.world_size)
        dev_loader = _loader(datasets["dev"], cfg.dataloader.dev_batch_size, cfg)
        trainer = Trainer(task, train_data=train, collate_fn=collate_labeled, sampler=sampler,
                          optimizer_cfg=cfg.optimizer, runner_cfg=cfg.runner, exp_dir=exp_dir, dist=dist,
                          dev_loader=dev_loader, num_workers=cfg.dataloader.num_workers, progress=progress)
        task.current_step = lambda: trainer.step
        trainer.resume()
        history = trainer.fit()
        record = None
        if dist.is_main:
            record = _score(task, trainer, datasets, cfg, info, exp_dir, chash, command, history)
            if results_md:
                update_results_md(results_md, record, str(exp_dir))
        D.barrier()
    return record or {}


def _score(task: ClassificationTask, trainer: Trainer, datasets: dict, cfg: DownstreamConfig, info: dict,
           exp_dir: Path, chash: str, command: str | None, history: list[dict]) -> dict:
    """Evaluate dev and test at the best-dev checkpoint (the final model if dev was never run)."""
    dev_history = [list(x) for x in task.dev_history]
    best = exp_dir / BEST_NAME
    best_step = trainer.step
    if best.is_file():
        st = task.read_checkpoint(best)
        best_step = int(st["step"])
    task.model.to(trainer.device).eval()
    task.current_step = lambda: best_step
    dev = task.evaluate(task.model, _loader(datasets["dev"], cfg.dataloader.dev_batch_size, cfg))
    test = task.evaluate(task.model, _loader(datasets["test"], cfg.dataloader.dev_batch_size, cfg))
    record = {
        "task": cfg.task, "upstream": info["upstream"], "layer": info["layer"], "head": cfg.head.name,
        "dev_accuracy": dev["accuracy"], "test_accuracy": test["accuracy"], "best_step": best_step,
        "steps": trainer.step, "config_hash": chash,
        "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "num_classes": info["num_classes"], "num_utts": info["num_utts"],
        "metric": "frame accuracy" if task.model.frame_level else "utterance accuracy",
        "dev_count": int(dev["count"]), "test_count": int(test["count"]),
        "exp_dir": str(exp_dir),
    }
    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h and h["loss"] == h["loss"]]
    plot_learning_curve(exp_dir / "learning_curve.png", train_curve, [(int(s), a) for s, a in dev_history],
                        title=f"{cfg.task} {cfg.head.name} on {info['upstream']} ({info['layer']})",
                        best_step=best_step if best.is_file() else None)
    write_results(exp_dir, record)
    log.info("%s %s: dev %.2f %%, test %.2f %% at best-dev step %d", cfg.task, cfg.head.name,
             100 * record["dev_accuracy"], 100 * record["test_accuracy"], best_step)
    return record


def describe(record: dict) -> str:
    return (f"{record['task']} {record['head']} {record['upstream']} ({record['layer']}): "
            f"dev {100 * record['dev_accuracy']:.2f} % test {100 * record['test_accuracy']:.2f} % "
            f"(best-dev step {record['best_step']} of {record['steps']})")


__all__ = ["DownstreamModel", "ClassificationTask", "RunInputs", "build_run", "run_downstream", "accuracy_counts",
           "resolved_config_yaml", "describe"]
