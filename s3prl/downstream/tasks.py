"""The table of downstream tasks: name -> `TaskSpec` (s3prl.downstream.runner).

One entry per task; the training CLI (``python -m s3prl.bin.train_downstream --task NAME``) and
the results table (``python -m s3prl.bin.results_table --table NAME``) look tasks up here and
nowhere else, as S3PRL resolves a downstream by name (github.com/s3prl/s3prl v0.4.18,
s3prl/downstream/runner.py, one directory per task with a fixed interface).

- ``phone``: s3prl.downstream.task.PHONE, CPC phone classification (frame accuracy);
- ``speaker``: s3prl.downstream.task.SPEAKER, CPC speaker classification;
- ``sentiment``: s3prl.downstream.sentiment.SENTIMENT, CMU-MOSEI 2-class / 7-class / regression;
- ``asr``: s3prl.downstream.asr.ASR, BiLSTM CTC recognition, greedy decoding (WER / CER);
- ``hybrid``: s3prl.downstream.hybrid.HYBRID, the DNN of the hybrid DNN-HMM recognizer on GMM
  alignments, decoded through HCLG (WER / CER). Its entry is lazy: the Kaldi libraries it runs on
  (kaldi-hmm-gmm, kaldifst, kaldilm: s3prl.hybrid) are imported when a hybrid run starts, not
  when this table is read, so no other task's CLI loads them.

A new task is one new module defining its TaskSpec, then ``register(SPEC)`` (or a line in the
table below to ship it with the package): tests/downstream/test_task_registry.py does exactly
that with a mock task.
"""
from __future__ import annotations

from s3prl.downstream.asr import ASR
from s3prl.downstream.hybrid import HYBRID
from s3prl.downstream.runner import TaskSpec
from s3prl.downstream.sentiment import SENTIMENT
from s3prl.downstream.task import PHONE, SPEAKER
from s3prl.errors import UserError

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (PHONE, SPEAKER, SENTIMENT, ASR, HYBRID)}


def get_task(name: str) -> TaskSpec:
    """The task called `name`; an unknown name is a UserError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown downstream task '{name}' (valid: {', '.join(sorted(TASKS))})") from None


def register(spec: TaskSpec) -> TaskSpec:
    """Add `spec` to the table under `spec.name` (a name already taken is an error); returns it."""
    if spec.name in TASKS:
        raise ValueError(f"downstream task '{spec.name}' is already registered")
    TASKS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove the task `name` from the table (registered with `register`)."""
    TASKS.pop(name, None)


__all__ = ["TASKS", "get_task", "register", "unregister"]
