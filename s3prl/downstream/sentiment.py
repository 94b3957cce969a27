"""Sentiment on spoken content: CMU-MOSEI 2-class, 7-class and regression on the one trainer.

The Mockingjay paper (Liu et al., ICASSP 2020, Table 2) evaluates representations on CMU-MOSEI
2-class sentiment with its one-layer RNN classifier (every 5th frame -> GRU 32 -> final state ->
ReLU layer, dropout 0.5 -> linear; S3PRL issue #35); today's S3PRL uses mean-pool + linear
(github.com/s3prl/s3prl v0.4.18, s3prl/downstream/mosei/). Both heads come from
s3prl.downstream.heads (``rnn`` and ``utterance``), the representations from the same paths as the
phone/speaker tasks (s3prl.downstream.task.DownstreamModel): dumped features or Kaldi features
(``--feats``), or an upstream run on the fly (``--data`` + ``--upstream``; frozen, learned weighted
sum, fine-tuned).

Data: a Kaldi data dir with `segments` (s3prl.data.mosei.prepare_mosei) and its label dir
(utt2sentiment, train/dev/test.list: a video-level split). Label modes (`labels.mode`):
``2class`` (score > 0), ``7class`` (trunc(score) + 3), ``regression`` (the score); see
s3prl.data.mosei for the exact boundaries. Inputs are cut to `labels.max_frames` (5000, as S3PRL).

Loss and metrics: cross-entropy and accuracy (selects best-dev.ckpt) for the classes; L1 loss on
the score, mean absolute error (selects best-dev.ckpt, lower is better), Pearson correlation and
the accuracy of the predicted sign for regression. Test is scored at the best-dev checkpoint.
Results: ``<exp>/results.json`` and one row per (labels, upstream, layer, head) in the sentiment
table of RESULTS.md (`SENTIMENT_TABLE`, with s3prl.downstream.results).

Config (YAML, merged over the defaults below like s3prl.downstream.config):

```yaml
task: sentiment
labels: {mode: 2class, max_frames: 5000}
head: {name: rnn}            # rnn | utterance
input: {layer: last, fine_tune: false}
optimizer: {name: Adam, lr: 4.0e-3, schedule: constant, gradient_clipping: 1.0}
runner: {total_steps: 500000, dev_step: 10000, ...}
dataloader: {batch_size: 6, dev_batch_size: 12, cmvn: none}
```
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s3prl.data.mosei import LABEL_MODES, NUM_CLASSES, read_sentiment_labels, sentiment_label
from s3prl.downstream.config import TaskConfig, load_task_config
from s3prl.downstream.data import FeatureView, collate_labeled
from s3prl.downstream.heads import HeadConfig, build_head
from s3prl.downstream.results import TableSpec, percent, table_row
from s3prl.downstream.runner import TaskSpec, eval_loader, finish_run, load_best_dev, run_fields, run_spec
from s3prl.downstream.task import DownstreamModel, DownstreamTask, RunInputs, feature_dataset, representation_of
from s3prl.errors import UserError
from s3prl.train.trainer import StepOutput, Trainer

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ config
@dataclass
class SentimentLabelConfig:
    """mode: 2class | 7class | regression. max_frames: inputs are cut to this many frames (S3PRL: 5000)."""
    mode: str = "2class"
    max_frames: int = 5000

    def __post_init__(self):
        if self.mode not in LABEL_MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(LABEL_MODES)}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


def _rnn_head() -> HeadConfig:
    return HeadConfig(name="rnn")


@dataclass
class SentimentConfig(TaskConfig):
    """The sentiment YAML (the module docstring): TaskConfig's sections, the 2020 protocol defaults."""
    task: Literal["sentiment"] = "sentiment"
    head: HeadConfig = field(default_factory=_rnn_head)
    labels: SentimentLabelConfig = field(default_factory=SentimentLabelConfig)

    heads_by_task: ClassVar[dict[str, tuple[str, ...]]] = {"sentiment": ("rnn", "utterance")}
    yaml_order: ClassVar[tuple[str, ...]] = ("task", "head", "input", "labels", "optimizer", "runner", "dataloader")


def load_sentiment_config(path=None, overrides: list[str] | None = None) -> SentimentConfig:
    """Load a sentiment YAML over the defaults, then `overrides` (``a.b=v``); ConfigErrors name file and key."""
    return load_task_config(SentimentConfig, path, overrides)


# ------------------------------------------------------------------------------------ data
class SentimentDataset(FeatureView):
    """(T, D) features of a FeatureDataset with one target per utterance: an int class or a float
    score. Features are cut to `max_frames`. Items: {"utt", "feats", "label"} for collate_labeled."""

    def __init__(self, features, targets: dict[str, int | float], max_frames: int = 5000, source: str = "labels"):
        self.features = features
        self.utts = list(features.utts)
        missing = [u for u in self.utts if u not in targets]
        if missing:
            raise UserError(f"{source}: no sentiment score for utterance '{missing[0]}' ({len(missing)} missing)")
        self.targets = {u: targets[u] for u in self.utts}
        self.max_frames = max_frames
        self.lengths = [min(int(n), max_frames) for n in features.lengths]

    def __getitem__(self, i: int) -> dict:
        item = self.features[i]
        utt = item["utt"]
        y = self.targets[utt]
        label = torch.tensor(y, dtype=torch.float32 if isinstance(y, float) else torch.long)
        return {"utt": utt, "feats": item["feats"][: self.max_frames].contiguous(), "label": label}


# ------------------------------------------------------------------------------------ metrics
def pearson(x, y) -> float:
    """Pearson correlation of two equal-length sequences; NaN when either is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


def sentiment_metrics(mode: str, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Metrics of a whole set: outputs (N, C) logits or (N,) predicted scores, targets (N,).

    Classes: accuracy. Regression: mae, pearson, accuracy (sign of prediction vs sign of score,
    score > 0 being positive as in 2class)."""
    n = int(targets.shape[0])
    if n == 0:
        raise UserError("evaluation set is empty")
    if mode == "regression":
        pred = outputs.reshape(-1).double()
        t = targets.double()
        return {"mae": float((pred - t).abs().mean()), "pearson": pearson(pred.tolist(), t.tolist()),
                "accuracy": float(((pred > 0) == (t > 0)).double().mean()), "count": float(n)}
    pred = outputs.argmax(dim=-1)
    return {"accuracy": float((pred == targets).double().mean()), "count": float(n)}


class SentimentTask(DownstreamTask):
    """Utterance-level sentiment classification or regression (the trainer's Task interface)."""
    mismatch_hint = "another head, label mode or upstream"

    def __init__(self, model: DownstreamModel, mode: str, save_upstream: bool):
        super().__init__(model, save_upstream)
        self.mode = mode
        self.best_metric = "mae" if mode == "regression" else "accuracy"
        self.metric_mode = "min" if mode == "regression" else "max"

    def _loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.mode == "regression":
            return F.l1_loss(out.reshape(-1).float(), labels.float())
        return F.cross_entropy(out.float(), labels)

    def training_step(self, model: nn.Module, batch, generator: torch.Generator) -> StepOutput | None:
        b = batch.to(self.device)
        out = model(b.feats, b.lengths)
        loss = self._loss(out, b.labels)
        m = sentiment_metrics(self.mode, out.detach(), b.labels)
        return StepOutput(loss=loss, num_elements=float(len(b)), logs={self.best_metric: m[self.best_metric]})

    def predict(self, model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor, list[str], float]:
        """(outputs, targets, utts, mean loss) over a loader, in loader order."""
        outs, tgts, utts, loss_sum = [], [], [], 0.0
        with torch.no_grad():
            for batch in loader:
                b = batch.to(self.device)
                out = model(b.feats, b.lengths)
                loss_sum += float(self._loss(out, b.labels)) * len(b)
                outs.append(out.float().cpu())
                tgts.append(b.labels.cpu())
                utts += list(b.utts)
        if not utts:
            raise UserError("evaluation set is empty")
        return torch.cat(outs), torch.cat(tgts), utts, loss_sum / len(utts)

    def evaluate(self, model: nn.Module, loader) -> dict[str, float]:
        outs, tgts, _, loss = self.predict(model, loader)
        m = sentiment_metrics(self.mode, outs, tgts)
        m["loss"] = loss
        self.dev_history.append([int(self.current_step()), m[self.best_metric]])
        return {k: v for k, v in m.items() if v == v}   # NaN (undefined Pearson) is not logged


# ------------------------------------------------------------------------------------ results table
def _num(x) -> str:
    return "-" if x is None else f"{float(x):.3f}"


def sentiment_row(record: dict, exp_label: str | None = None) -> list[str]:
    """The RESULTS.md cells of one sentiment run."""
    return table_row([str(record["labels"]), str(record["upstream"]), str(record["layer"]), str(record["head"]),
                      percent(record.get("dev_accuracy")), percent(record.get("test_accuracy")),
                      _num(record.get("dev_mae")), _num(record.get("test_mae")), _num(record.get("test_pearson"))],
                     record, exp_label, fingerprints=True)


SENTIMENT_REQUIRED = ("task", "labels", "upstream", "layer", "head", "dev_accuracy", "test_accuracy", "best_step",
                      "steps", "config_hash", "command")
SENTIMENT_TABLE = TableSpec(
    begin="<!-- sentiment-results:begin -->", end="<!-- sentiment-results:end -->",
    title="## Sentiment (CMU-MOSEI protocol: segments of 1-20 s with |score| >= 0.1, video-level split, seed 29)",
    columns=("labels", "upstream", "layer", "head", "dev acc %", "test acc % (best dev)", "dev MAE",
             "test MAE", "test Pearson r", "best step", "steps", "config", "fingerprints", "exp"),
    key_columns=4, required=SENTIMENT_REQUIRED, row=sentiment_row)


# ------------------------------------------------------------------------------------ runs
def build_sentiment_run(cfg: SentimentConfig, inputs: RunInputs, exp_dir: str | Path | None = None,
                        device: str = "cpu"):
    """-> (task, {split: SentimentDataset}, info dict with upstream/layer names)."""
    mode = cfg.labels.mode
    scores, splits = read_sentiment_labels(inputs.label_dir)
    targets = {u: sentiment_label(s, mode) for u, s in scores.items()}
    rep = representation_of(inputs, cfg.input, device, dataloader=cfg.dataloader)
    data_dir = inputs.feats_dir or inputs.data_dir
    dc = cfg.dataloader
    source = str(Path(inputs.label_dir) / "utt2sentiment")
    datasets = {}
    stats = None   # cmvn "global": the training split's statistics normalise every split
    for name in ("train", "dev", "test"):
        # No max_timestep here: labels.max_frames cuts long segments (SentimentDataset).
        fd = feature_dataset(data_dir, dc, rep, utts=splits[name], max_timestep=False, global_stats=stats)
        stats = fd.global_stats
        datasets[name] = SentimentDataset(fd, targets, cfg.labels.max_frames, source)
    input_dim = rep.input_dim(datasets["train"])
    num_out = NUM_CLASSES[mode]
    head = build_head(cfg.head, input_dim, num_out)
    task = SentimentTask(rep.model(head), mode, save_upstream=rep.save_upstream)
    info = {"upstream": rep.name, "layer": rep.layer, "num_outputs": num_out, "input_dim": input_dim,
            "num_utts": {k: len(v) for k, v in datasets.items()}}
    log.info("sentiment %s, %s head, input dim %d, utterances %s", mode, cfg.head.name, input_dim, info["num_utts"])
    return task, datasets, info


def _loader(dataset: SentimentDataset, batch_size: int, cfg: SentimentConfig):
    return eval_loader(dataset, batch_size, cfg.dataloader, collate_labeled)


def run_sentiment(cfg: SentimentConfig, inputs: RunInputs, exp_dir: str | Path, *,
                  results_md: str | Path | None = None, command: str | None = None,
                  device: str | None = None, progress: bool = True) -> dict:
    """Train, select the best dev step, score dev and test there, write results; returns the record.

    Skip-if-complete: an exp dir whose results.json carries the same config hash (config + inputs)
    is returned as is (its RESULTS.md row is refreshed); one holding another config is refused.
    (The scaffolding is s3prl.downstream.runner.run_task.)
    """
    return run_spec(SENTIMENT, cfg, inputs, exp_dir, results_md=results_md, command=command, device=device,
                    progress=progress)


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x else float(x)


def _score(task: SentimentTask, trainer: Trainer, datasets: dict, info: dict, chash: str, history: list[dict],
           *, cfg: SentimentConfig, inputs: RunInputs, exp_dir: Path, command: str | None) -> dict:
    """Evaluate dev and test at the best-dev checkpoint (the final model if dev never ran)."""
    from s3prl.atomic import atomic_write_text

    best = load_best_dev(task, trainer, exp_dir)
    mode = cfg.labels.mode
    res, lines = {}, []
    for name in ("dev", "test"):
        outs, tgts, utts, _ = task.predict(task.model, _loader(datasets[name], cfg.dataloader.dev_batch_size, cfg))
        res[name] = sentiment_metrics(mode, outs, tgts)
        pred = outs.reshape(-1) if mode == "regression" else outs.argmax(-1)
        lines += [f"{name} {u} {float(t):g} {float(p):.4g}\n" for u, t, p in zip(utts, tgts.tolist(), pred.tolist())]
    atomic_write_text(exp_dir / "predictions.txt", "".join(sorted(lines)))
    regression = mode == "regression"
    record = {
        "task": "sentiment", "labels": mode, "upstream": info["upstream"], "layer": info["layer"],
        "head": cfg.head.name,
        "dev_accuracy": res["dev"]["accuracy"], "test_accuracy": res["test"]["accuracy"],
        "dev_mae": res["dev"]["mae"] if regression else None, "test_mae": res["test"]["mae"] if regression else None,
        "test_pearson": _finite(res["test"]["pearson"]) if regression else None,
        "dev_pearson": _finite(res["dev"]["pearson"]) if regression else None,
        **run_fields(best, chash, command, exp_dir, cfg=cfg, inputs=inputs),
        "num_outputs": info["num_outputs"], "num_utts": info["num_utts"],
        "metric": "mae" if regression else "utterance accuracy",
        "dev_count": int(res["dev"]["count"]), "test_count": int(res["test"]["count"]),
    }
    # plot_learning_curve shows dev values x 100 (accuracy in %); MAE is passed / 100 to plot as is.
    dev_curve = [(int(s), v / 100.0 if regression else v) for s, v in best.dev_history]
    finish_run(exp_dir, record, history, dev_curve, best,
               title=f"sentiment {mode} {cfg.head.name} on {info['upstream']} ({info['layer']})",
               dev_label="dev MAE" if regression else "dev accuracy %", required=SENTIMENT_REQUIRED)
    log.info("%s", describe(record))
    return record


def describe(record: dict) -> str:
    if record.get("labels") == "regression":
        r = record.get("test_pearson")
        return (f"sentiment regression {record['head']} {record['upstream']} ({record['layer']}): dev MAE "
                f"{record['dev_mae']:.3f} test MAE {record['test_mae']:.3f} r {'-' if r is None else f'{r:.3f}'} "
                f"(best-dev step {record['best_step']} of {record['steps']})")
    return (f"sentiment {record['labels']} {record['head']} {record['upstream']} ({record['layer']}): "
            f"dev {100 * record['dev_accuracy']:.2f} % test {100 * record['test_accuracy']:.2f} % "
            f"(best-dev step {record['best_step']} of {record['steps']})")


SENTIMENT = TaskSpec(name="sentiment", config=SentimentConfig, add_arguments=RunInputs.add_arguments,
                     inputs=RunInputs.from_args, build=build_sentiment_run, score=_score, collate_fn=collate_labeled,
                     table=SENTIMENT_TABLE, describe=describe)


__all__ = ["SentimentConfig", "SentimentLabelConfig", "load_sentiment_config", "SentimentDataset", "SentimentTask",
           "sentiment_metrics", "pearson", "SENTIMENT_TABLE", "sentiment_row", "build_sentiment_run",
           "run_sentiment", "describe", "SENTIMENT"]
