"""The DNN of the hybrid DNN-HMM system: a frame-level downstream head over fbank or an upstream's
dumped representation, trained on the pdf ids of the monophone alignments, decoded through HCLG.

Hybrid recipe of Kaldi's nnet1 (kaldi-asr/kaldi egs/wsj/s5/local/nnet/run_dnn.sh: ali-to-pdf
targets, frame cross-entropy, ``--class-frame-counts`` priors, latgen-faster-mapped) and of
PyTorch-Kaldi (Ravanelli et al. 2019, ICASSP, Sec. 2: the DNN's log-posteriors minus the log-priors
counted on the training alignments are the HMM's scaled likelihoods). The training itself is the
downstream trainer's (s3prl.downstream.runner.run_task: resume, best-dev checkpoint,
skip-if-complete) with its ClassificationTask, heads and LabeledFeatureDataset; only the labels
(pdf ids of ``ali.*.gz`` through the model's transition ids), the number of classes (pdfs) and the
scoring (decoding with the LM weight chosen on dev, WER/CER on test) are this module's. The task's
config, inputs and results table are s3prl.downstream.hybrid (``train_downstream --task hybrid``).

Inputs: dumped representations (or fbank) read from feats.scp, or an upstream run on the fly inside
the model (frozen: one layer or the learned weighted sum of all layers; or fine-tuned with the
head), as every downstream task reads them (s3prl.downstream.task.representation_of).

Priors: ``p(pdf) = (count(pdf) + 1) / (N + num_pdfs)`` over the training alignments
(add-one smoothed frame counts, as nnet-forward's ``--class-frame-counts`` with a floor).
Scores: ``log_softmax(logits) - log p(pdf)`` (Kaldi's prior scale 1.0), times the acoustic scale
``1 / LMWT``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from s3prl.data.alignments import iter_alignments
from s3prl.downstream.data import LabeledFeatureDataset, collate_labeled
from s3prl.downstream.heads import build_head
from s3prl.downstream.hybrid import HYBRID, REQUIRED, SPLITS, HybridConfig, HybridInputs
from s3prl.downstream.runner import eval_loader, finish_run, load_best_dev, run_fields, run_spec
from s3prl.downstream.task import (ClassificationTask, check_dump_frame_shift, check_frame_rate, dumped_representation,
                                   feature_dataset, on_the_fly_representation)
from s3prl.errors import UserError
from s3prl.hybrid import decode
from s3prl.hybrid.gmm import MonoModel

log = logging.getLogger(__name__)
ALI = "the GMM alignments"


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


def representation(cfg: HybridConfig, inputs: HybridInputs, device):
    """The DNN's input: the training dir's feats.scp (checked against --upstream and the 10 ms
    frame shift of the alignments), or --upstream on the fly (frozen layer / weighted sum, or
    fine-tuned) with the config's CMVN and deltas applied to its states."""
    if inputs.on_the_fly:
        return on_the_fly_representation(inputs.upstream, cfg.input, device, "--on-the-fly",
                                         check=lambda up: check_frame_rate(up, "--upstream", ALI),
                                         dataloader=cfg.dataloader)
    rep = dumped_representation(inputs.feats["train"], inputs.upstream, cfg.input.layer)
    check_dump_frame_shift(inputs.feats["train"], rep.recorded or inputs.upstream, ALI)
    return rep


def build_hybrid_run(cfg: HybridConfig, inputs: HybridInputs, exp_dir=None, device="cpu"):
    """TaskSpec.build of the hybrid task: -> (task, {split: LabeledFeatureDataset of pdf ids, the
    aligned utterances}, info with the GMM model, the log-priors and the datasets decoded: every
    dev/test utterance). (`exp_dir`: not used.)"""
    model = MonoModel.load(Path(inputs.ali["train"]) / "final.pt")
    labels = {s: pdf_targets(inputs.ali[s], model) for s in SPLITS}
    rep = representation(cfg, inputs, device)
    datasets, stats = {}, None
    for s in SPLITS:
        fd = feature_dataset(inputs.feats[s], cfg.dataloader, rep, utts=sorted(labels[s]), train=s == "train",
                             global_stats=stats)
        stats = fd.global_stats
        datasets[s] = LabeledFeatureDataset(fd, labels[s], frame_labels=True,
                                            max_mismatch=cfg.labels.max_frame_mismatch,
                                            label_source=str(inputs.ali[s]))
    # Decoding covers every dev/test utterance with features, aligned or not (WER is over the whole
    # set; the alignments only give the frame accuracy): full-length features, placeholder labels.
    decode_sets = {}
    for s in ("dev", "test"):
        fd = feature_dataset(inputs.feats[s], cfg.dataloader, rep, train=False, global_stats=stats)
        decode_sets[s] = LabeledFeatureDataset(fd, dict.fromkeys(fd.utts, 0), frame_labels=True)
    input_dim = rep.input_dim(datasets["train"])
    head = build_head(cfg.head, input_dim, model.num_pdfs)
    task = ClassificationTask(rep.model(head), model.num_pdfs, save_upstream=rep.save_upstream)
    info = {"upstream": rep.name, "layer": rep.layer, "num_classes": model.num_pdfs, "input_dim": input_dim,
            "num_utts": {k: len(v) for k, v in datasets.items()}, "model": model, "decode_sets": decode_sets,
            "log_priors": log_priors(labels["train"], model.num_pdfs)}
    log.info("hybrid DNN: %s head on %s (%s), %d pdfs, input dim %d, utterances %s", cfg.head.name, rep.name,
             rep.layer, model.num_pdfs, input_dim, info["num_utts"])
    return task, datasets, info


def scaled_log_likelihoods(task: ClassificationTask, dataset, cfg: HybridConfig,
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


def score_hybrid_run(task, trainer, datasets, info, chash, history, *, cfg: HybridConfig, inputs: HybridInputs,
                     exp_dir: Path, command: str | None) -> dict:
    """TaskSpec.score of the hybrid task: pdf accuracy of dev and test (aligned utterances) at the
    best-dev checkpoint, dev decoded (every utterance) at the LM weights of decode.lmwts (ascending,
    until decode.lmwt_patience weights in a row are no better than the best), test at the best one."""
    best = load_best_dev(task, trainer, exp_dir)
    acc = {s: task.evaluate(task.model, eval_loader(datasets[s], cfg.dataloader.dev_batch_size, cfg.dataloader,
                                                     collate_labeled)) for s in ("dev", "test")}
    model = info["model"]
    decoder = decode.Decoder(inputs.graph, model, beam=cfg.decode.beam, lattice_beam=cfg.decode.lattice_beam)
    smap = decode.read_scoring_map(inputs.scoring_map) if inputs.scoring_map else None
    res = {}
    for s in ("dev", "test"):
        ll = scaled_log_likelihoods(task, info["decode_sets"][s], cfg, info["log_priors"])
        refs = decode.read_refs(inputs.feats[s])
        refs = {u: refs[u] for u in ll}
        make = decode.MappedDecodable(model, ll)
        if s == "dev":
            lmwt, dev_wer = decode.tune_lmwt(decoder, make, refs, exp_dir / "decode_dev", tuple(cfg.decode.lmwts),
                                             scoring_map=smap, patience=cfg.decode.lmwt_patience)
        else:
            res = decode.decode_test(decoder, make, refs, exp_dir / "decode_test", lmwt, scoring_map=smap)
    record = {"task": "hybrid", "upstream": info["upstream"], "layer": info["layer"], "head": cfg.head.name,
              "dev_accuracy": acc["dev"]["accuracy"], "test_accuracy": acc["test"]["accuracy"],
              **run_fields(best, chash, command, exp_dir, cfg=cfg), "num_pdfs": info["num_classes"],
              "num_utts": info["num_utts"], "lmwt": lmwt, "dev_wer": dev_wer, "test_wer": res["wer"],
              "test_cer": res["cer"], "test_wer_counts": res["wer_counts"], "metric": "pdf frame accuracy",
              "scoring_map": inputs.scoring_map}
    finish_run(exp_dir, record, history, [(int(s), a) for s, a in best.dev_history], best,
               title=f"hybrid DNN {cfg.head.name} on {info['upstream']} ({info['layer']})", required=REQUIRED)
    log.info("hybrid DNN %s: pdf accuracy dev %.2f %%, test WER %.2f %% CER %.2f %% (LMWT %d)",
             info["upstream"], 100 * record["dev_accuracy"], res["wer"], res["cer"], lmwt)
    return record


def run_hybrid_dnn(cfg: HybridConfig, inputs: HybridInputs, exp_dir: str | Path, *, command: str | None = None,
                   device: str | None = None, progress: bool = True,
                   results_md: str | Path | None = None) -> dict:
    """Train the DNN on the alignments' pdfs, decode dev (LM weight) and test; skip if complete
    (the downstream runner: s3prl.downstream.runner.run_spec of the hybrid TaskSpec)."""
    return run_spec(HYBRID, cfg, inputs, exp_dir, results_md=results_md, command=command, device=device,
                    progress=progress)


__all__ = ["pdf_targets", "log_priors", "representation", "build_hybrid_run", "scaled_log_likelihoods",
           "score_hybrid_run", "run_hybrid_dnn"]
