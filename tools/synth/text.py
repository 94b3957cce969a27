"""Utterance texts for the synthetic corpora: a vendored sentence list and LibriSpeech transcripts.

The sentences come from Debian's ``fortunes`` package (fortune-mod data files, 1:1.99.1-7.3),
filtered with the rules of docs/synthetic-corpus.md §3 plus a small blocklist of crude words, and
are vendored as ``sentences.txt`` next to this module so that a corpus does not depend on the
installed package. ``python text.py --extract [FORTUNE_DIR]`` regenerates that file.

Utterance texts are built by joining seeded-shuffled sentences to a random target length of
45-105 characters, which synthesizes to about 3-8 s of speech. Transcripts follow LibriSpeech:
upper case, punctuation removed except apostrophes.
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np

SENTENCES_FILE = Path(__file__).resolve().parent / "sentences.txt"
FORTUNE_DIR = "/usr/share/games/fortunes"

# fortune files that are mostly ascii art, code, jargon, quiz or dialogue formats
SKIP_FILES = {"ascii-art", "art", "translate-me", "zippy", "riddles", "perl", "linux", "linuxcookie",
              "debian", "computers", "definitions", "startrek", "knghtbrd", "off"}
# crude or loaded words: a sentence containing one is dropped (case-insensitive whole words; a
# trailing * also matches longer words, e.g. "sex*" matches "sexy")
BLOCKLIST = ("fuck*", "shit*", "cunt*", "dick", "dicks", "cock", "cocks", "puss*", "bitch*", "bastard*",
             "whore*", "slut*", "penis*", "vagina*", "sex*", "nigger*", "fag", "fags", "faggot*", "rape*",
             "raping", "rapist*", "orgasm*", "nude*", "naked", "masturbat*", "porn*", "tit", "tits",
             "boob*", "screw*", "ass", "asses", "asshole*", "damn*", "hell", "crap*", "piss*", "bullshit*",
             "jew", "jews", "jewish", "nazi*", "hitler*", "gay", "gays", "lesbian*", "homosexual*",
             "virgin*", "prostitut*", "condom*", "breast*", "suicid*", "negro*", "erotic*", "lust*",
             "seduc*", "kinky", "bra", "bras", "nipple*", "penile", "impoten*", "adulter*", "pregnan*")
_BLOCK_RE = re.compile(r"\b(?:" + "|".join(re.escape(w[:-1]) + r"\w*" if w.endswith("*") else re.escape(w) + r"\b"
                                          for w in BLOCKLIST) + r")", re.IGNORECASE)
# a "sentence" ending in one of these was split at an abbreviation ("Mr.", "St.")
ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Jr.", "Sr.", "vs.", "Mt.", "Prof.", "Rev.", "Gen.",
                 "Col.", "Capt.", "Lt.", "Sgt.", "Co.", "Inc.", "Ltd.", "etc.", "Ave.")
_ALLOWED_RE = re.compile(r"[A-Za-z ,.;'!?-]+")
_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _keep(s: str, min_chars: int, max_chars: int) -> bool:
    words = s.split()
    if not (min_chars <= len(s) <= max_chars and len(words) >= 4):
        return False
    if not _ALLOWED_RE.fullmatch(s) or s[-1] not in ".!?" or not s[0].isupper():
        return False
    if any(len(w.strip(",.;!?'-")) > 1 and w.strip(",.;!?'-").isupper() for w in words):
        return False  # acronyms and SHOUTED speaker tags
    if re.search(r"\b[b-hj-z]\b", s, re.IGNORECASE) or "--" in s or "''" in s:
        return False  # stray single letters, dialogue dashes
    if s.endswith(ABBREVIATIONS) or s.split()[0] in ABBREVIATIONS:
        return False
    return not _BLOCK_RE.search(s)


def extract_sentences(fortune_dir: str = FORTUNE_DIR, min_chars: int = 20, max_chars: int = 110) -> list[str]:
    """Filtered, distinct, sorted sentences from the fortune files in `fortune_dir`
    (docs/synthetic-corpus.md §3): attribution lines dropped, cookies split into sentences, 20-110
    characters, >= 4 words, only letters and ``,.;'!?-``, no acronyms, stray single letters, digits
    or blocklisted words."""
    out = set()
    for name in sorted(os.listdir(fortune_dir)):
        path = os.path.join(fortune_dir, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path) or name in SKIP_FILES:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            cookies = f.read().split("\n%\n")
        for cookie in cookies:
            lines = [ln.strip() for ln in cookie.split("\n")]
            body = " ".join(ln for ln in lines if ln and not ln.startswith("--"))
            body = re.sub(r"\s+", " ", body)
            out.update(s for s in _SPLIT_RE.split(body) if _keep(s, min_chars, max_chars))
    return sorted(out)


def load_sentences(path: str | Path = SENTENCES_FILE) -> list[str]:
    """The vendored sentence list, one sentence a line."""
    with open(path, encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f if ln.strip()]


def make_texts(sentences: list[str], rng: np.random.Generator, n: int, lo: int = 45, hi: int = 105) -> list[str]:
    """`n` utterance texts of about `lo`..`hi` characters, each a run of shuffled sentences.

    Sentences are taken in the order of one seeded permutation, so texts are distinct until the
    list is used up (8k sentences give about 4k texts before any repeats)."""
    if not sentences:
        raise ValueError("empty sentence list")
    order = rng.permutation(len(sentences))
    texts: list[str] = []
    cur, k = "", 0
    target = int(rng.integers(lo, hi))
    while len(texts) < n:
        s = sentences[order[k % len(order)]]
        k += 1
        if not cur:
            cur = s
        elif len(cur) + 1 + len(s) <= hi + 10:
            cur += " " + s
        elif len(cur) >= lo:
            target = 0  # the next sentence does not fit: close this text
        if len(cur) >= target:
            texts.append(cur)
            cur, target = "", int(rng.integers(lo, hi))
    return texts


def transcript(text: str) -> str:
    """LibriSpeech-style transcript: upper case, hyphens to spaces, punctuation except ' removed."""
    t = re.sub(r"[^A-Z' ]", " ", text.upper().replace("-", " "))
    return " ".join(t.split())


def _main() -> None:
    ap = argparse.ArgumentParser(description="regenerate sentences.txt from the fortunes package")
    ap.add_argument("--extract", nargs="?", const=FORTUNE_DIR, metavar="FORTUNE_DIR", required=True)
    ap.add_argument("--output", default=str(SENTENCES_FILE))
    a = ap.parse_args()
    sents = extract_sentences(a.extract)
    with open(a.output, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(s + "\n" for s in sents))
    print(f"{len(sents)} sentences -> {a.output}")


if __name__ == "__main__":
    _main()
