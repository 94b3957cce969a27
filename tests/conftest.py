"""Shared pytest fixtures.

- `repo_root`: the repository root (a Path).
- `make_data_dir`: a function writing a small, valid Kaldi data directory with real 16-bit PCM
  WAV files, for tests that need one::

      def test_x(tmp_path, make_data_dir):
          d = make_data_dir(tmp_path / "data" / "train", speakers=("103", "1034"), utts_per_speaker=3)

  Utterance ids are ``<spk>-<chapter>-<nnnn>`` (LibriSpeech style, speaker id as prefix joined with
  ``-``), audio is a seeded mix of a speaker-dependent tone and noise, written under ``<dir>/wav/``
  and referenced by absolute path from wav.scp. Files written: wav.scp, text, utt2spk, spk2utt,
  utt2dur (all C-sorted, LF-terminated); it passes `validate_data_dir(d, no_feats=True)`.
- `write_tiny_tera(path, sequence_length=1500)`: a random 2-layer TERA checkpoint (hidden 32) over
  80-dim Kaldi fbank, written by our own code; returns the path as a string.
- `link_recipe(name, rdir)`: ``rdir`` made a recipe dir of links to the files of ``egs/<name>``
  (run.sh, cmd.sh, path.sh, conf/, local/, utils/, ...), so that a test runs the real recipe while
  its outputs (data/, exp/, dump/, RESULTS.md, ...) land in ``rdir``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
_WORDS = ("HELLO", "WORLD", "SPEECH", "MODEL", "TERA", "MOCKINGJAY", "KALDI", "DATA")


def write_tiny_tera(path: str | Path, sequence_length: int = 1500) -> str:
    """A random 2-layer TERA checkpoint (hidden 32, seeded) over 80-dim fbank; a short
    `sequence_length` makes 1-s inputs go through windows."""
    import torch

    from s3prl.features.config import FeatureConfig
    from s3prl.upstream.checkpoint import save_upstream_checkpoint
    from s3prl.upstream.config import TransformerConfig, UpstreamConfig
    from s3prl.upstream.objectives import MaskedReconstruction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = UpstreamConfig(model="tera", transformer=TransformerConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        sequence_length=sequence_length))
    save_upstream_checkpoint(path, objective=MaskedReconstruction(cfg, 80), optimizer_state=None,
                             scheduler_state=None, step=7, runner_config={}, upstream_cfg=cfg,
                             audio=FeatureConfig().to_s3prl_audio())
    return str(path)


# What a recipe run writes into its own directory: never linked into a test's copy of the recipe.
RECIPE_OUTPUTS = ("RESULTS.md", "data", "exp", "dump", "feats", "downloads")


def link_recipe(name: str, rdir: str | Path) -> Path:
    """Make ``rdir`` (created with its parents) a copy of ``egs/<name>`` made of links to every
    entry of the real recipe but its outputs (RECIPE_OUTPUTS); return it as a Path."""
    import os

    rdir = Path(rdir)
    rdir.mkdir(parents=True, exist_ok=True)
    for f in sorted((REPO_ROOT / "egs" / name).iterdir()):
        if f.name not in RECIPE_OUTPUTS:
            os.symlink(os.path.realpath(f), rdir / f.name)
    return rdir


def pytest_collection_modifyitems(config, items) -> None:
    """Test files holding `slow` tests (the recipe runs, minutes each) run first; the sort is
    stable, so every file keeps its tests' order and the files their order among themselves. Under
    `make test`'s worker processes (pytest-xdist, --dist loadfile: files handed out in this order)
    the longest files start at once, instead of one worker being left alone with them at the end."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root directory."""
    return REPO_ROOT


def write_data_dir(path: str | Path, *, speakers: Sequence[str] = ("1001", "1002"), utts_per_speaker: int = 2,
                   duration: float = 0.5, sample_rate: int = 16000, seed: int = 0, text: bool = True) -> Path:
    """Write a small valid data directory at `path` (see the module docstring); return its Path."""
    import soundfile as sf

    d = Path(path)
    wav_dir = d / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wav_scp, utt2spk, texts, utt2dur = {}, {}, {}, {}
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    for si, spk in enumerate(speakers):
        f0 = 120.0 + 40.0 * si
        for k in range(utts_per_speaker):
            utt = f"{spk}-{100 + si}-{k:04d}"
            x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.1 * k) * t) + 0.05 * rng.standard_normal(n)
            wav = wav_dir / f"{utt}.wav"
            sf.write(str(wav), x.astype(np.float32), sample_rate, subtype="PCM_16")
            wav_scp[utt] = str(wav.resolve())
            utt2spk[utt] = spk
            texts[utt] = " ".join(_WORDS[(si + k + j) % len(_WORDS)] for j in range(3))
            utt2dur[utt] = f"{n / sample_rate:g}"

    def write(name: str, mapping: dict) -> None:
        keys = sorted(mapping, key=lambda s: s.encode())
        (d / name).write_text("".join(f"{key} {mapping[key]}\n" for key in keys))

    write("wav.scp", wav_scp)
    write("utt2spk", utt2spk)
    spk2utt = {}
    for utt in sorted(utt2spk, key=lambda s: s.encode()):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    write("spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    write("utt2dur", utt2dur)
    if text:
        write("text", texts)
    return d


@pytest.fixture
def make_data_dir() -> Callable[..., Path]:
    """The `write_data_dir(path, *, speakers, utts_per_speaker, duration, sample_rate, seed, text)` helper."""
    return write_data_dir
