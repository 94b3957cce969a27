"""The one training loop of the toolkit, shared by pre-training and downstream training.

It reproduces the 2020 S3PRL runner loop (github.com/s3prl/s3prl @ b72a2cd9, transformer/solver.py):
`total_steps` optimizer updates, the loss divided by `gradient_accumulation_steps`, a global
grad-norm clip where a non-finite norm skips the update, warm-up + linear-decay lr, logging every
`log_step`, `states-<step>.ckpt` every `save_step` keeping the newest `max_keep` (and, in pre-training,
those of `runner.keep_steps`). It adds what the
2020 code lacked: exact resume (model, optimizer, scheduler, AMP scaler, step, RNG states and the
data order), DistributedDataParallel over torchrun, dev evaluation with `best-dev.ckpt`, mixed
precision (`runner.amp`): bf16 autocast on CUDA and on CPUs with bf16 matrix units (AVX512-BF16 /
AMX, through oneDNN), fp16 with a gradient scaler on CUDA. Master weights, optimizer state, the loss
and the ops torch's autocast keeps in float32 (softmax, LayerNorm, losses) stay float32.

A task plugs in through the small `Task` interface below (model, training_step, evaluate, plot,
checkpoint layout). The pre-training task is `s3prl.train.pretrain.PretrainTask`.

Checkpoint contents written by the trainer (`trainer_state`, plain values and tensors only):
``optimizer``, ``scheduler``, ``scaler`` state dicts, ``step``, ``epoch`` and ``position`` (the
sampler's epoch and batches consumed in it), ``rng`` (per rank: torch CPU/CUDA generator states as
tensors, numpy and python states as lists, the task generator state), ``best`` (best dev metric),
``history`` (logged scalars, for the learning curve). Where they go in the file is the task's
choice (`Task.save_checkpoint`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s3prl import precision
from s3prl.atomic import atomic_path, remove_stale_tmp
from s3prl.checkpoints import BEST_NAME, checkpoint_name, find_checkpoints, load_checkpoint, prune_checkpoints
from s3prl.errors import UserError
from s3prl.train import distributed as D
from s3prl.train.observe import Observer
from s3prl.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


def resolve_amp(requested: str, device: torch.device) -> str:
    """The precision a run really uses for `runner.amp` on `device`, with one notice where it
    falls back to float32: fp16 autocast needs CUDA (torch's CPU fp16 kernels are slower than
    fp32), bf16 needs CUDA or a CPU with bf16 units."""
    if requested == "none" or device.type == "cuda":
        return requested
    if requested == "fp16":
        log.warning("runner.amp=fp16 needs CUDA; training in float32 on %s (runner.amp=bf16 uses the "
                    "CPU's bf16 units where it has them)", device)
        return "none"
    if not precision.cpu_supports_bf16():
        log.warning("runner.amp=bf16: this CPU has no bf16 matrix units (AVX512-BF16 / AMX); training "
                    "in float32")
        return "none"
    return "bf16"


# --------------------------------------------------------------------------------------------
# Task interface
@dataclass
class StepOutput:
    """What `Task.training_step` returns for one batch.

    loss: scalar mean loss of the batch. num_elements: how many elements that mean is over
    (masked frames x dims, frames, utterances); with it the trainer weights batches so that a
    distributed run computes the same global mean as one process (None = plain mean of means).
    logs: extra scalars to log. extras: tensors kept for `Task.plot` (e.g. spectrograms).
    """
    loss: torch.Tensor
    num_elements: float | None = None
    logs: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class of a trainable task. Subclasses set `self.model` and implement `training_step`.

    best_metric: the key of `evaluate`'s dict that selects `best-dev.ckpt`; `metric_mode` "max" or
    "min". `device` is set by the trainer before training.
    """
    model: nn.Module
    best_metric: str | None = None
    metric_mode: str = "max"
    device: torch.device = torch.device("cpu")

    def training_step(self, model: nn.Module, batch: Any, generator: torch.Generator) -> StepOutput | None:
        """Forward one batch through `model` (possibly DDP-wrapped `self.model`); None skips it."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader) -> dict[str, float]:
        """Metrics on a dev loader (called on rank 0 with the bare model in eval mode)."""
        return {}

    def plot(self, extras: dict[str, Any], step: int) -> dict:
        """name -> matplotlib figure or image array, from a StepOutput's extras."""
        return {}

    def checkpoint_state(self) -> dict:
        """The task's part of a checkpoint (plain values and tensors)."""
        return {"model": self.model.state_dict()}

    def load_checkpoint_state(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])

    def save_checkpoint(self, path: Path, trainer_state: dict) -> None:
        """Write one checkpoint file atomically; the default layout is task state + "Trainer"."""
        with atomic_path(path) as tmp:
            torch.save({**self.checkpoint_state(), "Trainer": trainer_state}, tmp)

    def read_checkpoint(self, path: Path) -> dict:
        """Load the task's state from `path`; return the trainer_state stored in it. A truncated,
        corrupt or foreign file is a one-line UserError naming it."""
        ckpt = load_checkpoint(path)
        if not isinstance(ckpt.get("Trainer"), dict):
            raise UserError(f"{path}: not a training checkpoint of this task (no 'Trainer' section)")
        self.load_checkpoint_state(ckpt)
        return ckpt["Trainer"]


# --------------------------------------------------------------------------------------------
# RNG states
def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator | None = None) -> dict:
    """All RNG states as checkpoint-safe values (tensors, lists, numbers)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


# --------------------------------------------------------------------------------------------
class Trainer:
    """Run `runner_cfg.total_steps` optimizer updates of `task` over `train_data`.

    Args:
        task: the Task (its model is moved to `dist.device`).
        train_data: a map-style dataset; `collate_fn` turns a list of items into a batch.
        sampler: a `BucketBatchSampler` (built for this rank; global batch = its batch x world).
        optimizer_cfg / runner_cfg: `s3prl.train.config.OptimizerConfig` / `RunnerConfig`.
        exp_dir: where checkpoints, tb/ and plots/ go (rank 0 writes).
        dist: `DistInfo` from `s3prl.train.distributed.init_distributed`.
        dev_loader: optional iterable for `task.evaluate` every `runner_cfg.dev_step`.
        num_workers: DataLoader workers.
        progress: show the tqdm bar (rank 0; TensorBoard and plots are always written).
    """

    def __init__(self, task: Task, *, train_data, collate_fn, sampler, optimizer_cfg, runner_cfg,
                 exp_dir: str | Path, dist: D.DistInfo | None = None, dev_loader=None, num_workers: int = 0,
                 progress: bool = True):
        self.task = task
        self.dist = dist or D.DistInfo()
        self.device = torch.device(self.dist.device)
        self.ocfg = optimizer_cfg
        self.rcfg = runner_cfg
        self.exp_dir = Path(exp_dir)
        self.sampler = sampler
        self.dev_loader = dev_loader
        self.progress = progress
        task.device = self.device
        task.model.to(self.device)
        self.optimizer = build_optimizer(task.model, optimizer_cfg)
        self.scheduler = build_scheduler(self.optimizer, optimizer_cfg, runner_cfg.total_steps)
        self.amp = resolve_amp(runner_cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.model = D.wrap_ddp(task.model, self.dist)
        # The training-phase seed differs per rank (dropout, masking) but is fixed by the config.
        train_seed = runner_cfg.seed + 7919 * self.dist.rank + 1
        seed_everything(train_seed)
        self.generator = torch.Generator().manual_seed(train_seed)
        # A private generator for the DataLoader's worker base seed: without it every new
        # iterator draws from the global torch RNG, which would break exact resume.
        self.loader_generator = torch.Generator().manual_seed(train_seed)
        self._loader_seed = train_seed
        self.loader = torch.utils.data.DataLoader(train_data, batch_sampler=sampler, collate_fn=collate_fn,
                                                  num_workers=num_workers, generator=self.loader_generator)
        if len(sampler) == 0:
            raise UserError("the training data yields no batch (too few utterances for the batch size "
                            "and world size?)")
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.best: float | None = None
        self.history: list[dict] = []

    # ---------------------------------------------------------------- state
    def trainer_state(self) -> dict:
        rngs = [rng_state(self.generator)]
        if self.dist.distributed:
            import torch.distributed as tdist
            gathered: list = [None] * self.dist.world_size
            tdist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "world_size": self.dist.world_size,
            "rng": rngs,
            "best": self.best,
            "history": self.history,
            "loader_generator": self.loader_generator.get_state(),
        }

    def load_trainer_state(self, st: dict) -> None:
        self.optimizer.load_state_dict(st["optimizer"])
        if st.get("scheduler") is not None:
            self.scheduler.load_state_dict(st["scheduler"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.step, self.epoch, self.position = int(st["step"]), int(st["epoch"]), int(st["position"])
        self.best = st.get("best")
        self.history = list(st.get("history") or [])
        rngs = st.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank], self.generator)
        else:
            log.warning("checkpoint RNG states are for %d rank(s), running with %d: reseeding "
                        "(the data order is still restored)", len(rngs), self.dist.world_size)
        if st.get("world_size", 1) != self.dist.world_size:
            log.warning("resuming a %s-rank run with %d ranks: the batch composition changes",
                        st.get("world_size"), self.dist.world_size)
        if "loader_generator" in st:
            self.loader_generator.set_state(st["loader_generator"])

    def save(self, path: Path, state: dict | None = None) -> None:
        """Write a checkpoint (rank 0; every rank must call it because RNG states are gathered)."""
        state = state if state is not None else self.trainer_state()
        if self.dist.is_main:
            self.task.save_checkpoint(path, state)
            log.info("saved %s", path)

    def resume(self, path: str | Path | None = None) -> bool:
        """Load `path` or the newest `states-<step>.ckpt` of exp_dir; False if there is none."""
        if path is None:
            ckpts = find_checkpoints(self.exp_dir)
            if not ckpts:
                return False
            path = ckpts[-1][1]
        st = self.task.read_checkpoint(Path(path))
        self.task.model.to(self.device)
        self.load_trainer_state(st)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.position)
        return True

    # ---------------------------------------------------------------- loop
    def _autocast(self):
        if self.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _batches(self):
        """Endless (epoch, batch) stream from the stored epoch/position on."""
        while True:
            self.sampler.set_epoch(self.epoch, start=self.position)
            if hasattr(self.loader.dataset, "set_epoch"):
                self.loader.dataset.set_epoch(self.epoch)
            # Reseeded per epoch so a run resumed mid-epoch draws the same worker base seed and
            # ends with the same generator state as an uninterrupted one.
            self.loader_generator.manual_seed(self._loader_seed + 100003 * self.epoch)
            for batch in self.loader:
                self.position += 1
                yield batch
            self.epoch += 1
            self.position = 0

    def _forward(self, batch) -> tuple[torch.Tensor, float, float, StepOutput | None]:
        """(loss to backprop, global mean loss for logging, global element count, output)."""
        with self._autocast():
            out = self.task.training_step(self.model, batch, self.generator)
        if out is None or not torch.is_tensor(out.loss):
            # Keep every rank in the same collective sequence: a zero loss tied to the graph.
            zero = sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
            loss, num = zero, 0.0
            out = None
        else:
            loss = out.loss.float()
            num = None if out.num_elements is None else float(out.num_elements)
        if self.dist.distributed:
            if num is None and out is not None:
                num = 1.0  # plain mean of per-rank means
            both = D.all_reduce_sum(torch.tensor([loss.detach().item() * num, num], dtype=torch.float64))
            total = both[1].item()
            logged = both[0].item() / total if total > 0 else float("nan")
            # DDP averages gradients over ranks: scale so the result is the global weighted mean.
            scaled = loss * (num * self.dist.world_size / total) if total > 0 else loss * 0.0
            return scaled, logged, total, out
        if out is None:
            return loss, float("nan"), 0.0, None
        return loss, loss.detach().item(), 1.0 if num is None else num, out

    def fit(self) -> list[dict]:
        """Train until `total_steps`; return the logged history."""
        rc, oc = self.rcfg, self.ocfg
        total = rc.total_steps
        keep_steps = frozenset(getattr(rc, "keep_steps", ()))  # pre-training's runner.keep_steps
        if self.step >= total:
            log.info("step %d >= total_steps %d: nothing to train", self.step, total)
            return self.history
        if self.dist.is_main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(self.exp_dir)
        obs = Observer(self.exp_dir, enabled=self.dist.is_main, total_steps=total, initial_step=self.step,
                       progress=self.progress)
        accum = oc.gradient_accumulation_steps
        params = [p for p in self.task.model.parameters() if p.requires_grad]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        micro = 0
        win_loss, win_num, win_norm, win_skipped, win_updates = 0.0, 0.0, [], 0, 0
        last_extras: dict = {}
        t0 = time.time()
        batches = self._batches()
        try:
            while self.step < total:
                batch = next(batches)
                micro += 1
                sync = micro == accum or not self.dist.distributed
                ctx = contextlib.nullcontext() if sync else self.model.no_sync()
                with ctx:
                    loss, logged, num, out = self._forward(batch)
                    self.scaler.scale(loss / accum).backward()
                if num > 0 and math.isfinite(logged):
                    win_loss += logged * num
                    win_num += num
                if out is not None and out.extras:
                    last_extras = out.extras
                if micro < accum:
                    continue
                micro = 0
                self.scaler.unscale_(self.optimizer)
                clip = oc.gradient_clipping if oc.gradient_clipping > 0 else float("inf")
                norm = torch.nn.utils.clip_grad_norm_(params, clip)
                if math.isfinite(float(norm)):
                    self.scaler.step(self.optimizer)
                    win_norm.append(float(norm))
                else:
                    win_skipped += 1
                    log.warning("step %d: grad norm is %s, update skipped", self.step + 1, float(norm))
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
                win_updates += 1
                mean_loss = win_loss / win_num if win_num > 0 else float("nan")
                obs.step(1, loss=mean_loss, lr=self.scheduler.get_last_lr()[0])

                if self.step % rc.log_step == 0 or self.step == total:
                    rate = win_updates / max(time.time() - t0, 1e-9)
                    entry = {"step": self.step, "loss": mean_loss, "lr": self.scheduler.get_last_lr()[0],
                             "grad_norm": float(np.mean(win_norm)) if win_norm else float("nan")}
                    if win_skipped:
                        entry["skipped"] = win_skipped
                    self.history.append(entry)
                    obs.scalars(self.step, {k: v for k, v in entry.items() if k != "step"})
                    if self.dist.is_main:
                        log.info("step %d/%d loss %.5f lr %.3g grad-norm %.3f (%.2f steps/s)", self.step, total,
                                 mean_loss, entry["lr"], entry["grad_norm"], rate)
                    win_loss, win_num, win_norm, win_skipped, win_updates = 0.0, 0.0, [], 0, 0
                    t0 = time.time()
                if rc.plot_step and self.step % rc.plot_step == 0 and self.dist.is_main and last_extras:
                    obs.figures(self.step, self.task.plot(last_extras, self.step))
                if rc.dev_step and self.dev_loader is not None and self.step % rc.dev_step == 0:
                    self._evaluate(obs)
                if self.step % rc.save_step == 0 or self.step == total or self.step in keep_steps:
                    self.save(self.exp_dir / checkpoint_name(self.step))
                    if self.dist.is_main:
                        prune_checkpoints(self.exp_dir, rc.max_keep, keep_steps)
                    D.barrier()
        finally:
            obs.learning_curve(self.history)
            obs.close()
        return self.history

    def _evaluate(self, obs: Observer) -> None:
        state = self.trainer_state()  # collective (RNG gather): every rank takes part
        if self.dist.is_main:
            self.task.model.eval()
            with torch.no_grad():
                metrics = self.task.evaluate(self.task.model, self.dev_loader)
            self.task.model.train()
            obs.scalars(self.step, metrics, prefix="dev")
            log.info("step %d dev %s", self.step, " ".join(f"{k} {v:.5g}" for k, v in metrics.items()))
            key = self.task.best_metric
            if key is not None:
                if key not in metrics:
                    raise UserError(f"task metric '{key}' missing from evaluate() output {sorted(metrics)}")
                v = float(metrics[key])
                better = self.best is None or (v > self.best if self.task.metric_mode == "max" else v < self.best)
                if better:
                    self.best = v
                    state["best"] = v
                    self.task.save_checkpoint(self.exp_dir / BEST_NAME, state)
                    log.info("new best dev %s %.5g: saved %s", key, v, BEST_NAME)
        self.best = D.broadcast_object(self.best)
        D.barrier()
