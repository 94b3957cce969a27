"""Alteration statistics and the masked L1 loss.

The algorithm is S3PRL 2020's (github.com/s3prl/s3prl @ b72a2cd9, transformer/mam.py).
"""
import torch

from s3prl.upstream.config import MaskConfig
from s3prl.upstream.masking import alter, masked_l1


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_reproducible_with_seed():
    x = torch.randn(3, 50, 4) + 3
    cfg = MaskConfig(mask_frequency=2, noise_proportion=0.5)
    a, b = alter(x, torch.tensor([50, 40, 30]), cfg, gen(7)), alter(x, torch.tensor([50, 40, 30]), cfg, gen(7))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.mask_label, b.mask_label)
    c = alter(x, torch.tensor([50, 40, 30]), cfg, gen(8))
    assert not torch.equal(a.mask_label, c.mask_label)


def test_time_mask_fraction_span_length_and_dice():
    torch.manual_seed(0)
    n, t, d = 2000, 100, 3
    x = torch.rand(n, t, d) + 1.0  # strictly positive: zeros only come from masking
    cfg = MaskConfig(mask_proportion=0.15, mask_consecutive_min=7, mask_consecutive_max=7)
    r = alter(x, torch.full((n,), t), cfg, gen(1))
    frames = r.mask_label.all(-1)
    assert torch.equal(frames, r.mask_label.any(-1))  # all dims of chosen frames
    assert torch.equal(frames, r.time_mask)
    assert r.keep.all()
    # 2 spans of 7 frames, starts without replacement among 93: E[union] = 14 - 7 * P(overlap)
    # P(|s1 - s2| < 7) = sum over pairs; computed exactly here.
    import itertools
    pairs = list(itertools.permutations(range(93), 2))
    exp_union = sum(14 - max(0, 7 - abs(a - b)) for a, b in pairs) / len(pairs)
    assert abs(frames.sum(1).float().mean().item() - exp_union) < 0.2
    # masked frames never reach the last frame (starts <= len - C - 1)
    assert not frames[:, t - 1].any()
    # span lengths: every run of masked frames is a multiple-of-overlap union, >= 7
    row = frames[0].int().tolist()
    runs = [len(list(g)) for k, g in itertools.groupby(row) if k == 1]
    assert all(r_ >= 7 for r_ in runs)
    # dice per utterance: all zero / replaced / unchanged
    m = frames[..., None].expand_as(x)
    zero = ((r.inputs == 0) | ~m).all(-1).all(-1)
    unchanged = ((r.inputs == x) | ~m).all(-1).all(-1)
    replaced = ~zero & ~unchanged
    fz, fr, fu = (v.float().mean().item() for v in (zero, replaced, unchanged))
    assert abs(fz - 0.8) < 0.03 and abs(fr - 0.1) < 0.02 and abs(fu - 0.1) < 0.02
    # unmasked frames are untouched
    assert torch.equal(r.inputs[~m], x[~m])


def test_variable_span_length_and_short_utterances():
    x = torch.rand(500, 60, 2) + 1
    cfg = MaskConfig(mask_consecutive_min=2, mask_consecutive_max=5)
    lens = torch.randint(3, 61, (500,), generator=gen(3))
    r = alter(x, lens, cfg, gen(4))
    for i in range(500):
        assert not r.mask_label[i, lens[i]:].any()  # nothing beyond the valid length
    frac = r.time_mask.sum(1).float() / lens.float()
    assert 0.07 < frac.mean().item() < 0.16


def test_no_overlap_buckets():
    x = torch.rand(200, 100, 2) + 1
    cfg = MaskConfig(mask_consecutive_min=7, mask_consecutive_max=7, mask_allow_overlap=False)
    r = alter(x, torch.full((200,), 100), cfg, gen(5))
    # two non-overlapping spans of 7: exactly 14 frames each
    assert torch.all(r.time_mask.sum(1) == 14)


def test_frequency_mask_on_all_valid_frames():
    x = torch.rand(400, 30, 10) + 1
    lens = torch.full((400,), 30)
    lens[::2] = 20
    cfg = MaskConfig(mask_proportion=0.0, mask_frequency=4)
    r = alter(x, lens, cfg, gen(6))
    widths = []
    for i in range(400):
        band = r.mask_label[i, 0]
        widths.append(int(band.sum()))
        L = int(lens[i])
        assert torch.equal(r.mask_label[i, :L], band.expand(L, 10))  # same band on every valid frame
        assert not r.mask_label[i, L:].any()
        assert torch.all(r.inputs[i, :, band] == 0)  # zeroed on all frames (padding too)
        assert torch.equal(r.inputs[i, :, ~band], x[i, :, ~band])
    counts = torch.bincount(torch.tensor(widths), minlength=5).float() / 400
    assert torch.all((counts - 0.2).abs() < 0.06)  # uniform over {0..4}
    assert torch.equal(r.keep, torch.tensor(widths) > 0)  # width 0 -> no mask -> dropped


def test_noise_per_batch_not_in_label():
    x = torch.zeros(2, 40, 5)
    cfg = MaskConfig(mask_proportion=0.0, mask_frequency=0, noise_proportion=0.3)
    g = gen(9)
    applied = []
    for _ in range(1000):
        r = alter(x, torch.tensor([40, 30]), cfg, g)
        applied.append(r.noise_applied)
        assert not r.mask_label.any() and not r.keep.any()
        if r.noise_applied:
            assert (r.inputs != 0).all()  # every element of the batch
            assert abs(r.inputs.std().item() - 0.2) < 0.05
        else:
            assert (r.inputs == 0).all()
    assert abs(sum(applied) / 1000 - 0.3) < 0.05


def test_masked_l1_hand_computed():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    tgt = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    lab = torch.tensor([[[True, False], [False, True]]])
    assert masked_l1(pred, tgt, lab).item() == (1.0 + 3.0) / 2
