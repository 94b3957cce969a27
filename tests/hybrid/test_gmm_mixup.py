"""Mixing up of the monophone GMM (s3prl.hybrid.gmm.split_by_count): the same number of Gaussians
per pdf as kaldi-hmm-gmm's own AmDiagGmm::SplitByCount (Kaldi's GetSplitTargets), Kaldi's split of
the heaviest Gaussian (weights halved, means moved -/+ the same step), and reproducible: the
perturbations come from the given generator, where Kaldi's come from the unseeded C rand()."""
from __future__ import annotations

import numpy as np
import pytest

khg = pytest.importorskip("kaldi_hmm_gmm")

from s3prl.hybrid.gmm import split_by_count, split_targets  # noqa: E402


def _am(num_pdfs: int = 6, dim: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    am = khg.AmDiagGmm()
    for p in range(num_pdfs):
        n = 1 + p % 2
        g = khg.DiagGmm(nmix=n, dim=dim)
        g.set_weights(np.full(n, 1.0 / n, dtype=np.float32) if n == 1 else np.array([0.3, 0.7], dtype=np.float32))
        g.set_means(rng.standard_normal((n, dim)).astype(np.float32))
        g.set_invvars(rng.uniform(0.5, 2.0, (n, dim)).astype(np.float32))
        g.compute_gconsts()
        am.add_pdf(g)
    return am


OCCS = np.array([500.0, 40.0, 3000.0, 0.0, 900.0, 120.0], dtype=np.float32)


@pytest.mark.parametrize("target,power,min_count", [(20, 0.25, 20.0), (40, 0.25, 20.0), (30, 0.5, 5.0), (15, 0.25, 20.0)])
def test_gaussians_per_pdf_as_kaldi(target, power, min_count):
    ours, kaldi = _am(), _am()
    split_by_count(ours, OCCS, target, power=power, min_count=min_count, perturb_factor=0.01,
                   rng=np.random.default_rng(1))
    kaldi.split_by_count(state_occs=OCCS, target_components=target, perturb_factor=0.01, power=power,
                         min_count=min_count)
    assert [ours.num_gauss_in_pdf(p) for p in range(len(OCCS))] == \
        [kaldi.num_gauss_in_pdf(p) for p in range(len(OCCS))]


def test_targets_follow_occupancy_and_min_count():
    n = split_targets(OCCS, 20, power=0.25, min_count=20.0)
    assert n[3] == 1                        # no data: never split
    assert n[1] == 1                        # 2 * 20 >= 40: min-count stops it
    assert n[2] == max(n) and sum(n) == 20  # the most frequent pdf gets the most


def test_split_halves_the_heaviest_and_is_reproducible():
    a, b, c = _am(), _am(), _am()
    before = a.get_pdf(0)
    w0, m0 = before.weights.copy(), before.means.copy()
    for am, seed in ((a, 7), (b, 7), (c, 8)):
        split_by_count(am, OCCS, 20, power=0.25, min_count=20.0, perturb_factor=0.01, rng=np.random.default_rng(seed))
    g = a.get_pdf(0)   # one Gaussian split into several: each split keeps the weighted mean
    n = split_targets(OCCS, 20, power=0.25, min_count=20.0)[0]
    assert g.num_gauss == n > 2 and np.isclose(g.weights.sum(), 1.0) and w0.tolist() == [1.0]
    assert np.allclose(g.weights @ g.means, m0[0], atol=1e-5)
    assert sorted(g.weights.tolist())[-1] <= 0.5 and len({tuple(m) for m in g.means.tolist()}) == n
    assert all(np.array_equal(a.get_pdf(p).means, b.get_pdf(p).means) for p in range(len(OCCS)))
    assert not np.array_equal(a.get_pdf(2).means, c.get_pdf(2).means)
