"""Output units of the CTC recognizer: sentencepiece characters or BPE trained on the training text.

Uses sentencepiece (github.com/google/sentencepiece; docs/dependencies.md: 0.2.x trains bpe and char
models in well under a second on a few thousand lines). The model is trained with

* ``model_type`` ``char`` (one unit per character plus the word-boundary piece ``▁``; the unit set
  is exactly the characters of the training text) or ``bpe`` (``vocab_size`` pieces at most:
  ``hard_vocab_limit=False`` lets a small corpus give fewer; ``character_coverage=1.0`` keeps
  every training character as a piece);
* id 0 = ``<blank>`` (sentencepiece's pad piece, a control symbol that decoding skips), so the
  CTC blank is 0 and every other output index is a sentencepiece id; id 1 = ``<unk>``; no BOS/EOS;
* ``required_chars`` (config) adds characters the training text may lack;
* ``normalization_rule_name=identity``: transcripts are scored as written, so the units must not
  rewrite them (NFKC would, e.g. full-width letters).

Text outside the unit set (a character never seen in training) cannot be a CTC target nor a
fair reference: `Tokenizer.encode` raises a UserError naming the utterance and the characters.
The model file (``tokenizer.model``) is saved in the experiment dir and is all decoding needs.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from s3prl.errors import UserError

BLANK_ID = 0
UNK_ID = 1
MODEL_FILE = "tokenizer.model"


@dataclass
class TokenizerConfig:
    """mode: char | bpe. vocab_size: the BPE vocabulary (an upper bound on small corpora;
    ignored in char mode, where the characters of the training text decide it).
    required_chars: characters that are units even when the training text lacks them
    (sentencepiece ``required_chars``), e.g. the LibriSpeech alphabet ``A-Z'`` for a small
    training set that never says Q; "" = exactly the training text's characters."""
    mode: Literal["char", "bpe"] = "char"
    vocab_size: int = 1000
    required_chars: str = ""

    def __post_init__(self):
        if self.vocab_size < 4:
            raise ValueError(f"vocab_size must be >= 4, got {self.vocab_size}")


class Tokenizer:
    """A trained sentencepiece model with the CTC conventions of this module.

    Args:
        model: path of a ``.model`` file, or its serialized bytes.
    """

    def __init__(self, model: str | Path | bytes, source: str | None = None):
        import sentencepiece as spm

        self.source = source or (str(model) if not isinstance(model, bytes) else "tokenizer")
        if isinstance(model, bytes):
            proto = model
        else:
            try:
                proto = Path(model).read_bytes()
            except OSError as e:
                raise UserError(f"{model}: cannot read the tokenizer model: {e.strerror}") from None
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(proto)
        except Exception:
            raise UserError(f"{self.source}: not a sentencepiece model") from None
        if self.sp.pad_id() != BLANK_ID or self.sp.unk_id() != UNK_ID:
            raise UserError(f"{self.source}: not a CTC tokenizer (needs <blank> = 0 and <unk> = 1; "
                            f"train it with s3prl.downstream.tokenizer.train_tokenizer)")
        self.proto = proto

    @property
    def vocab_size(self) -> int:
        """Number of CTC output classes (blank and unk included)."""
        return int(self.sp.get_piece_size())

    @property
    def blank_id(self) -> int:
        return BLANK_ID

    def pieces(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.vocab_size)]

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` (whitespace aside) that no unit covers, in order of appearance."""
        seen: list[str] = []
        for c in text:
            if c.isspace() or c in seen:
                continue
            if self.sp.piece_to_id(c) == UNK_ID:
                seen.append(c)
        return seen

    def encode(self, text: str, utt: str | None = None, where: str | None = None) -> list[int]:
        """Transcript -> unit ids (each >= 2). Unknown characters are a UserError naming
        `where` (the text file) and `utt`."""
        ids = list(self.sp.encode(" ".join(text.split())))
        if UNK_ID in ids:
            bad = self.unknown_chars(text) or ["?"]
            who = f"utterance '{utt}'" if utt else "text"
            raise UserError(f"{where or self.source}: {who} has characters outside the unit set "
                            f"({self.source}): {' '.join(repr(c) for c in bad)}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Unit ids -> text (blank and unk dropped, ``▁`` turned into spaces)."""
        keep = [int(i) for i in ids if int(i) not in (BLANK_ID, UNK_ID)]
        return " ".join(self.sp.decode(keep).split())

    def save(self, path: str | Path) -> Path:
        from s3prl.atomic import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(self.proto)
        return path


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, source: str = "training text") -> Tokenizer:
    """Train the unit set on `texts` (one transcript each; `source` names them in errors).

    sentencepiece's char and BPE training makes no random choice (no sampling of the input, one
    thread): the same text gives the same model bytes.
    """
    import sentencepiece as spm

    lines = [" ".join(t.split()) for t in texts]
    lines = [t for t in lines if t]
    if not lines:
        raise UserError(f"{source}: no transcripts to train the tokenizer on (empty text?)")
    required = "".join(sorted({c for c in cfg.required_chars if not c.isspace()}))
    chars = sorted({c for t in lines for c in t if not c.isspace()} | set(required))
    # char: <blank> <unk> ▁ + every character; hard_vocab_limit=False lets bpe stop early.
    vocab = len(chars) + 3 if cfg.mode == "char" else cfg.vocab_size
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, model_type=cfg.mode, vocab_size=vocab,
            character_coverage=1.0, pad_id=BLANK_ID, pad_piece="<blank>", unk_id=UNK_ID, bos_id=-1, eos_id=-1,
            normalization_rule_name="identity", hard_vocab_limit=False, num_threads=1, required_chars=required,
            max_sentence_length=1 << 16, minloglevel=2)
    except RuntimeError as e:
        raise UserError(f"{source}: sentencepiece training failed: {str(e).splitlines()[0]}") from None
    return Tokenizer(model.getvalue(), source=MODEL_FILE)


__all__ = ["TokenizerConfig", "Tokenizer", "train_tokenizer", "BLANK_ID", "UNK_ID", "MODEL_FILE"]
