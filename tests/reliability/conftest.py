"""Session fixtures of the reliability suite: a tiny wav data dir, a tiny pre-trained TERA
checkpoint (pre-trained once, a few steps) and a tiny CPC label/feature set."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_data_dir
from tests.reliability.harness import REPO, cli, verb

TERA_TINY = REPO / "egs" / "librispeech" / "conf" / "tera_tiny.yaml"
PHONE_TINY = REPO / "egs" / "librispeech" / "conf" / "downstream" / "phone_linear_tiny.yaml"
# Few steps, a checkpoint every 4: enough for kill/resume points, seconds on 2 cores.
PRETRAIN_OVERRIDES = ["runner.total_steps=12", "runner.save_step=4", "runner.log_step=4", "runner.plot_step=1000",
                      "runner.max_keep=10", "dataloader.batch_size=4", "upstream.transformer.hidden_size=32",
                      "upstream.transformer.intermediate_size=64", "upstream.transformer.num_attention_heads=2",
                      "features.num_mel_bins=40", "upstream.mask.mask_frequency=4"]


def pretrain_cmd(data: Path, exp: Path, *extra: str) -> list[str]:
    ov = [a for o in PRETRAIN_OVERRIDES for a in ("--override", o)]
    return verb("pretrain", "--config", TERA_TINY, *ov, "--device", "cpu", "--no-progress", *extra, data, exp)


@pytest.fixture(scope="session")
def wav_dir(tmp_path_factory) -> Path:
    """4 speakers x 2 utterances of 1 s, 16 kHz PCM WAV."""
    root = tmp_path_factory.mktemp("rel_data")
    return write_data_dir(root / "train", speakers=("1001", "1002", "1003", "1004"), utts_per_speaker=2,
                          duration=1.0, seed=3)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, wav_dir) -> Path:
    """A tiny TERA checkpoint pre-trained for 12 steps on `wav_dir`."""
    exp = tmp_path_factory.mktemp("rel_up") / "tera"
    r = cli(pretrain_cmd(wav_dir, exp))
    assert r.returncode == 0, r.stderr
    ckpt = exp / "states-12.ckpt"
    assert ckpt.is_file()
    return ckpt


@pytest.fixture(scope="session")
def cpc_set(tmp_path_factory):
    from tests.downstream.conftest import build_cpc

    return build_cpc(tmp_path_factory.mktemp("rel_cpc"), utts_per_speaker=4, dim=8)
