"""The one training loop with a small generic task: resume is bit-identical, checkpoints follow
save_step/max_keep, a non-finite grad norm skips the update, DDP (2 gloo processes) equals one
process with the same global batch, best-dev checkpoint selection."""
import os
import socket

import pytest
import torch
from torch import nn

from s3prl.data.sampler import BucketBatchSampler
from s3prl.train.config import OptimizerConfig, PretrainRunnerConfig, RunnerConfig
from s3prl.precision import cpu_supports_bf16
from s3prl.checkpoints import find_checkpoints, prune_checkpoints
from s3prl.train.trainer import StepOutput, Task, Trainer


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ToyData(torch.utils.data.Dataset):
    """Variable-length (T, 4) sequences whose target is a fixed linear map of each frame."""

    def __init__(self, n=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.lengths = [int(x) for x in torch.randint(3, 12, (n,), generator=g)]
        self.x = [torch.randn(t, 4, generator=g) for t in self.lengths]
        w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.y = [x @ w + 0.1 for x in self.x]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def collate(items):
    xs = nn.utils.rnn.pad_sequence([x for x, _ in items], batch_first=True)
    ys = nn.utils.rnn.pad_sequence([y for _, y in items], batch_first=True)
    mask = nn.utils.rnn.pad_sequence([torch.ones(len(x)) for x, _ in items], batch_first=True)
    return xs, ys, mask


class ToyTask(Task):
    best_metric = "neg_mse"

    def __init__(self, dropout=0.1, noise=0.05, seed=0):
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))
        self.noise = noise
        self.evals = 0

    def training_step(self, model, batch, generator):
        x, y, mask = batch
        if self.noise:
            x = x + self.noise * torch.randn(x.shape, generator=generator)
        pred = model(x)
        self.pred_dtype = pred.dtype
        err = ((pred.float() - y) ** 2).squeeze(-1) * mask
        n = float(mask.sum())
        return StepOutput(loss=err.sum() / n, num_elements=n)

    def evaluate(self, model, loader):
        self.evals += 1
        tot = n = 0.0
        for x, y, mask in loader:
            tot += float((((model(x) - y) ** 2).squeeze(-1) * mask).sum())
            n += float(mask.sum())
        return {"neg_mse": -tot / n}


def make_trainer(exp, *, total=12, batch=4, rank=0, world=1, dist=None, dropout=0.1, noise=0.05, save_step=4,
                 max_keep=2, accum=1, log_step=1, dev=0, name="AdamW", amp="none", keep_steps=None):
    data = ToyData()
    task = ToyTask(dropout, noise)
    sampler = BucketBatchSampler(data.lengths, batch, seed=3, rank=rank, world_size=world)
    dev_loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=collate) if dev else None
    return Trainer(task, train_data=data, collate_fn=collate, sampler=sampler,
                   optimizer_cfg=OptimizerConfig(name=name, lr=1e-2, warmup_proportion=0.1,
                                                 gradient_accumulation_steps=accum),
                   runner_cfg=RunnerConfig(total_steps=total, log_step=log_step, save_step=save_step,
                                           max_keep=max_keep, seed=5, dev_step=dev, amp=amp)
                   if keep_steps is None else
                   PretrainRunnerConfig(total_steps=total, log_step=log_step, save_step=save_step,
                                        max_keep=max_keep, seed=5, dev_step=dev, amp=amp, keep_steps=keep_steps),
                   exp_dir=exp, dist=dist, dev_loader=dev_loader, progress=False)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.task.model.state_dict().items()}


@pytest.mark.parametrize("accum,name", [(1, "AdamW"), (2, "BertAdam")])
def test_resume_is_bit_identical(tmp_path, accum, name):
    full = make_trainer(tmp_path / "full", accum=accum, name=name, total=12, save_step=4, max_keep=5)
    hist_full = full.fit()
    w_full = weights(full)
    assert [s for s, _ in find_checkpoints(tmp_path / "full")] == [4, 8, 12]

    # "interrupted" run: stop after 6 updates (a checkpoint at 4), then resume to 12
    part = make_trainer(tmp_path / "part", accum=accum, name=name, total=12, save_step=4, max_keep=5)
    part.rcfg.total_steps = 6
    part.fit()
    (tmp_path / "part" / "states-6.ckpt").unlink()   # killed before the step-6 save
    resumed = make_trainer(tmp_path / "part", accum=accum, name=name, total=12, save_step=4, max_keep=5)
    assert resumed.resume() and resumed.step == 4
    hist_res = resumed.fit()
    for k, v in weights(resumed).items():
        assert torch.equal(v, w_full[k]), k
    assert [h["loss"] for h in hist_res if h["step"] > 4] == [h["loss"] for h in hist_full if h["step"] > 4]
    # the schedule really decays the lr to 0 at the last step
    assert hist_full[-1]["lr"] == 0.0 and hist_full[0]["lr"] > 0


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no bf16 units (AVX512-BF16 / AMX)")
def test_bf16_autocast_on_cpu(tmp_path):
    """runner.amp=bf16 on a CPU with bf16 units: the Linear layers run in bf16 (oneDNN), master
    weights and optimizer state stay float32, the loss still falls, resume is still exact."""
    tr = make_trainer(tmp_path / "bf16", total=60, save_step=30, max_keep=5, dropout=0.0, noise=0.0,
                      log_step=10, amp="bf16")
    assert tr.amp == "bf16"
    hist = tr.fit()
    assert tr.task.pred_dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in tr.task.model.parameters())
    assert all(v.dtype == torch.float32 for st in tr.optimizer.state.values() for v in st.values()
               if torch.is_tensor(v) and v.numel() > 1)
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    fp32 = make_trainer(tmp_path / "fp32", total=60, save_step=30, max_keep=5, dropout=0.0, noise=0.0, log_step=10)
    fp32.fit()
    assert fp32.task.pred_dtype == torch.float32
    assert not torch.equal(weights(fp32)["0.weight"], weights(tr)["0.weight"])
    resumed = make_trainer(tmp_path / "bf16", total=60, amp="bf16", save_step=30, max_keep=5, dropout=0.0,
                           noise=0.0, log_step=10)
    (tmp_path / "bf16" / "states-60.ckpt").unlink()
    assert resumed.resume() and resumed.step == 30
    resumed.fit()
    for k, v in weights(resumed).items():
        assert torch.equal(v, weights(tr)[k]), k


def test_amp_falls_back_with_one_notice(tmp_path, monkeypatch, caplog):
    import s3prl.precision as P
    import s3prl.train.trainer as T

    assert T.resolve_amp("none", torch.device("cpu")) == "none"
    assert T.resolve_amp("fp16", torch.device("cuda")) == "fp16"
    with caplog.at_level("WARNING", logger="s3prl.train.trainer"):
        assert T.resolve_amp("fp16", torch.device("cpu")) == "none"
        monkeypatch.setattr(P, "cpu_supports_bf16", lambda: False)
        tr = make_trainer(tmp_path, total=2, amp="bf16")
        assert tr.amp == "none"
        tr.fit()
    assert tr.task.pred_dtype == torch.float32
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 2 and "fp16 needs CUDA" in notices[0] and "no bf16 matrix units" in notices[1]


def test_loss_decreases_and_checkpoints_pruned(tmp_path):
    tr = make_trainer(tmp_path, total=60, save_step=7, max_keep=2, dropout=0.0, noise=0.0, log_step=10)
    hist = tr.fit()
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert [s for s, _ in find_checkpoints(tmp_path)] == [56, 60]    # every 7 steps + the final, newest 2
    assert (tmp_path / "plots" / "learning_curve.png").is_file()
    ckpt = torch.load(tmp_path / "states-60.ckpt", weights_only=True)
    st = ckpt["Trainer"]
    assert st["step"] == 60 and isinstance(st["rng"][0]["numpy"][1], list)
    assert 0 <= st["position"] <= len(tr.sampler)


def test_keep_steps_are_saved_and_never_pruned(tmp_path):
    """Pre-training's runner.keep_steps: a checkpoint at each listed step, a multiple of save_step
    or not, kept beside the newest max_keep (which it does not count); steps past the end are
    ignored. The kept weights are those a run saving every step has at that step."""
    tr = make_trainer(tmp_path / "kept", total=30, save_step=7, max_keep=2, log_step=10, keep_steps=[5, 14, 100])
    tr.fit()
    assert [s for s, _ in find_checkpoints(tmp_path / "kept")] == [5, 14, 28, 30]
    every = make_trainer(tmp_path / "every", total=30, save_step=1, max_keep=100, log_step=10)
    every.fit()
    a = torch.load(tmp_path / "kept" / "states-5.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "every" / "states-5.ckpt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_prune_checkpoints_spares_keep_steps(tmp_path):
    for s in (1, 2, 3, 4, 5, 6):
        (tmp_path / f"states-{s}.ckpt").write_bytes(b"x")
    removed = prune_checkpoints(tmp_path, 2, keep_steps=[2, 3])
    assert sorted(p.name for p in removed) == ["states-1.ckpt", "states-4.ckpt"]
    assert [s for s, _ in find_checkpoints(tmp_path)] == [2, 3, 5, 6]


def test_keep_steps_only_in_pretraining_configs():
    """The key is pre-training's: downstream runner configs (whose resolved YAML is hashed into
    results.json's config_hash) do not gain it, and a step below 1 is a config error."""
    from s3prl.config import ConfigError, from_dict, to_dict
    from s3prl.downstream.config import DownstreamConfig
    from s3prl.train.pretrain import PretrainConfig

    assert "keep_steps" not in to_dict(DownstreamConfig())["runner"]
    assert to_dict(PretrainConfig())["runner"]["keep_steps"] == []
    assert from_dict(PretrainConfig, {"runner": {"keep_steps": [500, 1000]}}).runner.keep_steps == [500, 1000]
    with pytest.raises(ConfigError, match="keep_steps must be steps >= 1, got 0"):
        from_dict(PretrainConfig, {"runner": {"keep_steps": [0]}})


def test_nan_grad_norm_skips_update(tmp_path):
    tr = make_trainer(tmp_path, total=3, save_step=100)
    orig = tr.task.training_step
    calls = {"n": 0}

    def step(model, batch, gen):
        calls["n"] += 1
        out = orig(model, batch, gen)
        if calls["n"] == 2:
            out.loss = out.loss * float("nan")
        return out
    tr.task.training_step = step
    hist = tr.fit()
    assert hist[1].get("skipped") == 1 and hist[0].get("skipped") is None
    assert all(torch.isfinite(v).all() for v in weights(tr).values())
    assert tr.step == 3


def test_best_dev_checkpoint(tmp_path):
    tr = make_trainer(tmp_path, total=20, dev=5, dropout=0.0, noise=0.0, save_step=100)
    tr.fit()
    assert tr.task.evals == 4
    best = torch.load(tmp_path / "best-dev.ckpt", weights_only=True)
    assert best["Trainer"]["best"] == tr.best and tr.best < 0


def _ddp_worker(rank, world, port, exp, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from s3prl.train import distributed as D
    info = D.init_distributed("cpu")
    try:
        tr = make_trainer(exp, total=8, batch=3, rank=rank, world=world, dist=info, dropout=0.0, noise=0.0,
                          save_step=4)
        hist = tr.fit()
        if rank == 0:
            torch.save({"loss": [h["loss"] for h in hist], "w": weights(tr)}, out)
    finally:
        D.cleanup()


def test_ddp_two_processes_match_single(tmp_path):
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "ddp"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    single = make_trainer(tmp_path / "single", total=8, batch=6, dropout=0.0, noise=0.0, save_step=4)
    loss = [h["loss"] for h in single.fit()]
    assert len(loss) == len(ddp["loss"]) == 8
    assert torch.allclose(torch.tensor(loss), torch.tensor(ddp["loss"]), rtol=1e-5, atol=1e-6)
    for k, v in weights(single).items():
        assert torch.allclose(v, ddp["w"][k], rtol=1e-4, atol=1e-6), k
    assert [s for s, _ in find_checkpoints(tmp_path / "ddp")] == [4, 8]
