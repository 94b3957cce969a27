"""Opinion sentences with a known sentiment score, for the synthetic CMU-MOSEI stand-in.

CMU-MOSEI (Zadeh et al., ACL 2018) labels each sentence-level segment of a YouTube opinion video
with the mean of three annotators' sentiment ratings on the Likert scale -3 (highly negative) ..
+3 (highly positive). Here the sentiment of a sentence comes from its words only, so a classifier
can recover it from the spoken content and never from the voice:

* a template (`TEMPLATES`) gives the frame ("I thought the {noun} was {adj}.") and a topic noun;
* one opinion adjective of known polarity and strength (`ADJECTIVES`, strength 1..3, e.g.
  "good" +1, "great" +2, "wonderful" +3, "boring" -1, "awful" -2, "terrible" -3);
* optionally an intensifier ("really", "very", "truly") that adds 1 to the strength (at most 3);
* the "annotator" score is sign x strength plus a seeded rating noise of -1/3, 0 or +1/3 (three
  raters' mean moves in thirds), clipped to [-3, 3] and kept at least 1/3 away from 0, so
  strength 1 sentences give 2/3 .. 4/3 and |score| >= 0.1 always holds for opinion sentences.

Neutral sentences (`NEUTRAL`, score exactly 0) and short backchannels (`FILLERS`, "Okay.", score 0,
shorter than 1 s once spoken) also occur, as in real videos; the MOSEI filter (1-20 s, |s| >= 0.1)
removes them. Nothing here depends on global random state: every draw takes the caller's
`numpy.random.Generator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Opinion adjectives: word -> signed strength in {-3..-1, 1..3}.
ADJECTIVES: dict[str, int] = {
    "good": 1, "nice": 1, "decent": 1, "pleasant": 1, "solid": 1,
    "great": 2, "lovely": 2, "enjoyable": 2, "delightful": 2, "impressive": 2,
    "wonderful": 3, "amazing": 3, "fantastic": 3, "brilliant": 3, "outstanding": 3,
    "bad": -1, "boring": -1, "weak": -1, "dull": -1, "mediocre": -1,
    "poor": -2, "awful": -2, "disappointing": -2, "annoying": -2, "unpleasant": -2,
    "terrible": -3, "horrible": -3, "dreadful": -3, "pathetic": -3, "disgusting": -3,
}
INTENSIFIERS = ("really", "very", "truly", "extremely")
NOUNS = ("movie", "film", "story", "acting", "music", "ending", "book", "restaurant", "service", "phone",
         "camera", "hotel", "game", "show", "trailer", "soundtrack", "performance", "script", "product", "meal")
TEMPLATES = (
    "The {noun} was {adj}.",
    "I thought the {noun} was {adj}.",
    "Honestly, this {noun} is {adj}.",
    "In my opinion the {noun} is {adj}.",
    "My friends found the {noun} {adj}.",
    "Overall I would say the {noun} was {adj}.",
    "What can I say, the {noun} is {adj}.",
    "So today I want to tell you that the {noun} was {adj}.",
)
NEUTRAL = (
    "The {noun} came out last year.",
    "I watched the {noun} on a Tuesday.",
    "Let me tell you about the {noun}.",
    "The {noun} is about two hours long.",
    "I bought the {noun} at the store downtown.",
)
FILLERS = ("Okay.", "Right.", "Yes.", "Hmm.")


@dataclass(frozen=True)
class Sentence:
    """One spoken sentence and its sentiment: `score` in [-3, 3]; `kind` positive | negative |
    neutral | filler; `word` the opinion adjective ('' for neutral and filler)."""
    text: str
    score: float
    kind: str
    word: str = ""


def _rating_noise(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 0.0, 1.0])) / 3.0


def opinion_sentence(rng: np.random.Generator, positive: bool) -> Sentence:
    """A positive or negative opinion sentence with its score (see the module docstring)."""
    words = sorted(w for w, s in ADJECTIVES.items() if (s > 0) == positive)
    adj = words[int(rng.integers(len(words)))]
    strength = abs(ADJECTIVES[adj])
    phrase = adj
    if strength < 3 and rng.random() < 0.3:
        phrase = f"{INTENSIFIERS[int(rng.integers(len(INTENSIFIERS)))]} {adj}"
        strength += 1
    magnitude = min(3.0, max(1.0 / 3.0, strength + _rating_noise(rng)))
    noun = NOUNS[int(rng.integers(len(NOUNS)))]
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    score = round(magnitude if positive else -magnitude, 4)
    return Sentence(template.format(noun=noun, adj=phrase), score, "positive" if positive else "negative", adj)


def neutral_sentence(rng: np.random.Generator) -> Sentence:
    noun = NOUNS[int(rng.integers(len(NOUNS)))]
    return Sentence(NEUTRAL[int(rng.integers(len(NEUTRAL)))].format(noun=noun), 0.0, "neutral")


def filler_sentence(rng: np.random.Generator) -> Sentence:
    return Sentence(FILLERS[int(rng.integers(len(FILLERS)))], 0.0, "filler")


def video_script(rng: np.random.Generator, n_opinions: int, n_neutral: int = 1, n_fillers: int = 1) -> list[Sentence]:
    """The sentences of one video in speaking order: `n_opinions` opinion sentences, half positive
    and half negative (the odd one out positive or negative at random), plus neutral sentences
    and fillers, shuffled."""
    if n_opinions < 2:
        raise ValueError("a video needs at least 2 opinion sentences (one of each polarity)")
    n_pos = n_opinions // 2 + (int(rng.random() < 0.5) if n_opinions % 2 else 0)
    polarity = [True] * n_pos + [False] * (n_opinions - n_pos)
    out = [opinion_sentence(rng, p) for p in polarity]
    out += [neutral_sentence(rng) for _ in range(n_neutral)]
    out += [filler_sentence(rng) for _ in range(n_fillers)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]

