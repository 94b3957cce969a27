"""The repository's documentation stands alone.

A user has only this repository, so no tracked file may send a reader to notes that live outside
it (the design notes belong in docs/, facts are cited from their primary sources), and every
relative Markdown link in the user-facing documents must resolve to a file in the repository.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Pointers at documents that are not part of the repository: the project's private notes
# (reference/*.md, a sibling ../shared folder, SPEC.md, STYLE.md) and the bare names of those notes.
FOREIGN = re.compile(
    r"reference/[\w.-]+\.md"
    r"|\.\./shared\b"
    r"|\bSPEC\.md\b"
    r"|\bSTYLE\.md\b"
    r"|(?<![\w/.-])(?:kaldi|s3prl|deps|corpus)\.md\b"
)

LINK_DOCS = ["README.md", "CONTRIBUTING.md", "bench/README.md", "tests/reliability/README.md",
             "docs/**/*.md", "egs/*/RESULTS.md"]

# [text](target) and reference-style "[id]: target" definitions; images included.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:  # not a git checkout (e.g. an sdist)
        pytest.skip(f"git ls-files unavailable: {e}")
    return [p for p in out.decode("utf-8").split("\0") if p]


def foreign_pointers(text: str) -> list[tuple[int, str]]:
    """(line number, matched text) of every pointer at a document outside the repository."""
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), 1) for m in FOREIGN.finditer(line)]


def relative_links(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code blocks and code spans."""
    def blank(m: re.Match) -> str:  # keep line numbers
        return re.sub(r"[^\n]", " ", m.group(0))
    text = CODE_SPAN.sub(blank, FENCE.sub(blank, markdown))
    out = []
    for rx in (INLINE_LINK, REF_LINK):
        for m in rx.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")):
                continue  # URL, mailto:, in-page anchor
            out.append((text.count("\n", 0, m.start(1)) + 1, target))
    return sorted(out)


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    bad = []
    for line, target in relative_links(doc.read_text(encoding="utf-8")):
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not path:
            continue
        dest = (root / path.lstrip("/")) if path.startswith("/") else (doc.parent / path)
        dest = dest.resolve()
        rel = doc.relative_to(root).as_posix()
        if not dest.is_relative_to(root):
            bad.append(f"{rel}:{line}: link '{target}' leaves the repository")
        elif not dest.exists():
            bad.append(f"{rel}:{line}: link '{target}' does not resolve to a file")
    return bad


def test_no_pointers_to_documents_outside_the_repository():
    bad = []
    for rel in tracked_files():
        if rel == THIS:
            continue
        path = ROOT / rel
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        bad += [f"{rel}:{n}: points outside the repository: '{m}'" for n, m in foreign_pointers(text)]
    assert not bad, "\n".join(bad)


def link_docs() -> list[Path]:
    docs = sorted({p for pattern in LINK_DOCS for p in ROOT.glob(pattern) if p.is_file()})
    assert ROOT / "README.md" in docs and ROOT / "CONTRIBUTING.md" in docs
    return docs


def test_relative_markdown_links_resolve():
    bad = [msg for doc in link_docs() for msg in broken_links(doc)]
    assert not bad, "\n".join(bad)


def test_docs_notes_exist_and_are_linked_from_contributing():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for note in ("docs/style.md", "docs/formats.md", "docs/checkpoint-formats.md", "docs/dependencies.md"):
        assert (ROOT / note).is_file(), note
        assert f"]({note})" in text, f"CONTRIBUTING.md does not link {note}"


# The checkers themselves: a pointer or a broken link must be reported with its line.

def test_foreign_pointer_detector():
    text = "ok line\nsee reference/kaldi.md §3\nsee ../shared/x\nSPEC.md and STYLE.md\n(corpus.md §1)\n"
    assert foreign_pointers(text) == [(2, "reference/kaldi.md"), (3, "../shared"), (4, "SPEC.md"),
                                      (4, "STYLE.md"), (5, "corpus.md")]
    for fine in ("share_layer: true", "a shared layer", "docs/synthetic-corpus.md", "the spec",
                 "tools/synth/README.md", "egs/mosei/RESULTS.md"):
        assert foreign_pointers(fine) == [], fine


def test_broken_link_detector(tmp_path):
    tmp_path = tmp_path.resolve()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x\n", encoding="utf-8")
    doc = tmp_path / "README.md"
    doc.write_text("[ok](docs/a.md#part) [web](https://example.org) [anchor](#top)\n"
                   "```\n[in code](nowhere.md)\n```\n`[span](nowhere.md)`\n"
                   "[gone](docs/b.md)\n[out](../outside.md)\n[ref]: docs/c.md\n", encoding="utf-8")
    assert broken_links(doc, tmp_path) == ["README.md:6: link 'docs/b.md' does not resolve to a file",
                                 "README.md:7: link '../outside.md' leaves the repository",
                                 "README.md:8: link 'docs/c.md' does not resolve to a file"]
