"""Word and character error rates by Levenshtein alignment, written the way Kaldi writes them.

Follows Kaldi's ``compute-wer`` (kaldi-asr/kaldi, src/bin/compute-wer.cc): errors = substitutions +
deletions + insertions of the minimum-cost alignment of hypothesis to reference, WER = 100 * errors
/ reference tokens, and the summary line

    %WER 12.34 [ 56 / 454, 7 ins, 8 del, 41 sub ]

followed by ``%SER`` (sentences with at least one error) and ``Scored N sentences, 0 not present
in hyp.``. Per-utterance details use the four-line layout of Kaldi's
``utils/scoring/wer_per_utt_details.pl`` (``ref`` / ``hyp`` / ``op`` / ``#csid`` rows, ``***``
marking the empty side of an insertion or deletion).

Tokens: words are the whitespace-separated fields; characters (CER) are the characters of the
transcript with runs of whitespace reduced to one space, the space itself counted as a character,
as the S3PRL ASR downstream scores CER on the transcript strings.

The total error count of an alignment is unique; how it splits into ins/del/sub is not. The
backtrace prefers, among minimum-cost paths, a match or substitution, then a deletion, then an
insertion, so ``A B`` vs ``C`` is 1 sub + 1 del, never 2 del + 1 ins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from s3prl.errors import UserError

EPS = "***"


@dataclass
class Alignment:
    """One utterance's alignment: `ops` is a list of (op, ref_token, hyp_token) with op in
    C (correct), S, D (ref_token only), I (hyp_token only); the missing side is None."""
    ops: list[tuple[str, str | None, str | None]]

    @property
    def counts(self) -> dict[str, int]:
        c = {"C": 0, "S": 0, "D": 0, "I": 0}
        for op, _, _ in self.ops:
            c[op] += 1
        return c

    @property
    def errors(self) -> int:
        c = self.counts
        return c["S"] + c["D"] + c["I"]

    @property
    def ref_len(self) -> int:
        c = self.counts
        return c["C"] + c["S"] + c["D"]


def align(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Minimum edit-distance alignment of token sequences (unit costs; see the module docstring
    for how ties are broken)."""
    n, m = len(ref), len(hyp)
    # d[i][j]: cost of aligning ref[:i] with hyp[:j]
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        d[i][0] = i
    for j in range(1, m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        ri = ref[i - 1]
        row, prev = d[i], d[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if ri == hyp[j - 1] else 1)
            row[j] = min(diag, prev[j] + 1, row[j - 1] + 1)
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 1):
            ops.append(("C" if ref[i - 1] == hyp[j - 1] else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and d[i][j] == d[i - 1][j] + 1:
            ops.append(("D", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return Alignment(ops)


def tokens(text: str, unit: str) -> list[str]:
    """Split a transcript into scoring units: "word" (whitespace fields) or "char" (characters,
    whitespace runs as one space, leading/trailing whitespace dropped)."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return list(" ".join(text.split()))
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


@dataclass
class ErrorRate:
    """Corpus-level counts and the per-utterance alignments (utterance order = reference order)."""
    unit: str
    ins: int = 0
    dels: int = 0
    sub: int = 0
    ref_len: int = 0
    sentences: int = 0
    sentence_errors: int = 0
    per_utt: dict[str, Alignment] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.sub

    @property
    def rate(self) -> float:
        """Error rate in percent (inf when there are errors but no reference tokens)."""
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else math.inf
        return 100.0 * self.errors / self.ref_len

    @property
    def name(self) -> str:
        return "WER" if self.unit == "word" else "CER"

    def summary(self) -> str:
        """The compute-wer summary line, e.g. ``%WER 12.34 [ 56 / 454, 7 ins, 8 del, 41 sub ]``."""
        return (f"%{self.name} {self.rate:.2f} [ {self.errors} / {self.ref_len}, {self.ins} ins, "
                f"{self.dels} del, {self.sub} sub ]")

    def ser_line(self) -> str:
        ser = 100.0 * self.sentence_errors / self.sentences if self.sentences else 0.0
        return f"%SER {ser:.2f} [ {self.sentence_errors} / {self.sentences} ]"

    def report(self) -> str:
        """What Kaldi's compute-wer prints: summary, %SER and the scored-sentences line."""
        return (f"{self.summary()}\n{self.ser_line()}\n"
                f"Scored {self.sentences} sentences, 0 not present in hyp.\n")

    def details(self) -> str:
        """Per-utterance alignments in the wer_per_utt_details.pl layout."""
        lines = []
        for utt, al in self.per_utt.items():
            refs, hyps, ops = [], [], []
            for op, r, h in al.ops:
                r = EPS if r is None else _shown(r)
                h = EPS if h is None else _shown(h)
                w = max(len(r), len(h), len(op))
                refs.append(r.ljust(w))
                hyps.append(h.ljust(w))
                ops.append(op.ljust(w))
            c = al.counts
            lines.append(f"{utt} ref  " + "  ".join(refs).rstrip())
            lines.append(f"{utt} hyp  " + "  ".join(hyps).rstrip())
            lines.append(f"{utt} op   " + "  ".join(ops).rstrip())
            lines.append(f"{utt} #csid {c['C']} {c['S']} {c['I']} {c['D']}")
        return "\n".join(lines) + ("\n" if lines else "")


def _shown(token: str) -> str:
    # A space (CER unit) would vanish in the space-separated detail rows.
    return "<space>" if token == " " else token


def error_rate(refs: Mapping[str, str], hyps: Mapping[str, str], unit: str = "word",
               hyp_source: str = "hypotheses") -> ErrorRate:
    """Score `hyps` against `refs` (utt -> transcript). Every reference utterance needs a
    hypothesis and vice versa (compute-wer's strict mode): a mismatch is a UserError naming the
    utterance and `hyp_source`."""
    missing = [u for u in refs if u not in hyps]
    if missing:
        raise UserError(f"{hyp_source}: no hypothesis for utterance '{missing[0]}' ({len(missing)} missing)")
    extra = [u for u in hyps if u not in refs]
    if extra:
        raise UserError(f"{hyp_source}: utterance '{extra[0]}' has no reference transcript")
    er = ErrorRate(unit)
    for utt, ref in refs.items():
        al = align(tokens(ref, unit), tokens(hyps[utt], unit))
        c = al.counts
        er.ins += c["I"]
        er.dels += c["D"]
        er.sub += c["S"]
        er.ref_len += al.ref_len
        er.sentences += 1
        er.sentence_errors += al.errors > 0
        er.per_utt[utt] = al
    return er


def write_decode_dir(decode_dir: str | Path, refs: Mapping[str, str], hyps: Mapping[str, str]) -> dict:
    """Score and write a decode dir: ``hyp.txt`` and ``ref.txt`` (Kaldi `text` format, sorted),
    ``wer`` and ``cer`` (compute-wer report, then a blank line and the per-utterance details).
    Returns {"wer", "cer" (percent), "wer_counts", "cer_counts"}."""
    from s3prl.atomic import atomic_write_text
    from s3prl.data.kaldi_dir import write_kv

    decode_dir = Path(decode_dir)
    decode_dir.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    for unit, name in (("word", "wer"), ("char", "cer")):
        er = error_rate(refs, hyps, unit, hyp_source=str(decode_dir / "hyp.txt"))
        atomic_write_text(decode_dir / name, er.report() + "\n" + er.details())
        out[name] = er.rate
        out[f"{name}_counts"] = {"errors": er.errors, "ref": er.ref_len, "ins": er.ins, "del": er.dels,
                                 "sub": er.sub, "sentences": er.sentences}
    write_kv(decode_dir / "ref.txt", {u: " ".join(t.split()) for u, t in refs.items()})
    write_kv(decode_dir / "hyp.txt", {u: " ".join(t.split()) for u, t in hyps.items()})
    return out


def read_summary(path: str | Path) -> tuple[float, int, int, int, int, int]:
    """Parse the first line of a ``wer``/``cer`` file: (rate, errors, ref, ins, del, sub)."""
    import re

    path = Path(path)
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    m = re.match(r"^%[WC]ER (\S+) \[ (\d+) / (\d+), (\d+) ins, (\d+) del, (\d+) sub \]$", first)
    if not m:
        raise UserError(f"{path}:1: not a compute-wer summary line: {first!r}")
    return (float(m.group(1)), *(int(m.group(i)) for i in range(2, 7)))


__all__ = ["Alignment", "ErrorRate", "align", "tokens", "error_rate", "write_decode_dir", "read_summary"]
