"""The DNN of the hybrid DNN-HMM system: a frame-level downstream head over fbank or an upstream's
dumped representation, trained on the pdf ids of the monophone alignments, decoded through HCLG.

Hybrid recipe of Kaldi's nnet1 (kaldi-asr/kaldi egs/wsj/s5/local/nnet/run_dnn.sh: ali-to-pdf
targets, frame cross-entropy, ``--class-frame-counts`` priors, latgen-faster-mapped) and of
PyTorch-Kaldi (Ravanelli et al. 2019, ICASSP, Sec. 2: the DNN's log-posteriors minus the log-priors
counted on the training alignments are the HMM's scaled likelihoods). The training itself is the
downstream trainer's (s3prl.downstream.runner.run_task: resume, best-dev checkpoint,
skip-if-complete) with its ClassificationTask, heads and LabeledFeatureDataset; only the labels
(pdf ids of ``ali.*.gz`` through the model's transition ids), the number of classes (pdfs) and the
scoring (decoding with the LM weight chosen on dev, WER/CER on test) are this module's.

Priors: ``p(pdf) = (count(pdf) + 1) / (N + num_pdfs)`` over the training alignments
(add-one smoothed frame counts, as nnet-forward's ``--class-frame-counts`` with a floor).
Scores: ``log_softmax(logits) - log p(pdf)`` (Kaldi's prior scale 1.0), times the acoustic scale
``1 / LMWT``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import yaml

from s3prl.data.alignments import iter_alignments
from s3prl.downstream.config import DownstreamConfig
from s3prl.downstream.data import LabeledFeatureDataset, collate_labeled
from s3prl.downstream.heads import build_head
from s3prl.downstream.results import TableSpec
from s3prl.downstream.runner import RunSpec, eval_loader, finish_run, load_best_dev, run_fields, run_task
from s3prl.downstream.task import ClassificationTask, feature_dataset, representation_of, RunInputs
from s3prl.errors import UserError
from s3prl.hybrid import decode
from s3prl.hybrid.gmm import MonoModel

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
REQUIRED = ("task", "upstream", "layer", "head", "dev_accuracy", "test_accuracy", "best_step", "steps",
            "config_hash", "command", "test_wer", "test_cer", "lmwt")


def _hybrid_row(record: dict, exp_label: str | None = None) -> list[str]:
    fa = record.get("frame_agreement")
    cells = [str(record["task"]), str(record["upstream"]), str(record["layer"]), str(record["head"]),
             "-" if record.get("dev_accuracy") is None else f"{100 * record['dev_accuracy']:.2f}",
             f"{record['dev_wer']:.2f}", f"{record['test_wer']:.2f}", f"{record['test_cer']:.2f}", str(record["lmwt"]),
             "-" if not fa else f"{100 * fa['agreement']:.2f}",
             exp_label if exp_label is not None else str(record.get("exp_dir", "-"))]
    return [c.replace("|", "\\|").replace("\n", " ") for c in cells]


TABLE_REQUIRED = ("task", "upstream", "layer", "head", "dev_wer", "test_wer", "test_cer", "lmwt")
HYBRID_TABLE = TableSpec(
    begin="<!-- hybrid-results:begin -->", end="<!-- hybrid-results:end -->",
    title="## Speech recognition, hybrid DNN-HMM (monophone HMM, lattice-faster decoding on HCLG with a "
          "3-gram LM of the training transcripts; WER/CER %)",
    columns=("task", "upstream", "layer", "head", "dev pdf acc %", "dev WER", "test WER (dev LMWT)", "test CER",
             "LMWT", "frame agreement %", "exp"),
    key_columns=4, required=TABLE_REQUIRED, row=_hybrid_row)


@dataclass
class HybridInputs:
    """feats: {split: data dir with feats.scp}; ali: {split: alignment dir (ali.*.gz, final.pt)};
    graph: dir with HCLG.fst; upstream: fbank or the upstream checkpoint the dump came from."""
    feats: dict
    ali: dict
    graph: str
    upstream: str | None = None

    def resolved(self) -> dict:
        return {"feats": {k: str(Path(v).resolve()) for k, v in self.feats.items()},
                "ali": {k: str(Path(v).resolve()) for k, v in self.ali.items()},
                "graph": str(Path(self.graph).resolve()), "upstream": self.upstream}


def pdf_targets(ali_dir: str | Path, model: MonoModel) -> dict[str, np.ndarray]:
    """ali-to-pdf: {utt: int64 pdf ids} of an alignment dir."""
    out = {}
    for utt, tids, path in iter_alignments(ali_dir):
        if tids.min() < 1 or tids.max() >= len(model.tid2pdf):
            raise UserError(f"{path}: utterance {utt}: transition ids outside the model's 1..{len(model.tid2pdf) - 1}")
        out[utt] = model.tid2pdf[tids].astype(np.int64)
    return out


def log_priors(targets: dict[str, np.ndarray], num_pdfs: int) -> np.ndarray:
    counts = np.zeros(num_pdfs, dtype=np.float64)
    for t in targets.values():
        counts += np.bincount(t, minlength=num_pdfs)
    return np.log((counts + 1.0) / (counts.sum() + num_pdfs))


def build_hybrid_run(cfg: DownstreamConfig, inputs: HybridInputs, device):
    model = MonoModel.load(Path(inputs.ali["train"]) / "final.pt")
    labels = {s: pdf_targets(inputs.ali[s], model) for s in SPLITS}
    rep = representation_of(RunInputs(label_dir="", feats_dir=inputs.feats["train"], upstream=inputs.upstream),
                            cfg.input, device)
    datasets, stats = {}, None
    for s in SPLITS:
        fd = feature_dataset(inputs.feats[s], cfg.dataloader, rep, utts=sorted(labels[s]), train=s == "train",
                             global_stats=stats)
        stats = fd.global_stats
        datasets[s] = LabeledFeatureDataset(fd, labels[s], frame_labels=True,
                                            max_mismatch=cfg.labels.max_frame_mismatch,
                                            label_source=str(inputs.ali[s]))
    input_dim = rep.input_dim(datasets["train"])
    head = build_head(cfg.head, input_dim, model.num_pdfs)
    task = ClassificationTask(rep.model(head), model.num_pdfs, save_upstream=rep.save_upstream)
    info = {"upstream": rep.name, "layer": rep.layer, "num_classes": model.num_pdfs, "input_dim": input_dim,
            "num_utts": {k: len(v) for k, v in datasets.items()}, "model": model,
            "log_priors": log_priors(labels["train"], model.num_pdfs)}
    log.info("hybrid DNN: %s head, %d pdfs, input dim %d, utterances %s", cfg.head.name, model.num_pdfs,
             input_dim, info["num_utts"])
    return task, datasets, info


def scaled_log_likelihoods(task: ClassificationTask, dataset, cfg: DownstreamConfig,
                           log_prior: np.ndarray) -> dict[str, np.ndarray]:
    """{utt: (T, num_pdfs) log p(pdf | x) - log p(pdf)} of every utterance of `dataset`."""
    out = {}
    loader = eval_loader(dataset, cfg.dataloader.dev_batch_size, cfg.dataloader, collate_labeled)
    with torch.no_grad():
        for batch in loader:
            b = batch.to(task.device)
            logp = torch.log_softmax(task.model(b.feats, b.lengths).float(), dim=-1).cpu().numpy()
            for i, u in enumerate(b.utts):
                out[u] = logp[i, :int(b.lengths[i])] - log_prior[None]
    return out


def _score(task, trainer, datasets, info, chash, history, *, cfg: DownstreamConfig, inputs: HybridInputs,
           exp_dir: Path, command: str | None, lmwts, beam: float) -> dict:
    best = load_best_dev(task, trainer, exp_dir)
    acc = {s: task.evaluate(task.model, eval_loader(datasets[s], cfg.dataloader.dev_batch_size, cfg.dataloader,
                                                     collate_labeled)) for s in ("dev", "test")}
    model = info["model"]
    decoder = decode.Decoder(inputs.graph, model, beam=beam)
    res = {}
    for s in ("dev", "test"):
        ll = scaled_log_likelihoods(task, datasets[s], cfg, info["log_priors"])
        refs = decode.read_refs(inputs.feats[s])
        refs = {u: refs[u] for u in ll}
        make = decode.mapped_decodable(model, ll)
        if s == "dev":
            lmwt, dev_wer = decode.tune_lmwt(decoder, make, refs, exp_dir / "decode_dev", lmwts)
        else:
            res = decode.decode_test(decoder, make, refs, exp_dir / "decode_test", lmwt)
    record = {"task": "hybrid", "upstream": info["upstream"], "layer": info["layer"], "head": cfg.head.name,
              "dev_accuracy": acc["dev"]["accuracy"], "test_accuracy": acc["test"]["accuracy"],
              **run_fields(best, chash, command, exp_dir), "num_pdfs": info["num_classes"],
              "num_utts": info["num_utts"], "lmwt": lmwt, "dev_wer": dev_wer, "test_wer": res["wer"],
              "test_cer": res["cer"], "test_wer_counts": res["wer_counts"], "metric": "pdf frame accuracy"}
    finish_run(exp_dir, record, history, [(int(s), a) for s, a in best.dev_history], best,
               title=f"hybrid DNN {cfg.head.name} on {info['upstream']}", required=REQUIRED)
    log.info("hybrid DNN %s: pdf accuracy dev %.2f %%, test WER %.2f %% CER %.2f %% (LMWT %d)",
             info["upstream"], 100 * record["dev_accuracy"], res["wer"], res["cer"], lmwt)
    return record


def run_hybrid_dnn(cfg: DownstreamConfig, inputs: HybridInputs, exp_dir: str | Path, *, command: str | None = None,
                   device: str | None = None, progress: bool = True, lmwts=decode.DEFAULT_LMWTS,
                   results_md: str | Path | None = None, beam: float = 11.0) -> dict:
    """Train the DNN on the alignments' pdfs, decode dev (LM weight) and test; skip if complete."""
    exp_dir = Path(exp_dir)
    from s3prl.config import to_dict
    config_text = yaml.safe_dump({**to_dict(cfg), "inputs": inputs.resolved(), "lmwts": list(lmwts), "beam": beam},
                                 sort_keys=False)
    spec = RunSpec(build=partial(build_hybrid_run, cfg, inputs), collate_fn=collate_labeled, seed=cfg.runner.seed,
                   score=partial(_score, cfg=cfg, inputs=inputs, exp_dir=exp_dir, command=command, lmwts=lmwts,
                                 beam=beam),
                   required=REQUIRED, table=HYBRID_TABLE, lock_name="train_hybrid_dnn")
    return run_task(spec, config_text, cfg, exp_dir, results_md=results_md, device=device, progress=progress)
