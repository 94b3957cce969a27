#!/usr/bin/env python3
"""The pronunciation lexicon of a synthetic LibriSpeech corpus: ``OUT/lexicon.txt``.

Kaldi's ``lexicon.txt`` format (http://kaldi-asr.org/doc/data_prep.html, "Creating the lang
directory"): one ``WORD PHONE PHONE ...`` line per pronunciation, phones from the 41 CPC/Kaldi
classes of ``phones.py`` (ARPAbet without stress, SIL, SPN), plus the two LibriSpeech s5 entries
``!SIL SIL`` and ``<UNK> SPN``.

Pronunciations are what the synthesizers' front end says for each word: festival's CMU lexicon
(festlex-cmu, the dictionary the HTS voice and, through its cmulex copy, flite read) with its
letter-to-sound rules for words the dictionary lacks, looked up with ``lex.lookup`` and mapped to
the 41 classes by ``phones.map_festival`` (the same mapping as the frame labels). espeak-ng speakers
use their own rules, so their realisation of a word can differ from the lexicon entry, as real
speakers' do. One festival call for all words; the output depends only on the corpus transcripts
and the festival/festlex-cmu versions.

    python tools/synth/lexicon.py OUT      # writes OUT/lexicon.txt for an existing corpus
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from phones import map_festival  # noqa: E402

from s3prl.atomic import atomic_write_text  # noqa: E402
from s3prl.errors import UserError, cli_main  # noqa: E402

SPECIAL = [("!SIL", ["SIL"]), ("<UNK>", ["SPN"])]
_ENTRY = re.compile(r'^\("?(?P<word>[^" ]*)"? \S+ (?P<body>.*)\)$')


def corpus_words(out: Path) -> list[str]:
    """Sorted distinct words of every ``*.trans.txt`` under ``out/LibriSpeech``."""
    words: set[str] = set()
    files = sorted((out / "LibriSpeech").rglob("*.trans.txt"))
    if not files:
        raise UserError(f"{out}/LibriSpeech: no *.trans.txt files (not a synthetic LibriSpeech corpus?)")
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            words.update(line.split()[1:])
    return sorted(words)


def _key(word: str) -> str:
    """The festival lookup key: lower case, without leading/trailing apostrophes ('ROUND -> round)."""
    return word.lower().strip("'") or word.lower()


def festival_pronunciations(words: list[str]) -> dict[str, list[str]]:
    """WORD -> ARPAbet phones (41 classes) from festival's CMU lexicon, one festival process."""
    if not words:
        return {}
    for w in words:
        if not re.fullmatch(r"[A-Z']+", w):
            raise UserError(f"word '{w}': a synthetic transcript word holds only A-Z and '")
    with tempfile.TemporaryDirectory(prefix="synth_lex_") as tmp:
        script = Path(tmp) / "lookup.scm"
        lines = ['(lex.select "cmu")']
        lines += [f'(format t "%l\\n" (lex.lookup "{_key(w)}" nil))' for w in words]
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        r = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True)
    out = [ln for ln in r.stdout.splitlines() if ln.startswith("(")]
    if r.returncode != 0 or len(out) != len(words):
        raise UserError(f"festival lexicon lookup failed ({len(out)} of {len(words)} words): "
                        f"{r.stderr.strip()[-200:]} (apt-get install festival festlex-cmu)")
    prons: dict[str, list[str]] = {}
    for w, ln in zip(words, out):
        m = _ENTRY.match(ln)
        if not m or m["word"].lower() != _key(w):
            raise UserError(f"festival lexicon lookup of '{w}': unexpected answer {ln!r}")
        phones = [p for syl_phone in re.findall(r"\(\(([^()]*)\) \d\)", m["body"]) for p in syl_phone.split()]
        mapped = [q for p in phones for q in map_festival(p)]
        prons[w] = [q for q in mapped if q != "SIL"] or ["SPN"]
    return prons


def lexicon_text(words: list[str]) -> str:
    prons = festival_pronunciations(words)
    lines = [f"{w} {' '.join(p)}\n" for w, p in SPECIAL]
    lines += [f"{w} {' '.join(prons[w])}\n" for w in words]
    return "".join(lines)


def write_lexicon(out: str | Path) -> Path:
    """Write ``out/lexicon.txt`` (atomically) for the corpus at `out`; return its path."""
    out = Path(out)
    path = out / "lexicon.txt"
    atomic_write_text(path, lexicon_text(corpus_words(out)))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write OUT/lexicon.txt for a synthetic LibriSpeech corpus")
    ap.add_argument("out", help="corpus directory (holds LibriSpeech/)")
    a = ap.parse_args(argv)
    print(write_lexicon(a.out))
    return 0


if __name__ == "__main__":
    cli_main(main)
