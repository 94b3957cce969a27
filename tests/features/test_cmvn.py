"""CMVN stats in Kaldi's layout and apply-cmvn semantics."""
import numpy as np
import pytest
import torch

from s3prl.errors import UserError
from s3prl.features import apply_cmvn, cmvn_stats, utterance_cmvn


def test_stats_by_hand():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[5.0, -1.0]], dtype=np.float32)
    s = cmvn_stats([a, torch.from_numpy(b)])
    assert s.dtype == np.float64 and s.shape == (2, 3)
    assert s.tolist() == [[9.0, 5.0, 3.0], [35.0, 21.0, 0.0]]


def test_apply_cmvn_matches_numpy():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 4)) * 3 + 7).astype(np.float32)
    s = cmvn_stats([x])
    m = apply_cmvn(x, s)
    assert np.allclose(m, x - x.mean(0), atol=1e-5)
    v = apply_cmvn(torch.from_numpy(x), s, norm_vars=True)
    assert isinstance(v, torch.Tensor)
    assert np.allclose(v.numpy(), (x - x.mean(0)) / x.std(0), atol=1e-4)
    with pytest.raises(UserError, match="count"):
        apply_cmvn(x, np.zeros((2, 5)))
    with pytest.raises(UserError, match="dim"):
        apply_cmvn(x[:, :3], s)


def test_utterance_cmvn():
    x = torch.randn(30, 5) * 4 + 2
    y = utterance_cmvn(x)
    assert torch.allclose(y.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(5), atol=1e-5)
