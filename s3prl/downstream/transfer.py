"""Generalisation to a second corpus: probes of already pre-trained upstreams on a corpus they were
not pre-trained on, in their own RESULTS.md table beside the numbers on the pre-training corpus.

The upstreams are frozen and only the probe is trained, on the second corpus' own train_split
(CPC protocol labels), so the table measures how well the representation transfers -- the frozen
"upstream + light head" protocol of SUPERB (Yang et al., Interspeech 2021, arXiv:2105.01051,
Sec. 3) applied to a held-out corpus. egs/librispeech/run.sh stage 11 (--eval-corpus-seed or
--eval-corpus-dir) makes the data dirs, features, dumps and probes; this module builds the table.

Table (between ``<!-- eval-corpus-results:begin -->`` and ``<!-- eval-corpus-results:end -->``),
one row per (corpus, task, upstream, layer, head), a rerun replaces its rows: dev and test
accuracy on the second corpus, the test margin over the fbank probe of the same corpus, task and
head, and the same two numbers of the matching probe on the pre-training corpus (the probe dir of
the same name under the reference root, e.g. exp/downstream), "-" where that run is absent.
"""
from __future__ import annotations

from pathlib import Path

from s3prl.downstream.results import TableSpec, percent, read_results, replace_rows
from s3prl.errors import UserError

BEGIN = "<!-- eval-corpus-results:begin -->"
END = "<!-- eval-corpus-results:end -->"
TITLE = ("## Generalisation: frozen upstreams probed on a second corpus\n\n"
         "Stage 11 (`--eval-corpus-seed` / `--eval-corpus-dir`): the upstreams pre-trained on the recipe's "
         "corpus are dumped on another one and the probe is trained on that corpus' train_split; "
         "\"vs fbank\" is the test margin over the fbank probe of the same corpus, task and head.")
COLUMNS = ("corpus", "task", "upstream", "layer", "head", "dev acc %", "test acc %", "vs fbank",
           "pre-training corpus test acc %", "vs fbank there", "exp")
KEY_COLUMNS = 5
# Rows are built from several runs at once (not one results.json per row), so the spec's
# per-record `row` builder is unused; the spec gives results.py's parser the markers and columns.
TABLE = TableSpec(BEGIN, END, TITLE, COLUMNS, KEY_COLUMNS, (), lambda rec, label=None: [])


def _margin(x: float | None, base: float | None) -> str:
    return "-" if x is None or base is None else f"{100.0 * (x - base):+.2f}"


def _test(rec: dict | None) -> float | None:
    return None if rec is None or rec.get("test_accuracy") is None else float(rec["test_accuracy"])


def transfer_rows(corpus: str, exp_dirs: list[str | Path], ref_root: str | Path | None) -> list[list[str]]:
    """The rows of `corpus` for the probes in `exp_dirs` (each with a complete results.json, else a
    UserError naming it); the reference of each is ``ref_root/<its dir name>``."""
    recs = []
    for d in exp_dirs:
        rec = read_results(d)
        if rec is None:
            raise UserError(f"{Path(d) / 'results.json'}: missing or incomplete (has the probe finished?)")
        ref = read_results(Path(ref_root) / Path(d).name) if ref_root is not None else None
        recs.append((Path(d), rec, ref))
    fbank = {(r["task"], r["head"]): (r, ref) for _, r, ref in recs if r["upstream"] == "fbank"}
    rows = []
    for d, rec, ref in recs:
        base, base_ref = fbank.get((rec["task"], rec["head"]), (None, None))
        rows.append([corpus, str(rec["task"]), str(rec["upstream"]), str(rec["layer"]), str(rec["head"]),
                     percent(rec.get("dev_accuracy")), percent(rec.get("test_accuracy")),
                     _margin(_test(rec), _test(base)), percent(_test(ref)), _margin(_test(ref), _test(base_ref)),
                     str(d)])
    return [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]


def update_transfer_table(path: str | Path, rows: list[list[str]]) -> bool:
    """Insert or replace `rows` (by their key columns) in RESULTS.md `path`; True if it changed."""
    keys = {tuple(r[:KEY_COLUMNS]) for r in rows}
    return replace_rows(path, TABLE, lambda r: tuple(r[:KEY_COLUMNS]) not in keys, rows)
