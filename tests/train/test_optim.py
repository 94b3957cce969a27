"""BertAdam math, parameter groups and the warm-up + linear-decay schedule."""
import math

import pytest
import torch
from torch import nn

from s3prl.train.config import OptimizerConfig
from s3prl.train.optim import BertAdam, build_optimizer, build_scheduler, param_groups, warmup_linear


def test_bert_adam_matches_hand_computation():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = BertAdam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, max_grad_norm=1.0)
    # gradient of norm 5 is clipped to norm 1 inside the optimizer
    p.grad = torch.tensor([3.0, 4.0])
    opt.step()
    g = [0.6, 0.8]
    expect = []
    for x, gi in zip([1.0, -2.0], g):
        m = 0.1 * gi
        v = 0.001 * gi * gi
        upd = m / (math.sqrt(v) + 1e-6) + 0.01 * x   # no bias correction
        expect.append(x - 0.1 * upd)
    assert torch.allclose(p.detach(), torch.tensor(expect, dtype=torch.float32), atol=1e-6)
    # second step: moments accumulate, still without bias correction
    before = p.detach().clone()
    p.grad = torch.tensor([0.3, 0.0])
    opt.step()
    m = [0.9 * 0.1 * 0.6 + 0.1 * 0.3, 0.9 * 0.1 * 0.8]
    v = [0.999 * 0.001 * 0.36 + 0.001 * 0.09, 0.999 * 0.001 * 0.64]
    expect2 = [float(before[i]) - 0.1 * (m[i] / (math.sqrt(v[i]) + 1e-6) + 0.01 * float(before[i])) for i in range(2)]
    assert torch.allclose(p.detach(), torch.tensor(expect2), atol=1e-6)
    # Unlike Adam, the first update is not lr-sized: m/sqrt(v) = 0.1/sqrt(0.001) = 3.16
    assert abs((1.0 - expect[0]) / 0.1 - (0.1 / math.sqrt(0.001) + 0.01)) < 1e-3


def test_no_decay_groups_and_sharing():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(3, 3)
            self.LayerNorm = nn.LayerNorm(3)
            self.shared = nn.ModuleList([self.dense, self.dense])
    groups = param_groups(M().named_parameters(), 0.01)
    assert [len(g["params"]) for g in groups] == [1, 3]   # dense.weight | dense.bias, LN weight+bias
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0
    for name in ("AdamW", "Adam", "BertAdam"):
        opt = build_optimizer(M(), OptimizerConfig(name=name, lr=1e-3))
        assert opt.param_groups[0]["lr"] == 1e-3


def test_warmup_linear_values():
    # 100 steps, 10 % warm-up: k/10 up to 10, then (100-k)/90
    assert warmup_linear(1, 100, 0.1) == pytest.approx(0.1)
    assert warmup_linear(5, 100, 0.1) == pytest.approx(0.5)
    assert warmup_linear(10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_linear(55, 100, 0.1) == pytest.approx(0.5)
    assert warmup_linear(100, 100, 0.1) == 0.0
    assert warmup_linear(1, 100, 0.0) == pytest.approx(0.99)


def test_scheduler_lrs_per_update():
    p = nn.Parameter(torch.zeros(1))
    cfg = OptimizerConfig(name="AdamW", lr=2e-3, warmup_proportion=0.2)
    opt = torch.optim.AdamW([p], lr=cfg.lr)
    sch = build_scheduler(opt, cfg, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(1)
        opt.step()
        sch.step()
    # update k uses warmup_linear(k, 10, 0.2): 0.5, 1, 7/8, 6/8, ... 0
    expect = [2e-3 * f for f in [0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]]
    assert seen == pytest.approx(expect)
    const = build_scheduler(torch.optim.Adam([p], lr=1e-3), OptimizerConfig(schedule="constant", lr=1e-3), 10)
    assert const.get_last_lr() == [1e-3]


def _bert_adam_loop_reference(params, grads, states, lr, b1, b2, eps, wd, clip):
    """The per-parameter loop BertAdam was first written as (pytorch-pretrained-bert order)."""
    for p, g, (m, v) in zip(params, grads, states):
        g = g.clone()
        if clip > 0:
            n = torch.linalg.vector_norm(g, 2)
            g.mul_(torch.clamp(clip / (n + 1e-6), max=1.0))
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        upd = m / (v.sqrt() + eps)
        if wd > 0:
            upd.add_(p, alpha=wd)
        p.add_(upd, alpha=-lr)


def test_bert_adam_foreach_is_bit_identical_to_per_parameter_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    ref = [p.detach().clone() for p in model.parameters()]
    states = [(torch.zeros_like(p), torch.zeros_like(p)) for p in ref]
    opt = BertAdam(model.parameters(), lr=0.05, eps=1e-6, weight_decay=0.01, max_grad_norm=1.0)
    g = torch.Generator().manual_seed(1)
    for step in range(4):
        # mixes gradients above and below the clip norm
        grads = [torch.randn(p.shape, generator=g) * (3.0 if step % 2 else 0.1) for p in ref]
        for p, gr in zip(model.parameters(), grads):
            p.grad = gr.clone()
        opt.step()
        _bert_adam_loop_reference(ref, grads, states, 0.05, 0.9, 0.999, 1e-6, 0.01, 1.0)
        for p, r in zip(model.parameters(), ref):
            assert torch.equal(p.detach(), r)
    assert all(opt.state[p]["step"] == 4 for p in model.parameters())


def test_torch_optimizers_are_fused_else_foreach():
    model = nn.Linear(3, 2)
    for name in ("AdamW", "Adam"):
        opt = build_optimizer(model, OptimizerConfig(name=name))
        assert opt.defaults["fused"] is True
    # the fused kernel and the plain loop agree within float rounding on a step
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    oa = build_optimizer(a, OptimizerConfig(name="AdamW"))
    ob = torch.optim.AdamW(param_groups(b.named_parameters(), 0.01), foreach=False,
                           lr=oa.defaults["lr"], betas=oa.defaults["betas"], eps=oa.defaults["eps"])
    for _ in range(3):
        for m in (a, b):
            m.zero_grad()
            m(torch.ones(2, 4)).pow(2).sum().backward()
        oa.step()
        ob.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-7, rtol=1e-6)


def test_bert_adam_slices_bound_the_temporaries():
    from s3prl.train.optim import _slices

    ps = [torch.zeros(n) for n in (5, 5, 20, 1, 1, 3)]
    assert _slices(ps, 10) == [slice(0, 2), slice(2, 3), slice(3, 6)]
    assert _slices(ps, 100) == [slice(0, 6)] and _slices([], 10) == []
