"""End-to-end CTC speech recognition downstream (BiLSTM + CTC, greedy decoding) on the one trainer.

The model follows S3PRL's ASR downstream (github.com/s3prl/s3prl v0.4.18,
s3prl/downstream/asr/model.py, RNNs; SUPERB, Yang et al., arXiv 2105.01051): representations (dumped
feats.scp, or an upstream run on the fly: frozen, weighted sum, or fine-tuned jointly) -> optional
frame downsampling (``concat``: stack k frames, or ``drop``: keep every k-th) -> a bidirectional
LSTM (2 layers, 1024 units per direction by default, dropout 0.2) -> Linear to the sentencepiece
units (s3prl.downstream.tokenizer, blank = 0) -> CTC loss. Decoding is greedy (best path: argmax per
frame, collapse repeats, drop blanks), no language model. Defaults: Adam lr 1e-4, batch 32, dev WER
every 2000 steps (best-dev = lowest WER, ties broken by CER), 200k steps.

`run_asr` is the whole run: the unit set trained on the training transcripts and saved as
``<exp>/tokenizer.model``; training with resume and best-dev selection through
`s3prl.train.trainer.Trainer`; dev and test decoded at the best-dev checkpoint into
``<exp>/decode_<set>/`` (hyp.txt, ref.txt in Kaldi `text` format, ``wer`` / ``cer`` with the
compute-wer summary line and per-utterance details: s3prl.downstream.scoring); results.json, the
learning-curve PNG and a row of the ASR table in RESULTS.md (s3prl.downstream.results).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from s3prl.downstream.config import TaskConfig, load_task_config
from s3prl.downstream.data import FeatureView
from s3prl.downstream.results import TableSpec, table_row
from s3prl.downstream.runner import TaskSpec, eval_loader, finish_run, load_best_dev, run_fields, run_spec
from s3prl.downstream.task import (ClassificationTask, DownstreamModel, dumped_representation, feature_dataset,
                                   on_the_fly_representation)
from s3prl.downstream.tokenizer import BLANK_ID, MODEL_FILE, Tokenizer, TokenizerConfig, train_tokenizer
from s3prl.errors import UserError
from s3prl.train.config import DataConfig, OptimizerConfig, RunnerConfig
from s3prl.train.trainer import StepOutput, Trainer

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- config
@dataclass
class BiLSTMConfig:
    """The recognizer head. hidden_size: LSTM units per direction; subsampling k >= 1 with
    subsampling_style concat (k frames stacked into one, kD wide) or drop (every k-th frame)."""

    RENAMED_KEYS = {"downsample_rate": "subsampling", "downsample_style": "subsampling_style"}
    hidden_size: int = 1024
    num_layers: int = 2
    dropout: float = 0.2
    subsampling: int = 1
    subsampling_style: Literal["concat", "drop"] = "concat"

    def __post_init__(self):
        if self.hidden_size < 1 or self.num_layers < 1 or self.subsampling < 1:
            raise ValueError("hidden_size, num_layers and subsampling must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _optimizer() -> OptimizerConfig:
    return OptimizerConfig(name="Adam", lr=1e-4, weight_decay=0.0, schedule="constant", warmup_proportion=0.0,
                           gradient_clipping=1.0)


def _runner() -> RunnerConfig:
    return RunnerConfig(total_steps=200000, log_step=100, save_step=2000, dev_step=2000, max_keep=2)


def _data() -> DataConfig:
    return DataConfig(batch_size=32, dev_batch_size=32)


@dataclass
class AsrConfig(TaskConfig):
    """The ASR downstream YAML (conf/downstream/asr_bilstm.yaml). selection: the dev error rate
    that picks the best-dev checkpoint, wer (S3PRL's) or cer (the other breaks ties); cer suits
    short runs whose WER still sits near 100 % and moves by noise while CER falls steadily."""
    task: Literal["asr"] = "asr"
    selection: Literal["wer", "cer"] = "wer"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: BiLSTMConfig = field(default_factory=BiLSTMConfig)
    optimizer: OptimizerConfig = field(default_factory=_optimizer)
    runner: RunnerConfig = field(default_factory=_runner)
    dataloader: DataConfig = field(default_factory=_data)

    heads_by_task: ClassVar[dict[str, tuple[str, ...]]] = {"asr": ("bilstm",)}   # the `model` section
    yaml_order: ClassVar[tuple[str, ...]] = ("task", "selection", "tokenizer", "model", "input", "optimizer", "runner",
                                             "dataloader")


def load_asr_config(path=None, overrides: list[str] | None = None) -> AsrConfig:
    """The YAML merged section by section over the ASR defaults, then ``a.b=v`` overrides
    (ConfigErrors name the file and key)."""
    return load_task_config(AsrConfig, path, overrides)


# -------------------------------------------------------------------------------------- model
def downsample(x: torch.Tensor, lengths: torch.Tensor, rate: int, style: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D), lengths (B,) -> (B, ceil(T/rate), D*rate for concat | D for drop), ceil(lengths/rate).

    concat pads T with zero frames up to a multiple of `rate`; an utterance's last output frame
    may thus hold zeros in place of missing frames."""
    if rate == 1:
        return x, lengths
    b, t, d = x.shape
    out_len = torch.div(lengths + rate - 1, rate, rounding_mode="floor")
    if style == "drop":
        return x[:, ::rate], out_len
    # Frames past an utterance's end are zeroed so that whatever pads a batch never reaches it.
    valid = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]
    x = x * valid[:, :, None].to(x.dtype)
    pad = (-t) % rate
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(b, (t + pad) // rate, d * rate), out_len


class BiLSTMCTCHead(nn.Module):
    """Frames (B, T, D) + lengths (B,) -> unit logits (B, T', V) (T' = ceil(T / subsampling)).

    Padding frames never influence valid outputs; `output_lengths` gives T' per utterance.

    The BiLSTM runs layer by layer and direction by direction on the padded batch instead of on
    packed sequences: the forward direction is causal, so padding after an utterance never reaches
    its valid frames; the backward direction runs over each utterance reversed within its own
    length (padding again at the end) and is reversed back; padded outputs are zeroed. That is the
    packed computation (equal to float rounding, tests/downstream/test_asr.py) through torch's
    fused CPU LSTM, whose training backward is ~5x faster than the packed-sequence one (B 8 x 220
    frames, 480 -> 2 x 2 x 128: 0.14 vs 0.70 s at one thread). The parameters are the
    `nn.LSTM`'s (`lstm.weight_ih_l0`, `..._reverse`), dropout between layers as nn.LSTM's."""
    frame_level = True

    def __init__(self, input_dim: int, vocab_size: int, cfg: BiLSTMConfig):
        super().__init__()
        self.cfg = cfg
        in_dim = input_dim * (cfg.subsampling if cfg.subsampling_style == "concat" else 1)
        self.lstm = nn.LSTM(in_dim, cfg.hidden_size, num_layers=cfg.num_layers, bidirectional=True,
                            batch_first=True, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.hidden_size, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        r = self.cfg.subsampling
        return torch.div(lengths + r - 1, r, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, out_len = downsample(x, lengths, self.cfg.subsampling, self.cfg.subsampling_style)
        return self.out(self.dropout(self._bilstm(x, out_len.clamp(min=1).to(x.device))))

    def _bilstm(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """nn.LSTM(bidirectional) over (B, T, D) with per-utterance lengths, padding excluded
        (class docstring)."""
        lstm, (b, t, _) = self.lstm, x.shape
        steps = torch.arange(t, device=x.device)[None, :]
        valid = steps < lengths[:, None]
        rev = torch.where(valid, lengths[:, None] - 1 - steps, steps)[..., None]   # (B, T, 1)

        def flip(y: torch.Tensor) -> torch.Tensor:   # reverse each utterance within its length
            return y.gather(1, rev.expand_as(y))

        zeros = x.new_zeros(1, b, lstm.hidden_size)
        h = x
        for layer in range(lstm.num_layers):
            if layer:
                h = F.dropout(h, lstm.dropout, self.training)
            ws = [[getattr(lstm, f"{n}_l{layer}{d}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                  for d in ("", "_reverse")]
            fwd, _, _ = torch.lstm(h, (zeros, zeros), ws[0], True, 1, 0.0, self.training, False, True)
            bwd, _, _ = torch.lstm(flip(h), (zeros, zeros), ws[1], True, 1, 0.0, self.training, False, True)
            h = torch.cat((fwd, flip(bwd)), dim=-1) * valid[..., None].to(x.dtype)
        return h


def ctc_greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK_ID) -> list[list[int]]:
    """Best-path CTC decoding: (B, T, V) scores + lengths (B,) -> per utterance the unit ids of
    the argmax path with repeats collapsed and blanks removed (a blank separates repeats)."""
    best = logits.argmax(dim=-1).cpu()
    out = []
    for b in range(best.shape[0]):
        path = best[b, : int(lengths[b])].tolist()
        ids, prev = [], None
        for p in path:
            if p != prev and p != blank:
                ids.append(p)
            prev = p
        out.append(ids)
    return out


def ctc_min_frames(ids: list[int]) -> int:
    """Fewest CTC frames that can emit `ids`: one per unit plus a blank between equal neighbours."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


# --------------------------------------------------------------------------------------- data
@dataclass
class CTCBatch:
    feats: torch.Tensor            # (B, T, D) zero padded
    lengths: torch.Tensor          # (B,) valid frames
    targets: torch.Tensor          # (B, S) unit ids, zero padded
    target_lengths: torch.Tensor   # (B,)
    utts: list[str]

    def to(self, device) -> "CTCBatch":
        return CTCBatch(self.feats.to(device), self.lengths.to(device), self.targets.to(device),
                        self.target_lengths.to(device), self.utts)

    def __len__(self) -> int:
        return len(self.utts)


class TranscribedDataset(FeatureView):
    """A FeatureDataset (s3prl.data.dataset) paired with its data dir's `text` as unit ids.

    Every transcript is encoded when the dataset is built, so text outside the unit set fails
    before training with a UserError naming the utterance."""

    def __init__(self, features, tokenizer: Tokenizer):
        self.features = features
        self.utts = list(features.utts)
        text_path = Path(features.path) / "text"
        text = features.dd.text
        if text is None:
            raise UserError(f"{text_path}: missing (ASR needs the transcripts of {features.path})")
        missing = [u for u in self.utts if u not in text]
        if missing:
            raise UserError(f"{text_path}: no transcript for utterance '{missing[0]}' ({len(missing)} missing)")
        self.text = {u: " ".join(text[u].split()) for u in self.utts}
        self.tokens = {u: tokenizer.encode(self.text[u], utt=u, where=str(text_path)) for u in self.utts}
        self.lengths = list(features.lengths)

    def __getitem__(self, i: int) -> dict:
        item = self.features[i]
        return {"utt": item["utt"], "feats": item["feats"],
                "tokens": torch.tensor(self.tokens[item["utt"]], dtype=torch.long)}


def collate_ctc(items: list[dict]) -> CTCBatch:
    feats = [it["feats"] for it in items]
    toks = [it["tokens"] for it in items]
    return CTCBatch(nn.utils.rnn.pad_sequence(feats, batch_first=True),
                    torch.tensor([f.shape[0] for f in feats], dtype=torch.long),
                    nn.utils.rnn.pad_sequence(toks, batch_first=True) if any(len(t) for t in toks)
                    else torch.zeros(len(items), 1, dtype=torch.long),
                    torch.tensor([len(t) for t in toks], dtype=torch.long), [it["utt"] for it in items])


# --------------------------------------------------------------------------------------- task
class CTCTask(ClassificationTask):
    """CTC training and greedy-decoding WER/CER evaluation (the trainer's `Task`); best dev =
    lowest `selection` error rate (AsrConfig.selection: WER or CER), ties broken by the other
    (metric "selection"). Checkpoint layout as the classification tasks (a frozen upstream is
    not saved)."""
    best_metric = "selection"
    metric_mode = "min"

    def __init__(self, model: DownstreamModel, tokenizer: Tokenizer, save_upstream: bool, selection: str = "wer"):
        super().__init__(model, tokenizer.vocab_size, save_upstream)
        self.tokenizer = tokenizer
        if selection not in ("wer", "cer"):
            raise ValueError(f"selection must be wer or cer, got {selection!r}")
        self.selection = selection

    def _ctc(self, model: nn.Module, b: CTCBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (summed CTC loss over the batch, logits (B, T', V), output lengths (B,))."""
        logits = model(b.feats, b.lengths)
        out_len = self.model.head.output_lengths(b.lengths)
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)   # (T', B, V)
        # zero_infinity: an utterance whose output is too short for its units adds nothing.
        loss = F.ctc_loss(log_probs, b.targets, out_len, b.target_lengths, blank=BLANK_ID, reduction="sum",
                          zero_infinity=True)
        return loss, logits, out_len

    def training_step(self, model: nn.Module, batch: CTCBatch, generator: torch.Generator) -> StepOutput | None:
        b = batch.to(self.device)
        n = int(b.target_lengths.sum())
        if n == 0:
            return None
        loss, _, _ = self._ctc(model, b)
        # Per-unit loss; num_elements lets a distributed run compute the same global mean.
        return StepOutput(loss=loss / n, num_elements=float(n))

    def decode(self, model: nn.Module, loader) -> tuple[dict[str, str], float, int]:
        """Greedy hypotheses of every utterance in `loader` -> ({utt: text}, loss sum, units)."""
        hyps: dict[str, str] = {}
        loss_sum, units = 0.0, 0
        with torch.no_grad():
            for batch in loader:
                b = batch.to(self.device)
                loss, logits, out_len = self._ctc(model, b)
                loss_sum += float(loss)
                units += int(b.target_lengths.sum())
                for utt, ids in zip(b.utts, ctc_greedy_decode(logits, out_len)):
                    hyps[utt] = self.tokenizer.decode(ids)
        return hyps, loss_sum, units

    def evaluate(self, model: nn.Module, loader) -> dict[str, float]:
        from s3prl.downstream.scoring import error_rate

        hyps, loss_sum, units = self.decode(model, loader)
        refs = loader.dataset.text
        wer = error_rate(refs, hyps, "word")
        cer = error_rate(refs, hyps, "char")
        first, second = (wer, cer) if self.selection == "wer" else (cer, wer)
        self.dev_history.append([int(self.current_step()), first.rate / 100.0])
        # The tie-breaker * 1e-6 stays below any step of the first rate on dev sets under 10^5
        # words or characters (rates < 1000 %).
        return {"wer": wer.rate, "cer": cer.rate, "selection": first.rate + 1e-6 * min(second.rate, 999.0),
                "loss": loss_sum / max(units, 1), "count": float(len(hyps))}


# ---------------------------------------------------------------------------------------- run
@dataclass
class AsrInputs:
    """Where a run's data come from. train/dev/test: Kaldi data dirs with `text`; they hold
    ready representations in feats.scp (dump dirs, Kaldi features) unless `on_the_fly`, when
    `upstream` runs on them (wav.scp, or feats.scp for upstreams on external features).
    upstream: checkpoint or baseline name; with dumped features it only names (and is checked
    against) the upstream the dump recorded."""
    train: str
    dev: str
    test: str
    upstream: str | None = None
    on_the_fly: bool = False

    @staticmethod
    def add_arguments(p) -> None:
        """The ASR task's command-line options (TaskSpec.add_arguments)."""
        p.add_argument("--train", required=True, metavar="DIR", help="training data dir (with text)")
        p.add_argument("--dev", required=True, metavar="DIR", help="dev data dir (best-dev selection)")
        p.add_argument("--test", required=True, metavar="DIR", help="test data dir (scored at best dev)")
        p.add_argument("--upstream", help="checkpoint path or baseline name (fbank, mfcc, mel160)")
        p.add_argument("--on-the-fly", action="store_true", help="run --upstream on the data dirs inside the model")

    @classmethod
    def from_args(cls, args) -> "AsrInputs":
        if (args.layer is not None or args.fine_tune) and not args.on_the_fly:
            raise UserError("--layer and --fine-tune need --on-the-fly (dumped features are one fixed layer)")
        return cls(train=args.train, dev=args.dev, test=args.test, upstream=args.upstream, on_the_fly=args.on_the_fly)

    def resolved(self) -> dict:
        from s3prl.dump import source_identity

        out = {"train": str(Path(self.train).resolve()), "dev": str(Path(self.dev).resolve()),
               "test": str(Path(self.test).resolve()), "upstream": self.upstream, "on_the_fly": self.on_the_fly}
        made_by = ([source_identity(upstream=self.upstream)] if self.on_the_fly
                   else [source_identity(d) for d in (self.train, self.dev, self.test)])
        if any(made_by):
            out["made_by"] = made_by
        return out

    def fingerprint_sources(self):
        """What the run reads, for its fingerprints (s3prl.downstream.fingerprint)."""
        from s3prl.downstream.fingerprint import Sources

        return Sources(dirs={"train": self.train, "dev": self.dev, "test": self.test}, on_the_fly=self.on_the_fly,
                       upstream=self.upstream)


def _asr_row(record: dict, exp_label: str | None = None) -> list[str]:
    def pct(x):
        return "-" if x is None else f"{float(x):.2f}"
    return table_row([str(record["task"]), str(record["upstream"]), str(record["layer"]), str(record["head"]),
                      str(record.get("units", "-")), pct(record["dev_wer"]), pct(record["dev_cer"]),
                      pct(record["test_wer"]), pct(record["test_cer"])], record, exp_label, fingerprints=True)


ASR_REQUIRED = ("task", "upstream", "layer", "head", "dev_wer", "dev_cer", "test_wer", "test_cer", "best_step",
                "steps", "config_hash", "command")
ASR_TABLE = TableSpec(
    begin="<!-- asr-results:begin -->", end="<!-- asr-results:end -->",
    title="## Speech recognition (BiLSTM CTC, greedy decoding, no LM; WER/CER %)",
    columns=("task", "upstream", "layer", "head", "units", "dev WER", "dev CER", "test WER (best dev)",
             "test CER", "best step", "steps", "config", "fingerprints", "exp"),
    key_columns=4, required=ASR_REQUIRED, row=_asr_row)


def _dataset(data_dir: str, cfg: AsrConfig, tokenizer: Tokenizer | None, rep, train: bool = False,
             global_stats=None):
    fd = feature_dataset(data_dir, cfg.dataloader, rep, train=train, global_stats=global_stats)
    return fd if tokenizer is None else TranscribedDataset(fd, tokenizer)


def _train_text(data_dir: str) -> list[str]:
    from s3prl.data.kaldi_dir import DataDir

    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"{d}: data directory does not exist")
    text = DataDir(d).text
    if text is None:
        raise UserError(f"{d}/text: missing (ASR needs the training transcripts to build the unit set)")
    return list(text.values())


def build_asr_run(cfg: AsrConfig, inputs: AsrInputs, exp_dir: str | Path, device: str = "cpu"):
    """-> (task, {"train"|"dev"|"test": TranscribedDataset}, info). Trains the unit set on the
    training text (or reads ``<exp>/tokenizer.model`` of an interrupted run) and saves it."""
    exp_dir = Path(exp_dir)
    model_file = exp_dir / MODEL_FILE
    if model_file.is_file():
        tokenizer = Tokenizer(model_file)
    else:
        tokenizer = train_tokenizer(_train_text(inputs.train), cfg.tokenizer, source=f"{inputs.train}/text")
        tokenizer.save(model_file)
        tokenizer.source = str(model_file)

    if inputs.on_the_fly:
        rep = on_the_fly_representation(inputs.upstream, cfg.input, device, "--on-the-fly", dataloader=cfg.dataloader)
    else:
        rep = dumped_representation(inputs.train, inputs.upstream, "-")

    datasets, stats = {}, None   # cmvn "global": the training set's statistics normalise every set
    for name in ("train", "dev", "test"):
        datasets[name] = _dataset(getattr(inputs, name), cfg, tokenizer, rep, train=name == "train",
                                  global_stats=stats)
        d = datasets[name]
        stats = (d.features if isinstance(d, TranscribedDataset) else d).global_stats
    input_dim = rep.input_dim(datasets["train"])
    for name in ("dev", "test"):
        dim = rep.input_dim(datasets[name])
        if dim != input_dim:
            raise UserError(f"{getattr(inputs, name)}/feats.scp: {dim}-dim features, but the training set's "
                            f"are {input_dim}-dim")
    head = BiLSTMCTCHead(input_dim, tokenizer.vocab_size, cfg.model)
    train = datasets["train"]
    short = [u for u, n in zip(train.utts, train.lengths)
             if int(head.output_lengths(torch.tensor([n]))) < ctc_min_frames(train.tokens[u])]
    if short:
        log.warning("%d training utterance(s) have fewer output frames than CTC needs for their units "
                    "(e.g. %s); they add no loss (lower model.subsampling or use BPE units)",
                    len(short), short[0])
    task = CTCTask(rep.model(head), tokenizer, save_upstream=rep.save_upstream, selection=cfg.selection)
    info = {"upstream": rep.name, "layer": rep.layer, "input_dim": input_dim, "vocab_size": tokenizer.vocab_size,
            "units": f"{cfg.tokenizer.mode}{tokenizer.vocab_size}",
            "num_utts": {k: len(v) for k, v in datasets.items()}}
    log.info("asr: bilstm %dx%d, %s units (%d), input dim %d, utterances %s", cfg.model.num_layers,
             cfg.model.hidden_size, cfg.tokenizer.mode, info["vocab_size"], info["input_dim"], info["num_utts"])
    return task, datasets, info


def _loader(dataset, batch_size: int, cfg: AsrConfig):
    return eval_loader(dataset, batch_size, cfg.dataloader, collate_ctc)


def _decode_names(inputs: AsrInputs) -> dict[str, str]:
    dev, test = Path(inputs.dev).resolve().name, Path(inputs.test).resolve().name
    if dev == test:
        dev, test = "dev", "test"
    return {"dev": f"decode_{dev}", "test": f"decode_{test}"}


def run_asr(cfg: AsrConfig, inputs: AsrInputs, exp_dir: str | Path, *, results_md: str | Path | None = None,
            command: str | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Train, pick the lowest-dev-WER step, decode dev and test there, write results; returns the
    record. A complete exp dir of the same config and inputs is returned as is; one holding a
    run of another config is refused (the scaffolding is s3prl.downstream.runner.run_task)."""
    return run_spec(ASR, cfg, inputs, exp_dir, results_md=results_md, command=command, device=device,
                    progress=progress)


def _score(task: CTCTask, trainer: Trainer, datasets: dict, info: dict, chash: str, history: list[dict], *,
           cfg: AsrConfig, inputs: AsrInputs, exp_dir: Path, command: str | None) -> dict:
    """Decode dev and test at the best-dev checkpoint (the final model if dev never ran)."""
    from s3prl.downstream.scoring import write_decode_dir

    best = load_best_dev(task, trainer, exp_dir)
    names = _decode_names(inputs)
    scores = {}
    for split in ("dev", "test"):
        ds = datasets[split]
        hyps, _, _ = task.decode(task.model, _loader(ds, cfg.dataloader.dev_batch_size, cfg))
        scores[split] = write_decode_dir(exp_dir / names[split], ds.text, hyps)
    record = {
        "task": "asr", "upstream": info["upstream"], "layer": info["layer"], "head": "bilstm",
        "units": info["units"], "dev_wer": scores["dev"]["wer"], "dev_cer": scores["dev"]["cer"],
        "test_wer": scores["test"]["wer"], "test_cer": scores["test"]["cer"],
        "dev_counts": {"wer": scores["dev"]["wer_counts"], "cer": scores["dev"]["cer_counts"]},
        "test_counts": {"wer": scores["test"]["wer_counts"], "cer": scores["test"]["cer_counts"]},
        "decode_dirs": {k: str(exp_dir / v) for k, v in names.items()},
        **run_fields(best, chash, command, exp_dir, cfg=cfg, inputs=inputs),
        "num_utts": info["num_utts"], "metric": "WER/CER % (greedy CTC, no LM)", "selection": cfg.selection,
    }
    finish_run(exp_dir, record, history, [(int(s), w) for s, w in best.dev_history], best,
               title=f"asr bilstm on {info['upstream']} ({info['layer']})",
               dev_label=f"dev {cfg.selection.upper()} %",
               required=ASR_REQUIRED)
    log.info("asr: dev WER %.2f %% CER %.2f %%, test WER %.2f %% CER %.2f %% at best-dev step %d",
             record["dev_wer"], record["dev_cer"], record["test_wer"], record["test_cer"], best.step)
    return record


def describe(record: dict) -> str:
    return (f"asr bilstm {record['upstream']} ({record['layer']}, {record.get('units', '?')}): "
            f"dev WER {record['dev_wer']:.2f} % CER {record['dev_cer']:.2f} %, test WER {record['test_wer']:.2f} % "
            f"CER {record['test_cer']:.2f} % (best-dev step {record['best_step']} of {record['steps']})")


ASR = TaskSpec(name="asr", config=AsrConfig, add_arguments=AsrInputs.add_arguments,
               inputs=AsrInputs.from_args, build=build_asr_run, score=_score, collate_fn=collate_ctc, table=ASR_TABLE,
               describe=describe, lock_name="train_asr", barrier_after_config=True)


__all__ = ["ASR", "AsrConfig", "BiLSTMConfig", "load_asr_config", "BiLSTMCTCHead", "downsample", "ctc_greedy_decode",
           "ctc_min_frames", "CTCBatch", "TranscribedDataset", "collate_ctc", "CTCTask", "AsrInputs",
           "build_asr_run", "run_asr", "describe", "ASR_TABLE", "ASR_REQUIRED"]
