"""Tests of s3prl.bin.plot_attention: one PNG per layer with a grid of heads, maps that are
row-stochastic, and one-line errors for bad layers / utterances / non-attention upstreams."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from s3prl.bin.plot_attention import plot_attention
from s3prl.errors import UserError
from tests.conftest import write_data_dir
from tests.upstream.test_hub import make_ckpt


def test_plot_attention(tmp_path):
    ckpt = make_ckpt(tmp_path / "t.ckpt", dr=3)
    data = write_data_dir(tmp_path / "data", speakers=("1001",), utts_per_speaker=1, duration=0.5)
    utt = "1001-100-0000"
    paths = plot_attention(ckpt, data, utt, tmp_path / "plots")
    assert [p.name for p in paths] == [f"{utt}.layer-1.png", f"{utt}.layer-2.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
    maps = np.load(tmp_path / "plots" / f"{utt}.attention.npz")
    t = (1 + (8000 - 400) // 160) // 3  # stacked frames
    for k in (1, 2):
        a = maps[f"layer_{k}"]
        assert a.shape == (4, t, t)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(UserError, match="layer 3 is out of range"):
        plot_attention(ckpt, data, utt, tmp_path / "p2", layers="3")
    with pytest.raises(UserError, match="--utt nope: not in"):
        plot_attention(ckpt, data, "nope", tmp_path / "p3")
    with pytest.raises(UserError, match="no self-attention"):
        plot_attention("fbank", data, utt, tmp_path / "p4")
    r = subprocess.run([sys.executable, "-m", "s3prl.bin.plot_attention", "--upstream", ckpt, "--layers", "last",
                        "--utt", utt, str(data), str(tmp_path / "cli")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [f"{utt}.attention.npz", f"{utt}.layer-2.png"]
