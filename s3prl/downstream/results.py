"""Results of downstream runs: ``results.json`` per run, the table in ``RESULTS.md`` and a
learning-curve PNG.

- ``<exp>/results.json``: task, upstream, layer, head, dev and test accuracy (test scored at the
  best-dev checkpoint, as S3PRL 2020 reported it:
  github.com/s3prl/s3prl @ b72a2cd9, downstream/runner.py), best-dev step, total
  steps, config hash (sha1 of the resolved config YAML, first 10 hex digits) and the command line.
- ``RESULTS.md`` (e.g. ``egs/librispeech/RESULTS.md``): a Markdown table between the markers
  ``<!-- downstream-results:begin -->`` and ``<!-- downstream-results:end -->`` holding ONE row per
  (task, upstream, layer, head); a rerun replaces its row. Everything outside the markers is kept
  as it was; the file is rewritten atomically under an flock so parallel runs do not lose rows.
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

from s3prl.atomic import atomic_path, atomic_write_text
from s3prl.errors import UserError

RESULTS_FILE = "results.json"
BEGIN = "<!-- downstream-results:begin -->"
END = "<!-- downstream-results:end -->"
SECTION_TITLE = "## Downstream classification (CPC protocol: 41 phone classes, speakers of train_split)"
COLUMNS = ["task", "upstream", "layer", "head", "dev acc %", "test acc % (best dev)", "best step",
           "steps", "config", "exp"]
KEY_COLUMNS = 4  # (task, upstream, layer, head)
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


def table_row(cells: list[str], record: dict, exp_label: str | None = None) -> list[str]:
    """A task's own `cells`, then the cells every table ends with (best step, steps, config hash,
    exp dir: `exp_label` or the record's), escaped for a Markdown table row."""
    cells = cells + [str(record["best_step"]), str(record["steps"]), str(record["config_hash"]),
                     exp_label if exp_label is not None else str(record.get("exp_dir", "-"))]
    return [c.replace("|", "\\|").replace("\n", " ") for c in cells]


def result_row(record: dict, exp_label: str | None = None) -> list[str]:
    """The RESULTS.md cells of one classification (phone / speaker) run."""
    return table_row([str(record["task"]), str(record["upstream"]), str(record["layer"]), str(record["head"]),
                      percent(record["dev_accuracy"]), percent(record["test_accuracy"])], record, exp_label)


@dataclass(frozen=True)
class TableSpec:
    """One results table of RESULTS.md: its markers, section title, columns, how many leading
    columns identify a row, the results.json keys it needs and the row builder. The default
    (`CLASSIFICATION`) is the table above; every task names its own (TaskSpec.table)."""
    begin: str
    end: str
    title: str
    columns: tuple
    key_columns: int
    required: tuple
    row: Callable[[dict, str | None], list[str]]


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


def format_table(rows: list[list[str]], spec: TableSpec | None = None) -> str:
    columns = list(_spec(spec).columns)
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
    for line in text[start:end].splitlines():
        if not line.strip().startswith("|"):
            continue
        cells = _split_cells(line)
        if cells == COLUMNS or all(set(c) <= set("-: ") for c in cells):
            continue
        if len(cells) != len(COLUMNS):
            raise UserError(f"{source}: table row '{line.strip()}' has {len(cells)} cells, expected {len(COLUMNS)}")
        rows.append(cells)
    return rows


def render_results_md(text: str, rows: list[list[str]], spec: TableSpec | None = None) -> str:
    """`text` with the downstream table (between the markers) replaced by `rows`, sorted by key."""
    spec = _spec(spec)
    BEGIN, END = spec.begin, spec.end
    rows = sorted(rows, key=lambda r: tuple(r[:spec.key_columns]))
    block = f"{BEGIN}\n{format_table(rows, spec)}\n{END}"
    if BEGIN in text:
        start = text.index(BEGIN)
        end = text.index(END, start) + len(END)
        return text[:start] + block + text[end:]
    prefix = text.rstrip("\n")
    sep = "\n\n" if prefix else ""
    return f"{prefix}{sep}{spec.title}\n\n{block}\n"


CLASSIFICATION = TableSpec(BEGIN, END, SECTION_TITLE, tuple(COLUMNS), KEY_COLUMNS, REQUIRED_KEYS, result_row)


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


def update_results_md(path: str | Path, record: dict, exp_label: str | None = None,
                      spec: TableSpec | None = None) -> None:
    """Insert or replace the row of `record`'s (task, upstream, layer, head) in `path`."""
    path = Path(path)
    spec = _spec(spec)
    row = spec.row(record, exp_label)
    k = spec.key_columns
    with _locked(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        rows = [r for r in parse_results_table(text, str(path), spec) if r[:k] != row[:k]]
        rows.append(row)
        new = render_results_md(text, rows, spec)
        if new != text:
            atomic_write_text(path, new)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=False) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path
