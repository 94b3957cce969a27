"""Results of downstream runs: ``results.json`` per run, the table in ``RESULTS.md`` and a
learning-curve PNG.

- ``<exp>/results.json``: task, upstream, layer, head, dev and test accuracy (test scored at the
  best-dev checkpoint, as S3PRL 2020 reported it:
  github.com/s3prl/s3prl @ b72a2cd9, downstream/runner.py), best-dev step, total
  steps, config hash (sha1 of the resolved config YAML, first 10 hex digits), the command line,
  the seeds and the fingerprints of corpus, features and checkpoint (s3prl.downstream.fingerprint).
- ``RESULTS.md`` (e.g. ``egs/librispeech/RESULTS.md``): a Markdown table between the markers
  ``<!-- downstream-results:begin -->`` and ``<!-- downstream-results:end -->`` holding ONE row per
  (task, upstream, layer, head, seed); a rerun (the same key, or the same exp dir) replaces its
  row. Above it, between ``<!-- downstream-summary:begin -->`` and its end marker, the runs of
  one (task, upstream, layer, head) folded into mean +- sd over seeds, each learned upstream
  against the baselines (s3prl.downstream.aggregate). Everything outside the markers is kept as
  it was; the file is rewritten atomically under an flock so parallel runs do not lose rows. A
  table written before a column existed (seed, fingerprints) is read by its header, the missing
  cells "-", and written back with today's columns.
- ``<exp>/learning_curve.png``: train loss and dev accuracy against the step.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from s3prl.atomic import atomic_write_text, save_png
from s3prl.errors import UserError

RESULTS_FILE = "results.json"
BEGIN = "<!-- downstream-results:begin -->"
END = "<!-- downstream-results:end -->"
SUMMARY_BEGIN = "<!-- downstream-summary:begin -->"
SUMMARY_END = "<!-- downstream-summary:end -->"
SECTION_TITLE = "## Downstream classification (CPC protocol: 41 phone classes, speakers of train_split)"
FINGERPRINTS = "fingerprints"
COLUMNS = ["task", "upstream", "layer", "head", "seed", "dev acc %", "test acc % (best dev)", "best step",
           "steps", "config", FINGERPRINTS, "exp"]
KEY_COLUMNS = 5  # (task, upstream, layer, head, seed)
REQUIRED_KEYS = ("task", "upstream", "layer", "head", "dev_accuracy", "test_accuracy", "best_step",
                 "steps", "config_hash", "command")


def config_hash(resolved_yaml: str) -> str:
    """sha1 of the resolved config YAML text, first 10 hex digits."""
    return hashlib.sha1(resolved_yaml.encode("utf-8")).hexdigest()[:10]


def write_results(exp_dir: str | Path, record: dict, required: tuple = REQUIRED_KEYS) -> Path:
    """Write ``<exp_dir>/results.json`` atomically; `record` must hold the `required` keys."""
    missing = [k for k in required if k not in record]
    if missing:
        raise ValueError(f"results record lacks {missing}")
    path = Path(exp_dir) / RESULTS_FILE
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_results(exp_dir: str | Path, required: tuple = REQUIRED_KEYS) -> dict | None:
    """The run's results.json, or None when absent or unreadable (an incomplete run)."""
    path = Path(exp_dir) / RESULTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or any(k not in data for k in required):
        return None
    return data


def percent(x) -> str:
    """A fraction as a table cell in % with 2 decimals ("-" for None)."""
    return "-" if x is None else f"{100.0 * float(x):.2f}"


def table_row(cells: list[str], record: dict, exp_label: str | None = None, fingerprints: bool = False) -> list[str]:
    """A task's own `cells`, then the cells every table ends with (best step, steps, config hash,
    with `fingerprints` the record's fingerprints as ``c:ab12 f:cd34 k:ef56``, exp dir:
    `exp_label` or the record's), escaped for a Markdown table row."""
    from s3prl.downstream.fingerprint import short

    cells = cells + [str(record["best_step"]), str(record["steps"]), str(record["config_hash"])]
    if fingerprints:
        cells.append(short(record.get("fingerprints")))
    cells.append(exp_label if exp_label is not None else str(record.get("exp_dir", "-")))
    return [c.replace("|", "\\|").replace("\n", " ") for c in cells]


def result_row(record: dict, exp_label: str | None = None) -> list[str]:
    """The RESULTS.md cells of one classification (phone / speaker) run."""
    return table_row([str(record["task"]), str(record["upstream"]), str(record["layer"]), str(record["head"]),
                      str(record.get("seed", "-")), percent(record["dev_accuracy"]), percent(record["test_accuracy"])],
                     record, exp_label, fingerprints=True)


@dataclass(frozen=True)
class TableSpec:
    """One results table of RESULTS.md: its markers, section title, columns, how many leading
    columns identify a row, the results.json keys it needs and the row builder. The default
    (`CLASSIFICATION`) is the table above; every task names its own (TaskSpec.table).
    summary: rows -> (columns, summary rows) of a second table folding the runs of one row over
    seeds, written between `summary_markers` above the per-run table (None: no summary)."""
    begin: str
    end: str
    title: str
    columns: tuple
    key_columns: int
    required: tuple
    row: Callable[[dict, str | None], list[str]]
    summary: Callable[[list[list[str]]], tuple[tuple, list[list[str]]]] | None = None
    summary_markers: tuple[str, str] = (SUMMARY_BEGIN, SUMMARY_END)


def _spec(spec: "TableSpec | None") -> "TableSpec":
    return CLASSIFICATION if spec is None else spec


def _split_cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells, cur, i = [], "", 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur += "\\|"
            i += 2
            continue
        if body[i] == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += body[i]
        i += 1
    cells.append(cur.strip())
    return cells


def format_table(rows: list[list[str]], spec: TableSpec | None = None, columns: tuple | None = None) -> str:
    columns = list(_spec(spec).columns if columns is None else columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def parse_results_table(text: str, source: str = "RESULTS.md", spec: TableSpec | None = None) -> list[list[str]]:
    """Rows (lists of cells) of the downstream table inside the markers of `text` ([] if none)."""
    spec = _spec(spec)
    BEGIN, END, COLUMNS = spec.begin, spec.end, list(spec.columns)
    if BEGIN not in text:
        return []
    start = text.index(BEGIN) + len(BEGIN)
    end = text.find(END, start)
    if end < 0:
        raise UserError(f"{source}: '{BEGIN}' without a matching '{END}'")
    rows = []
    header = COLUMNS   # the header the rows are written under: an older one lacks columns added since
    for line in text[start:end].splitlines():
        if not line.strip().startswith("|"):
            continue
        cells = _split_cells(line)
        if all(set(c) <= set("-: ") for c in cells):
            continue
        if not rows and cells != COLUMNS and cells[:1] == COLUMNS[:1] and set(cells) < set(COLUMNS):
            header = cells
            continue
        if cells == header:
            continue
        if len(cells) != len(header):
            raise UserError(f"{source}: table row '{line.strip()}' has {len(cells)} cells, expected {len(header)}")
        if header is not COLUMNS:
            by_name = dict(zip(header, cells))
            cells = [by_name.get(c, "-") for c in COLUMNS]
        rows.append(cells)
    return rows


def render_results_md(text: str, rows: list[list[str]], spec: TableSpec | None = None) -> str:
    """`text` with the downstream table (between the markers) replaced by `rows`, sorted by key,
    and the spec's summary table (if any) above it rewritten from them."""
    spec = _spec(spec)
    BEGIN, END = spec.begin, spec.end
    rows = sorted(rows, key=lambda r: tuple(r[:spec.key_columns]))
    block = f"{BEGIN}\n{format_table(rows, spec)}\n{END}"
    if spec.summary is not None:
        sb, se = spec.summary_markers
        columns, summary = spec.summary(rows)
        sblock = f"{sb}\n{format_table(summary, spec, columns)}\n{se}"
        if sb in text:
            start = text.index(sb)
            end = text.index(se, start) + len(se)
            text = text[:start] + sblock + text[end:]
        elif BEGIN in text:
            at = text.index(BEGIN)
            text = f"{text[:at]}{sblock}\n\nOne row per run:\n\n{text[at:]}"
        else:
            block = f"{sblock}\n\nOne row per run:\n\n{block}"
    if BEGIN in text:
        start = text.index(BEGIN)
        end = text.index(END, start) + len(END)
        return text[:start] + block + text[end:]
    prefix = text.rstrip("\n")
    sep = "\n\n" if prefix else ""
    return f"{prefix}{sep}{spec.title}\n\n{block}\n"


def parse_summary_table(text: str, source: str = "RESULTS.md", spec: TableSpec | None = None) -> list[list[str]]:
    """Rows of the summary table (between `spec.summary_markers`) of `text` ([] if none)."""
    spec = _spec(spec)
    if spec.summary is None:
        return []
    columns, _ = spec.summary([])
    sb, se = spec.summary_markers
    return parse_results_table(text, source, TableSpec(sb, se, "", tuple(columns), spec.key_columns, (), spec.row))


def classification_summary(rows: list[list[str]]) -> tuple[tuple, list[list[str]]]:
    """The classification table's summary: s3prl.downstream.aggregate over its per-run rows."""
    from s3prl.downstream.aggregate import SUMMARY_COLUMNS, group_rows, summary_rows

    return SUMMARY_COLUMNS, summary_rows(group_rows(rows, tuple(COLUMNS), "dev acc %", "test acc % (best dev)"))


CLASSIFICATION = TableSpec(BEGIN, END, SECTION_TITLE, tuple(COLUMNS), KEY_COLUMNS, REQUIRED_KEYS, result_row,
                           summary=classification_summary)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # A blocking flock on a sidecar file: concurrent runs update RESULTS.md one after the other.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path.with_name(f".{path.name}.lock")), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def replace_rows(path: str | Path, spec: TableSpec, keep: Callable[[list[str]], bool], new_rows: list[list[str]],
                 render: Callable[[str, list[list[str]]], str] | None = None) -> bool:
    """Under the RESULTS.md lock: the rows of `spec`'s table in `path` that `keep` accepts, then
    `new_rows`, rendered back (`render(text, rows)`, default render_results_md) and written
    atomically if anything changed. True if the file changed."""
    path = Path(path)
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        rows = [r for r in parse_results_table(text, str(path), spec) if keep(r)]
        new = (render or (lambda t, rs: render_results_md(t, rs, spec)))(text, rows + new_rows)
        if new == text:
            return False
        atomic_write_text(path, new)
        return True


def update_results_md(path: str | Path, record: dict, exp_label: str | None = None,
                      spec: TableSpec | None = None) -> None:
    """Insert or replace the row of `record`'s key (task, upstream, layer, head[, seed]) in `path`;
    a row of the same exp dir (the last column) is replaced too (a rerun in the same dir)."""
    path = Path(path)
    spec = _spec(spec)
    row = spec.row(record, exp_label)
    k = spec.key_columns
    same_dir = spec.columns[-1] == "exp" and row[-1] not in ("", "-")
    replace_rows(path, spec, lambda r: r[:k] != row[:k] and not (same_dir and r[-1] == row[-1]), [row])


def refresh_results_md(path: str | Path, spec: TableSpec | None = None) -> bool:
    """Rewrite the table of `spec` in `path` (if there is one) with today's columns and its
    summary, under the same lock as `update_results_md`; True when the file changed."""
    path = Path(path)
    spec = _spec(spec)
    with _locked(path):
        text = path.read_text(encoding="utf-8")
        if spec.begin not in text:
            return False
        new = render_results_md(text, parse_results_table(text, str(path), spec), spec)
        if new == text:
            return False
        atomic_write_text(path, new)
        return True


def plot_learning_curve(path: str | Path, train: list[tuple[int, float]], dev: list[tuple[int, float]],
                        title: str = "", best_step: int | None = None, dev_label: str = "dev accuracy %") -> Path:
    """Train loss (left axis) and a dev metric (right axis, fraction shown as %; `dev_label`)
    against the step, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    if dev:
        ax2.plot([s for s, _ in dev], [100.0 * v for _, v in dev], color="tab:red", marker="o", label=dev_label)
    if best_step is not None:
        ax2.axvline(best_step, color="tab:red", linestyle=":", alpha=0.6)
    ax2.set_ylabel(dev_label, color="tab:red")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
