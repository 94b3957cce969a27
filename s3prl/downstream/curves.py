"""Learning curves of representation quality: a downstream probe's accuracy against the
pre-training step of the upstream it reads, one line per upstream, with the fbank baseline.

A pre-training run keeps its checkpoints at `runner.keep_steps` (s3prl.train.config.
PretrainRunnerConfig); each is dumped and probed as the final one is (egs/librispeech/run.sh
stage 10, --curve-steps). This is the evaluation the papers draw for their upstreams: Mockingjay
(Liu et al., ICASSP 2020, arXiv:1910.12638, Sec. 4.2: phone classification against pre-training
steps) and TERA (Liu et al., IEEE/ACM TASLP 2021, arXiv:2007.06028, Sec. V). It answers whether
pre-training still pays off at a step budget, which S3PRL users ask about
(github.com/s3prl/s3prl issues #186, #291).

- `curve_checkpoints(exp_dir, steps)`: the kept ``states-<step>.ckpt`` (s3prl.checkpoints naming)
  of one run at the listed steps up to its `runner.total_steps`; a missing one is a one-line
  UserError naming the file and the checkpoints the run kept.
- `collect_curve` reads the probes' ``results.json`` (s3prl.downstream.results), `plot_curve`
  draws the PNG (test accuracy solid, dev dashed; the fbank probe as horizontal lines), and
  `write_curve_report` writes the PNG, a JSON of the numbers and the rows of the head's curve in
  RESULTS.md between ``<!-- learning-curves:begin -->`` and ``<!-- learning-curves:end -->``
  (one row per head, upstream, layer, step; the rest of the file is kept).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from s3prl.atomic import atomic_write_text, save_png
from s3prl.checkpoints import checkpoint_name, find_checkpoints
from s3prl.downstream.results import TableSpec, format_table, percent, read_results, replace_rows
from s3prl.errors import UserError

log = logging.getLogger(__name__)

BEGIN = "<!-- learning-curves:begin -->"
END = "<!-- learning-curves:end -->"
TITLE = ("## Learning curves (probe accuracy vs pre-training step; fbank: the probe on fbank, step -)\n\n"
         "Stage 10 (`--curve-steps`): each kept pre-training checkpoint dumped and probed with the "
         "stage-5 downstream config.")
COLUMNS = ("task", "head", "upstream", "layer", "pre-training step", "dev acc %", "test acc %", "exp")
KEY_COLUMNS = 5
# Rows are built from several runs at once (not one results.json per row), so the spec's
# per-record `row` builder is unused; the spec gives results.py's parser the markers and columns.
TABLE = TableSpec(BEGIN, END, TITLE, COLUMNS, KEY_COLUMNS, (), lambda rec, label=None: [])


def parse_steps(text: str, source: str = "--curve-steps") -> list[int]:
    """Whole numbers >= 1 from a space- or comma-separated list, sorted, duplicates dropped."""
    out = set()
    for tok in text.replace(",", " ").split():
        if not tok.isdigit() or int(tok) < 1:
            raise UserError(f"{source}: '{tok}' is not a pre-training step (a whole number >= 1)")
        out.add(int(tok))
    if not out:
        raise UserError(f"{source}: no steps given")
    return sorted(out)


def total_steps(exp_dir: str | Path) -> int:
    """`runner.total_steps` of the pre-training run in `exp_dir` (its config.yaml)."""
    from s3prl.config import ConfigError, from_dict, read_yaml, upgrade_keys
    from s3prl.train.pretrain import PretrainConfig

    path = Path(exp_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: no such file ({exp_dir} is not a pre-training run; run stage 3 first)")
    try:
        cfg = from_dict(PretrainConfig, upgrade_keys(PretrainConfig, read_yaml(path)), str(path))
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg.runner.total_steps


def curve_checkpoints(exp_dir: str | Path, steps: list[int]) -> list[tuple[int, Path]]:
    """(step, ``exp_dir/states-<step>.ckpt``) for each of `steps` up to the run's total_steps
    (later steps are not part of this run and are left out, with a log line). A step whose
    checkpoint is missing raises a one-line UserError naming it and the steps the run kept."""
    exp_dir = Path(exp_dir)
    total = total_steps(exp_dir)
    out = []
    for step in sorted(set(steps)):
        if step > total:
            log.info("%s: step %d is past its total_steps %d: not on its curve", exp_dir, step, total)
            continue
        path = exp_dir / checkpoint_name(step)
        if not path.is_file():
            kept = " ".join(str(s) for s, _ in find_checkpoints(exp_dir)) or "none"
            raise UserError(f"{path}: no checkpoint at pre-training step {step} (kept: {kept}); pre-train again "
                            f"with runner.keep_steps listing it (run.sh: move {exp_dir} aside, rerun stage 3 "
                            f"with --curve-steps)")
        out.append((step, path))
    return out


def _accuracy(rec: dict, key: str) -> float | None:
    v = rec.get(key)
    return None if v is None else float(v)


def collect_curve(runs: list[tuple[str, int, str | Path]], fbank: str | Path | None) -> dict:
    """The curve's numbers from the probes' results.json: `runs` = (upstream name, pre-training
    step, probe exp dir); `fbank` = the fbank probe's exp dir (None: no baseline). A run without a
    complete results.json is a UserError naming it."""
    def read(d: str | Path) -> dict:
        rec = read_results(d)
        if rec is None:
            raise UserError(f"{Path(d) / 'results.json'}: missing or incomplete (has the probe finished?)")
        return rec

    curves: dict[tuple[str, str], dict] = {}
    task = head = None
    for name, step, d in runs:
        rec = read(d)
        task, head = rec["task"], rec["head"]
        key = (name, str(rec["layer"]))
        c = curves.setdefault(key, {"upstream": name, "layer": key[1], "points": []})
        c["points"].append({"step": int(step), "dev": _accuracy(rec, "dev_accuracy"),
                            "test": _accuracy(rec, "test_accuracy"), "exp": str(d)})
    out: dict = {"task": task, "head": head, "curves": [], "fbank": None}
    for key in sorted(curves):
        c = curves[key]
        c["points"].sort(key=lambda p: p["step"])
        out["curves"].append(c)
    if fbank is not None:
        rec = read(fbank)
        out["task"], out["head"] = out["task"] or rec["task"], out["head"] or rec["head"]
        out["fbank"] = {"layer": str(rec["layer"]), "dev": _accuracy(rec, "dev_accuracy"),
                        "test": _accuracy(rec, "test_accuracy"), "exp": str(fbank)}
    if out["task"] is None:
        raise UserError("no probe results given (neither runs nor an fbank probe)")
    return out


def curve_rows(curve: dict) -> list[list[str]]:
    """The RESULTS.md rows of one curve: every point, then the fbank probe (step '-')."""
    rows = []
    for c in curve["curves"]:
        for p in c["points"]:
            rows.append([curve["task"], curve["head"], c["upstream"], c["layer"], str(p["step"]),
                         percent(p["dev"]), percent(p["test"]), p["exp"]])
    fb = curve.get("fbank")
    if fb:
        rows.append([curve["task"], curve["head"], "fbank", fb["layer"], "-", percent(fb["dev"]),
                     percent(fb["test"]), fb["exp"]])
    return rows


def _row_order(row: list[str]) -> tuple:
    step = row[4]
    return (row[0], row[1], row[2] == "fbank", row[2], row[3], int(step) if step.isdigit() else -1)


def render_curve_table(text: str, rows: list[list[str]]) -> str:
    """`text` with the learning-curve table between its markers replaced by `rows` (steps in
    numeric order, fbank after the upstreams of its head); the section is appended if absent."""
    rows = sorted(rows, key=_row_order)
    block = f"{BEGIN}\n{format_table(rows, TABLE)}\n{END}"
    if BEGIN in text:
        start = text.index(BEGIN)
        end = text.find(END, start)
        if end < 0:
            raise UserError(f"RESULTS.md: '{BEGIN}' without a matching '{END}'")
        return text[:start] + block + text[end + len(END):]
    prefix = text.rstrip("\n")
    return f"{prefix}{chr(10) * 2 if prefix else ''}{TITLE}\n\n{block}\n"


def update_curve_table(path: str | Path, curve: dict) -> bool:
    """Replace the rows of `curve`'s (task, head) in RESULTS.md `path` (under the results lock);
    True if the file changed."""
    return replace_rows(path, TABLE, lambda r: (r[0], r[1]) != (curve["task"], curve["head"]), curve_rows(curve),
                        render=render_curve_table)


def plot_curve(path: str | Path, curve: dict) -> Path:
    """PNG: accuracy % against the pre-training step (log axis when the steps span 8x or more),
    test solid and dev dashed in one colour per upstream (and layer), fbank as grey lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = [p["step"] for c in curve["curves"] for p in c["points"]]
    names = [c["upstream"] for c in curve["curves"]]
    several_layers = len(names) > len(set(names))       # --layer all: one line per layer
    for i, c in enumerate(curve["curves"]):
        colour = f"C{i % 10}"
        label = f"{c['upstream']} layer {c['layer']}" if several_layers else c["upstream"]
        xs = [p["step"] for p in c["points"]]
        ax.plot(xs, [100.0 * p["test"] for p in c["points"]], color=colour, marker="o", label=f"{label} test")
        ax.plot(xs, [100.0 * p["dev"] for p in c["points"]], color=colour, marker=".", linestyle="--",
                alpha=0.6, label=f"{label} dev")
    fb = curve.get("fbank")
    if fb:
        ax.axhline(100.0 * fb["test"], color="grey", label="fbank test")
        ax.axhline(100.0 * fb["dev"], color="grey", linestyle="--", alpha=0.6, label="fbank dev")
    if steps and max(steps) >= 8 * min(steps):
        ax.set_xscale("log", base=2)
    if steps:
        ax.set_xticks(sorted(set(steps)))
        ax.set_xticklabels([str(s) for s in sorted(set(steps))])
        ax.minorticks_off()
    ax.set_xlabel("pre-training step")
    ax.set_ylabel(f"{curve['task']} accuracy %")
    ax.set_title(f"{curve['task']} probe ({curve['head']}) vs pre-training step", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_png(fig, path)


def write_curve_report(curve: dict, out_prefix: str | Path, results_md: str | Path | None = None) -> bool:
    """`<out_prefix>.json` (the numbers), `<out_prefix>.png` and, with `results_md`, the curve's
    rows in RESULTS.md. A report whose JSON and PNG exist with the same numbers is not redrawn
    (its rows are still checked). True if anything was written."""
    out_prefix = Path(out_prefix)
    js, png = out_prefix.with_name(out_prefix.name + ".json"), out_prefix.with_name(out_prefix.name + ".png")
    text = json.dumps(curve, indent=1, sort_keys=True) + "\n"
    wrote = False
    if not (js.is_file() and png.is_file() and js.read_text(encoding="utf-8") == text):
        plot_curve(png, curve)
        atomic_write_text(js, text)
        wrote = True
    if results_md is not None:
        wrote = update_curve_table(results_md, curve) or wrote
    return wrote
