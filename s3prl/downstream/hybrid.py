"""The hybrid DNN-HMM acoustic model as a downstream task (``train_downstream --task hybrid``): its
config, command-line inputs, RESULTS.md table and one-line summary.

The model, training targets and decoding are s3prl.hybrid.dnn (a frame-level head on the pdf ids of
the monophone alignments, decoded through HCLG with the lattice-faster decoder of kaldi-hmm-gmm:
Kaldi's nnet1 hybrid recipe, kaldi-asr/kaldi egs/wsj/s5/local/nnet/run_dnn.sh, and PyTorch-Kaldi,
Ravanelli et al. 2019, ICASSP, Sec. 2). This module imports none of it: ``build`` and ``score``
import s3prl.hybrid.dnn when a hybrid run starts, so the task table (s3prl.downstream.tasks), and
with it every downstream CLI, loads without kaldi-hmm-gmm / kaldifst / kaldilm (whose native
libraries are heavy, and which deadlock when kaldilm is imported before kaldi_hmm_gmm:
s3prl/hybrid/__init__.py imports them in the safe order).

Inputs, as the ASR task's (s3prl.downstream.asr): ``--train/--dev/--test`` data dirs with `text`
whose feats.scp holds the DNN's input (fbank dirs, or an upstream's dump layer dirs), or, with
``--on-the-fly``, data dirs (wav.scp) that ``--upstream`` runs on inside the model: frozen
(``--layer last|N|weighted_sum``) or fine-tuned jointly (``--fine-tune``), as S3PRL's downstream
runner does (github.com/s3prl/s3prl v0.4.18, s3prl/downstream/runner.py). ``--ali-*``: the
alignment dirs of s3prl.bin.hybrid_gmm (``exp/mono_ali_{train,dev,test}``); ``--graph``: its
HCLG dir (``exp/mono/graph``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from s3prl.downstream.config import TaskConfig
from s3prl.downstream.data import collate_labeled
from s3prl.downstream.heads import HeadConfig
from s3prl.downstream.results import TableSpec
from s3prl.downstream.runner import TaskSpec
from s3prl.errors import UserError
from s3prl.train.config import DataConfig, OptimizerConfig, RunnerConfig

SPLITS = ("train", "dev", "test")
# LM weights tried on dev. Kaldi's steps/score_kaldi.sh tries 7..17; on the synthetic demo corpus
# the optimum was 5-8 for the monophone GMM and 3-5 for every DNN (dev WER at 11 and 14 was 15-30
# points worse, and those flat-score decodes cost three quarters of the decoding time), so the
# default grid is centred there. tune_lmwt warns when the best weight is at an end of the grid.
DEFAULT_LMWTS = (2, 3, 4, 5, 6, 8, 11)


# ------------------------------------------------------------------------------------- config
@dataclass
class AlignmentLabelConfig:
    """max_frame_mismatch: frames by which an utterance's representation and its alignment may
    differ in length (the longer is cut), as the phone task's labels.max_frame_mismatch."""
    max_frame_mismatch: int = 2

    def __post_init__(self):
        if self.max_frame_mismatch < 0:
            raise ValueError("max_frame_mismatch must be >= 0")


@dataclass
class DecodeConfig:
    """lmwts: the LM weights (1 / acoustic scale) tried on dev, the best one scores test (Kaldi's
    steps/score_kaldi.sh); beam: the lattice-faster decoder's beam (steps/decode.sh --beam);
    lattice_beam: its lattice pruning beam (--lattice-beam). Only the best path is kept, and it does
    not depend on the lattice beam (the search frontier is set by beam and max-active alone; a test
    checks it), so a narrow one only saves the lattice bookkeeping: 1.0 rather than Kaldi's 6-8
    decodes the demo's dev set ~1.6x faster with the same words.
    lmwt_patience: dev is decoded in ascending LM weight and the search stops once this many weights
    in a row after the best are no better (0: every weight of the grid, as score_kaldi.sh). High
    weights mean flat acoustic scores, many active tokens and the slowest decodes (LMWT 11 costs ~40x
    LMWT 2 on the demo's DNNs), and past the optimum dev WER only grows; the chosen weight is the
    grid's when dev WER has a single minimum over the grid (a test checks both)."""
    lmwts: list[int] = field(default_factory=lambda: list(DEFAULT_LMWTS))
    beam: float = 11.0
    lattice_beam: float = 1.0
    lmwt_patience: int = 2

    def __post_init__(self):
        if not self.lmwts or min(self.lmwts) < 1:
            raise ValueError(f"lmwts must be positive integers, got {self.lmwts}")
        if not self.beam > 0:
            raise ValueError(f"beam must be > 0, got {self.beam}")
        if not self.lattice_beam > 0:
            raise ValueError(f"lattice_beam must be > 0, got {self.lattice_beam}")
        if self.lmwt_patience < 0:
            raise ValueError(f"lmwt_patience must be >= 0 (0: the whole grid), got {self.lmwt_patience}")


def _optimizer() -> OptimizerConfig:
    return OptimizerConfig(name="Adam", lr=2e-3, weight_decay=0.0, schedule="constant", warmup_proportion=0.0,
                           gradient_clipping=1.0)


def _runner() -> RunnerConfig:
    return RunnerConfig(total_steps=20000, log_step=50, save_step=2000, dev_step=2000, max_keep=1)


def _data() -> DataConfig:
    return DataConfig(batch_size=16, dev_batch_size=32)


@dataclass
class HybridConfig(TaskConfig):
    """The hybrid DNN YAML (conf/downstream/hybrid_1hidden.yaml): a frame-level head (linear,
    1hidden, concat: s3prl.downstream.heads) whose class count is the GMM model's number of pdfs."""
    task: Literal["hybrid"] = "hybrid"
    head: HeadConfig = field(default_factory=lambda: HeadConfig(name="1hidden"))
    labels: AlignmentLabelConfig = field(default_factory=AlignmentLabelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    optimizer: OptimizerConfig = field(default_factory=_optimizer)
    runner: RunnerConfig = field(default_factory=_runner)
    dataloader: DataConfig = field(default_factory=_data)

    heads_by_task: ClassVar[dict[str, tuple[str, ...]]] = {"hybrid": ("linear", "1hidden", "concat")}
    yaml_order: ClassVar[tuple[str, ...]] = ("task", "head", "input", "labels", "decode", "optimizer", "runner",
                                             "dataloader")


def parse_lmwts(text: str, option: str = "--lmwts") -> tuple[int, ...]:
    """``"3 5 8"`` -> (3, 5, 8); anything but positive integers is a UserError naming `option`."""
    try:
        out = tuple(int(x) for x in text.split())
    except ValueError:
        raise UserError(f"{option} '{text}': expected space-separated positive integers") from None
    if not out or min(out) < 1:
        raise UserError(f"{option} '{text}': expected space-separated positive integers")
    return out


# -------------------------------------------------------------------------------------- inputs
@dataclass
class HybridInputs:
    """feats: {split: data dir} (feats.scp: the DNN's input; with `on_the_fly` the dirs `upstream`
    runs on); ali: {split: alignment dir (ali.*.gz, final.pt)}; graph: the dir with HCLG.fst;
    upstream: fbank, a baseline or the upstream checkpoint (with dumped features only the name
    of, and a check against, the upstream the dump recorded)."""
    feats: dict
    ali: dict
    graph: str
    upstream: str | None = None
    on_the_fly: bool = False
    scoring_map: str | None = None

    @staticmethod
    def add_arguments(p) -> None:
        """The hybrid task's command-line options (TaskSpec.add_arguments)."""
        for s, what in (("train", "training"), ("dev", "dev (LM weight, best-dev checkpoint)"),
                        ("test", "test (scored at the dev LM weight)")):
            p.add_argument(f"--{s}", f"--feats-{s}", dest=f"feats_{s}", required=True, metavar="DIR",
                           help=f"{what} data dir with text (feats.scp: the DNN's input unless --on-the-fly)")
            p.add_argument(f"--ali-{s}", required=True, metavar="DIR",
                           help=f"alignment dir of hybrid_gmm for the {s} set (ali.*.gz, final.pt)")
        p.add_argument("--graph", required=True, metavar="DIR", help="decoding graph dir (HCLG.fst, words.txt)")
        p.add_argument("--upstream", default="fbank", help="checkpoint path or baseline name (default: fbank)")
        p.add_argument("--on-the-fly", action="store_true", help="run --upstream on the data dirs inside the model")
        p.add_argument("--scoring-map", metavar="FILE",
                       help="token map applied to reference and hypothesis before scoring, 'FROM TO' per line "
                            "(e.g. TIMIT's 48 -> 39 phones, egs/timit/conf/phones.48-39.map)")
        p.add_argument("--lmwts", help="LM weights tried on dev, space-separated (decode.lmwts)")
        p.add_argument("--beam", type=float, help="decoding beam (decode.beam)")

    @classmethod
    def from_args(cls, args) -> "HybridInputs":
        if (args.layer is not None or args.fine_tune) and not args.on_the_fly:
            raise UserError("--layer and --fine-tune need --on-the-fly (dumped features are one fixed layer)")
        if args.scoring_map:
            from s3prl.hybrid.decode import read_scoring_map   # checked before training, not after it

            read_scoring_map(args.scoring_map)
        return cls(feats={s: getattr(args, f"feats_{s}") for s in SPLITS},
                   ali={s: getattr(args, f"ali_{s}") for s in SPLITS}, graph=args.graph, upstream=args.upstream,
                   on_the_fly=args.on_the_fly, scoring_map=args.scoring_map or None)

    def resolved(self) -> dict:
        """What the config hash records: the dirs, and what made them (the dumps' or features'
        identity, the checkpoint's sha256 on the fly, the alignments' and HCLG's sha256), so a
        re-made input is not mistaken for the one a finished run used."""
        from s3prl.atomic import file_sha256
        from s3prl.data.alignments import alignment_archives
        from s3prl.dump import source_identity

        out = {"feats": {k: str(Path(v).resolve()) for k, v in self.feats.items()},
               "ali": {k: str(Path(v).resolve()) for k, v in self.ali.items()},
               "graph": str(Path(self.graph).resolve()), "upstream": self.upstream, "on_the_fly": self.on_the_fly}
        made_by = ([source_identity(upstream=self.upstream)] if self.on_the_fly
                   else [source_identity(self.feats[s]) for s in SPLITS])
        if any(made_by):
            out["made_by"] = made_by
        ident = {}
        for s in SPLITS:
            d = Path(self.ali[s])
            files = ([d / "final.pt"] if (d / "final.pt").is_file() else []) + alignment_archives(d)
            ident[s] = {p.name: file_sha256(p) for p in files}
        hclg = Path(self.graph) / "HCLG.fst"
        out["alignments"] = {**ident, "HCLG.fst": file_sha256(hclg) if hclg.is_file() else None}
        if self.scoring_map:
            out["scoring_map"] = {"path": str(Path(self.scoring_map).resolve()),
                                  "sha256": file_sha256(Path(self.scoring_map))}
        return out


def cli_overrides(args) -> list[str]:
    """The config overrides of the hybrid options: --lmwts (decode.lmwts), --beam (decode.beam)."""
    out = []
    if args.lmwts is not None:
        out.append("decode.lmwts=[" + ",".join(str(x) for x in parse_lmwts(args.lmwts)) + "]")
    if args.beam is not None:
        if not args.beam > 0:
            raise UserError(f"--beam {args.beam:g}: must be > 0")
        out.append(f"decode.beam={args.beam!r}")
    return out


# ----------------------------------------------------------------------------- results table
def _hybrid_row(record: dict, exp_label: str | None = None) -> list[str]:
    fa = record.get("frame_agreement")
    cells = [str(record["task"]), str(record["upstream"]), str(record["layer"]), str(record["head"]),
             str(record.get("seed", "-")), "-" if record.get("dev_accuracy") is None else f"{100 * record['dev_accuracy']:.2f}",
             f"{record['dev_wer']:.2f}", f"{record['test_wer']:.2f}", f"{record['test_cer']:.2f}", str(record["lmwt"]),
             "-" if not fa else f"{100 * fa['agreement']:.2f}",
             exp_label if exp_label is not None else str(record.get("exp_dir", "-"))]
    return [c.replace("|", "\\|").replace("\n", " ") for c in cells]


REQUIRED = ("task", "upstream", "layer", "head", "dev_accuracy", "test_accuracy", "best_step", "steps",
            "config_hash", "command", "test_wer", "test_cer", "lmwt")
TABLE_REQUIRED = ("task", "upstream", "layer", "head", "dev_wer", "test_wer", "test_cer", "lmwt")
HYBRID_COLUMNS = ("task", "upstream", "layer", "head", "seed", "dev pdf acc %", "dev WER", "test WER (dev LMWT)",
                  "test CER", "LMWT", "frame agreement %", "exp")
HYBRID_SUMMARY_COLUMNS = ("task", "upstream", "layer", "head", "seeds", "dev WER % (mean +- sd)",
                          "test WER % (mean +- sd)", "test WER vs baseline (> 2 x pooled sd = beyond noise)")


def hybrid_summary(rows: list[list[str]]) -> tuple[tuple, list[list[str]]]:
    """The hybrid table's summary: the DNN runs of one (task, upstream, layer, head) over their
    seeds (the recipe's --probe-seeds: runner.seed and dataloader.seed), mean +- sd of dev and test
    WER and each upstream's test WER against the baseline rows (s3prl.downstream.aggregate; here a
    negative difference is the better one)."""
    from s3prl.downstream.aggregate import group_rows, summary_rows

    return HYBRID_SUMMARY_COLUMNS, summary_rows(group_rows(rows, HYBRID_COLUMNS, "dev WER", "test WER (dev LMWT)"))


HYBRID_TABLE = TableSpec(
    begin="<!-- hybrid-results:begin -->", end="<!-- hybrid-results:end -->",
    title="## Speech recognition, hybrid DNN-HMM (monophone HMM, lattice-faster decoding on HCLG with a "
          "3-gram LM of the training transcripts; WER/CER %)",
    columns=HYBRID_COLUMNS, key_columns=5, required=TABLE_REQUIRED, row=_hybrid_row, summary=hybrid_summary,
    summary_markers=("<!-- hybrid-summary:begin -->", "<!-- hybrid-summary:end -->"))


def describe(r: dict) -> str:
    return (f"hybrid DNN {r['head']} {r['upstream']} ({r['layer']}): pdf accuracy dev "
            f"{100 * r['dev_accuracy']:.2f} %, test WER {r['test_wer']:.2f} % CER {r['test_cer']:.2f} % "
            f"(LMWT {r['lmwt']})")


# -------------------------------------------------------------------- the lazy task entry
def build(cfg: HybridConfig, inputs: HybridInputs, exp_dir, device="cpu"):
    """TaskSpec.build: s3prl.hybrid.dnn.build_hybrid_run, imported now (kaldi-hmm-gmm loads here)."""
    from s3prl.hybrid.dnn import build_hybrid_run

    return build_hybrid_run(cfg, inputs, exp_dir, device)


def score(*args, **kwargs) -> dict:
    """TaskSpec.score: s3prl.hybrid.dnn.score_hybrid_run."""
    from s3prl.hybrid.dnn import score_hybrid_run

    return score_hybrid_run(*args, **kwargs)


HYBRID = TaskSpec(name="hybrid", config=HybridConfig, add_arguments=HybridInputs.add_arguments,
                  inputs=HybridInputs.from_args, build=build, score=score, collate_fn=collate_labeled, table=HYBRID_TABLE,
                  describe=describe, lock_name="train_hybrid_dnn", overrides=cli_overrides)


__all__ = ["HYBRID", "HybridConfig", "HybridInputs", "DecodeConfig", "AlignmentLabelConfig", "HYBRID_TABLE",
           "REQUIRED", "TABLE_REQUIRED", "parse_lmwts", "describe", "DEFAULT_LMWTS"]
