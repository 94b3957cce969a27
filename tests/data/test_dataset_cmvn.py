"""FeatureDataset normalisation over external features (feats.scp): per-utterance, per-speaker
(cmvn.scp) and global CMVN, checked against numpy on the matrices kaldiio wrote."""
from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest

from s3prl.data.dataset import FeatureDataset
from s3prl.errors import UserError


def _data_dir(root: Path, dim: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """Six utterances of two speakers, log-mel-like (offset 15, per-dim scales)."""
    rng = np.random.default_rng(seed)
    mats = {f"{s}-1-{k:04d}": (15 + rng.normal(0, 1, (int(rng.integers(20, 40)), dim)) * np.arange(1, dim + 1))
            .astype(np.float32) for s in ("101", "202") for k in range(3)}
    root.mkdir(parents=True)
    kaldiio.save_ark(str(root / "feats.ark"), mats, scp=str(root / "feats.scp"))
    (root / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(mats)))
    return mats


def test_global_cmvn_uses_the_training_statistics(tmp_path):
    mats = _data_dir(tmp_path / "d")
    utts = sorted(mats)
    train, dev = utts[:4], utts[4:]
    tr = FeatureDataset(tmp_path / "d", cmvn="global", norm_vars=True, utts=train)
    x = np.concatenate([mats[u].astype(np.float64) for u in train])
    mean, std = x.mean(0), x.std(0)                      # Kaldi: biased variance
    assert tr.global_stats.shape == (2, 6) and tr.global_stats[0, -1] == len(x)
    np.testing.assert_allclose(tr[0]["feats"].numpy(), (mats[train[0]] - mean) / std, rtol=1e-4, atol=1e-4)
    allx = np.concatenate([tr[i]["feats"].numpy() for i in range(len(tr))])
    np.testing.assert_allclose(allx.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(allx.std(0), 1, atol=1e-4)
    # dev is normalised with train's statistics, not its own: its mean is not zero
    dv = FeatureDataset(tmp_path / "d", cmvn="global", norm_vars=True, utts=dev, global_stats=tr.global_stats)
    np.testing.assert_allclose(dv[1]["feats"].numpy(), (mats[dev[1]] - mean) / std, rtol=1e-4, atol=1e-4)
    own = FeatureDataset(tmp_path / "d", cmvn="global", norm_vars=True, utts=dev)
    assert not np.allclose(own[1]["feats"].numpy(), dv[1]["feats"].numpy(), atol=1e-3)
    # means only
    mo = FeatureDataset(tmp_path / "d", cmvn="global", utts=train)
    np.testing.assert_allclose(mo[0]["feats"].numpy(), mats[train[0]] - mean, rtol=1e-4, atol=1e-4)
    # speaker differences survive (per-utterance CMVN would remove the utterance means)
    assert np.abs(tr[0]["feats"].numpy().mean(0)).max() > 0.05
    ut = FeatureDataset(tmp_path / "d", cmvn="utterance", utts=train)
    np.testing.assert_allclose(ut[0]["feats"].numpy().mean(0), 0, atol=1e-4)


def test_global_cmvn_bad_input(tmp_path):
    mats = _data_dir(tmp_path / "d")
    _data_dir(tmp_path / "wide", dim=7)
    tr = FeatureDataset(tmp_path / "d", cmvn="global", utts=sorted(mats)[:4])
    with pytest.raises(UserError, match=r"wide: 7-dim features, but the global CMVN statistics are for 5-dim"):
        FeatureDataset(tmp_path / "wide", cmvn="global", global_stats=tr.global_stats)
    with pytest.raises(ValueError, match="only used with cmvn 'global'"):
        FeatureDataset(tmp_path / "d", cmvn="utterance", global_stats=tr.global_stats)
    with pytest.raises(UserError, match="cmvn: 'globl' is not one of none, utterance, speaker, global"):
        FeatureDataset(tmp_path / "d", cmvn="globl")


def _np_kaldi_delta(x: np.ndarray, window: int = 2) -> np.ndarray:
    """First-order Kaldi delta (edge frames replicated): sum_k k (x[t+k] - x[t-k]) / (2 sum_k k^2)."""
    T = len(x)
    pad = np.concatenate([np.repeat(x[:1], window, 0), x, np.repeat(x[-1:], window, 0)])
    num = sum(k * (pad[window + k:window + k + T] - pad[window - k:window - k + T]) for k in range(1, window + 1))
    return num / (2 * sum(k * k for k in range(1, window + 1)))


def test_deltas_follow_the_normalisation(tmp_path):
    # Kaldi's chain apply-cmvn | add-deltas: the deltas are those of the normalised features
    # (for per-utterance CMVN with variances, delta(raw) / std, not delta(raw)).
    mats = _data_dir(tmp_path / "d")
    u = sorted(mats)[0]
    x = mats[u].astype(np.float64)
    norm = (x - x.mean(0)) / x.std(0)
    ds = FeatureDataset(tmp_path / "d", cmvn="utterance", delta_order=1)
    assert ds.dim == 10
    got = ds[0]["feats"].numpy()
    np.testing.assert_allclose(got[:, :5], norm, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[:, 5:], _np_kaldi_delta(norm), rtol=1e-4, atol=1e-4)
    assert not np.allclose(got[:, 5:], _np_kaldi_delta(x), atol=1e-2)
    # order 2 with a wider window: 3 blocks; the global statistics stay those of the raw features
    tr = FeatureDataset(tmp_path / "d", cmvn="global", norm_vars=True, delta_order=2, delta_window=3)
    assert tr.dim == 15 and tr.global_stats.shape == (2, 6)
    np.testing.assert_allclose(tr[0]["feats"].numpy()[:, 5:10],
                               _np_kaldi_delta((x - tr.global_stats[0, :5] / tr.global_stats[0, 5])
                                               / np.sqrt(tr.global_stats[1, :5] / tr.global_stats[0, 5]
                                                         - (tr.global_stats[0, :5] / tr.global_stats[0, 5]) ** 2),
                                               window=3), rtol=1e-3, atol=1e-3)
    with pytest.raises(UserError, match="delta_order must be >= 0"):
        FeatureDataset(tmp_path / "d", delta_order=-1)
