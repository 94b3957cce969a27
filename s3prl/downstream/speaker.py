"""Speaker classification on the CPC train-clean-100 split (S3PRL 2020 `speaker_frame`,
`speaker_utterance`; Mockingjay paper's one-layer RNN classifier;
github.com/s3prl/s3prl @ b72a2cd9, downstream/model.py).

The same seeded 90/10 train/dev split of ``train_split.txt`` and the same ``test_split.txt`` as
the phone task (an utterance-level split: the same speakers occur in train, dev and test, S3PRL
issue #179). Speaker = utterance-id prefix before the first '-'; class = position in the sorted
list of the speakers of train_split.txt (251 on real train-clean-100).

Heads: ``frame`` (linear per frame, the utterance's label broadcast to every valid frame; frame
accuracy), ``utterance`` (mean over valid frames, then linear; utterance accuracy), ``rnn``
(GRU 32 on every 5th frame, final state -> ReLU layer with dropout 0.5 -> linear; utterance
accuracy).
"""
from __future__ import annotations

from pathlib import Path

from s3prl.data.labels import TEST_SPLIT_FILE, TRAIN_SPLIT_FILE, speaker_classes, speaker_labels


def speaker_task_labels(splits: dict[str, list[str]],
                        label_dir: str | Path = "") -> tuple[dict[str, dict[str, int]], list[str]]:
    """(split -> utt -> speaker class, sorted speaker list) for the CPC splits.

    Classes come from train + dev (all of train_split.txt); a test speaker outside them is a
    UserError naming test_split.txt.
    """
    classes = speaker_classes(splits["train"] + splits["dev"])
    out = {}
    for name, utts in splits.items():
        src = Path(label_dir) / (TEST_SPLIT_FILE if name == "test" else TRAIN_SPLIT_FILE)
        out[name] = speaker_labels(utts, classes, str(src))
    return out, sorted(classes, key=classes.get)
