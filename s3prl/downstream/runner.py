"""The run scaffolding every downstream task shares (phone / speaker, sentiment, ASR).

A downstream run follows S3PRL 2020's protocol (github.com/s3prl/s3prl @ b72a2cd9,
downstream/runner.py) whatever the task:

1. skip-if-complete: an exp dir whose ``results.json`` carries the same config hash (sha1 of the
   resolved config + inputs; a ``config.yaml`` written before a key existed counts with that
   key's default) is returned as is and its RESULTS.md row refreshed; an exp dir holding
   ``config.yaml`` of another config is refused;
2. under a `StageLock`, ``config.yaml`` is written and the task's model and datasets are built;
3. the one trainer (`s3prl.train.trainer.Trainer`) trains with resume and best-dev selection;
4. ``best-dev.ckpt`` (or the final model when dev never ran) is reloaded and dev and test are
   scored there; ``results.json``, ``learning_curve.png`` and the RESULTS.md row are written.

A task is one `TaskSpec` (its config class and heads, command-line inputs, how it builds (task,
datasets, info) and scores a trained model, its RESULTS.md table and one-line summary), listed by
name in s3prl.downstream.tasks.TASKS; `run_spec` runs any of them. The helpers below
(`load_best_dev`, `run_fields`, `finish_run`, `eval_loader`) are the pieces of scoring the tasks
have in common.
"""
from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from s3prl.downstream.results import (REQUIRED_KEYS, TableSpec, config_hash, plot_learning_curve, read_results,
                                      update_results_md, write_results)
from s3prl.errors import UserError
from s3prl.train.trainer import BEST_NAME, Trainer, seed_everything

log = logging.getLogger(__name__)


def eval_loader(dataset, batch_size: int, dataloader_cfg, collate_fn: Callable) -> torch.utils.data.DataLoader:
    """A fixed-order, length-bucketed DataLoader over `dataset` (dev / test scoring)."""
    from s3prl.data.sampler import BucketBatchSampler

    sampler = BucketBatchSampler(dataset.bucket_lengths(), batch_size, shuffle=False,
                                 half_batch_above=dataloader_cfg.half_batch_above)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                                       num_workers=dataloader_cfg.num_workers)


def command_line(command: str | None) -> str:
    """The command recorded in results.json: `command`, or this process's argv quoted."""
    return command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)


@dataclass
class BestDev:
    """Where a trained run is scored. step: the best-dev step (the last step if dev never ran);
    steps: steps trained; found: whether best-dev.ckpt exists; dev_history: [step, value] per dev
    evaluation of the training run (as it was before best-dev.ckpt was loaded)."""
    step: int
    steps: int
    found: bool
    dev_history: list[list[float]] = field(default_factory=list)


def load_best_dev(task, trainer: Trainer, exp_dir: Path) -> BestDev:
    """Load ``<exp>/best-dev.ckpt`` into `task` (if any) and put its model in eval mode on the
    trainer's device; `task.current_step` then reports the best-dev step."""
    dev_history = [list(x) for x in task.dev_history]
    best = Path(exp_dir) / BEST_NAME
    step = trainer.step
    if best.is_file():
        step = int(task.read_checkpoint(best)["step"])
    task.model.to(trainer.device).eval()
    task.current_step = lambda: step
    return BestDev(step=step, steps=trainer.step, found=best.is_file(), dev_history=dev_history)


def run_fields(best: BestDev, chash: str, command: str | None, exp_dir: Path, *, cfg=None, inputs=None) -> dict:
    """The results.json fields every task records about the run itself; with the run's `cfg` also
    its seed (runner.seed: the head's initial weights; dataloader.seed: the batch order), with its
    `inputs` (an object with ``fingerprint_sources()``: s3prl.downstream.fingerprint.Sources) the
    fingerprints of its corpus, features and upstream checkpoint."""
    out = {"best_step": best.step, "steps": best.steps, "config_hash": chash, "command": command_line(command),
           "exp_dir": str(exp_dir)}
    if cfg is not None:
        out["seed"] = int(cfg.runner.seed)
        out["data_seed"] = int(cfg.dataloader.seed)
    if inputs is not None and hasattr(inputs, "fingerprint_sources"):
        from s3prl.downstream.fingerprint import fingerprints

        out["fingerprints"] = fingerprints(inputs.fingerprint_sources())
    return out


def finish_run(exp_dir: Path, record: dict, history: list[dict], dev_curve: list[tuple[int, float]], best: BestDev,
               *, title: str, dev_label: str = "dev accuracy %", required: tuple = REQUIRED_KEYS) -> None:
    """Write ``learning_curve.png`` (train loss of `history`, `dev_curve` as fractions) and
    ``results.json`` (`record`, which must hold the `required` keys)."""
    train_curve = [(h["step"], h["loss"]) for h in history if "loss" in h and h["loss"] == h["loss"]]
    plot_learning_curve(exp_dir / "learning_curve.png", train_curve, dev_curve, title=title,
                        best_step=best.step if best.found else None, dev_label=dev_label)
    write_results(exp_dir, record, required)


@dataclass
class RunSpec:
    """What a task plugs into `run_task`.

    build(device) -> (task, {"train"|"dev"|"test": dataset}, info): the task (a trainer `Task`
    with `model`, `dev_history` and `current_step`) and its datasets; it may log a summary.
    score(task, trainer, datasets, info, chash, history) -> the results.json record, written.
    collate_fn: batches of the datasets. required / table: the record's keys and its RESULTS.md
    table (None: the classification table). lock_name: the StageLock's name. seed: seeds python,
    numpy and torch before `build` (the head's initial weights) unless None. barrier_after_config:
    all ranks wait for config.yaml before building.
    """
    build: Callable[[Any], tuple]
    score: Callable[..., dict]
    collate_fn: Callable
    required: tuple = REQUIRED_KEYS
    table: TableSpec | None = None
    lock_name: str = "train_downstream"
    seed: int | None = None
    barrier_after_config: bool = False


def _config_yaml(cfg, resolved_inputs: dict) -> str:
    import yaml

    from s3prl.downstream.config import config_dict

    return yaml.safe_dump({**config_dict(cfg), "inputs": resolved_inputs}, sort_keys=False)


def resolved_config_yaml(cfg, inputs) -> str:
    """The text hashed for skip-if-complete and saved as config.yaml: the full task config (its
    sections in the config's `yaml_order`) plus the resolved inputs (`inputs.resolved()`)."""
    return _config_yaml(cfg, inputs.resolved())


def canonical_config_text(text: str, config_class: type) -> str:
    """A stored resolved-config YAML (`config.yaml`: the task config + ``inputs``) as this version
    writes it: keys added since take their defaults, so a run made before they existed hashes as
    today's run of the same settings. Text that no longer parses as `config_class` (a key removed,
    a bad value) comes back as is, and so hashes as another config."""
    import yaml

    from s3prl.config import ConfigError, from_dict, upgrade_keys

    try:
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or "inputs" not in data:
            return text
        inputs = data.pop("inputs")
        return _config_yaml(from_dict(config_class, upgrade_keys(config_class, data)), inputs)
    except (yaml.YAMLError, ConfigError, TypeError, ValueError):
        return text


def run_task(spec: RunSpec, config_text: str, cfg, exp_dir: str | Path, *, results_md: str | Path | None = None,
             device: str | None = None, progress: bool = True) -> dict:
    """Train, select the best dev step, score there, write results; returns the record.

    config_text: the resolved config + inputs YAML (hashed for skip-if-complete, saved as
    ``config.yaml``). cfg: the task config; its optimizer, runner and dataloader sections drive
    the trainer. An empty dict comes back on ranks other than the main one.
    """
    from s3prl.atomic import StageLock, atomic_write_text
    from s3prl.data.sampler import BucketBatchSampler
    from s3prl.train import distributed as D

    exp_dir = Path(exp_dir)
    chash = config_hash(config_text)
    done = read_results(exp_dir, spec.required)
    cfg_file = exp_dir / "config.yaml"
    stored = cfg_file.read_text(encoding="utf-8") if cfg_file.is_file() else None
    # A run written before a config key existed holds that key's default: the same config.
    same = stored is not None and config_hash(canonical_config_text(stored, type(cfg))) == chash
    if done is not None and (done.get("config_hash") == chash
                             or (same and done.get("config_hash") == config_hash(stored))):
        log.info("%s: complete (results.json, config %s)", exp_dir, done.get("config_hash"))
        if results_md:
            update_results_md(results_md, done, str(exp_dir), spec.table)
        return {**done, "skipped": True}
    if stored is not None and not same:
        raise UserError(f"{cfg_file}: {exp_dir} holds a run with another config or inputs; use a new exp dir "
                        f"or remove it")

    dist = D.init_distributed(device)
    dc = cfg.dataloader
    with StageLock(exp_dir, spec.lock_name) if dist.is_main else contextlib.nullcontext():
        if dist.is_main:
            atomic_write_text(cfg_file, config_text)
        if spec.barrier_after_config:
            D.barrier()
        if spec.seed is not None:
            seed_everything(spec.seed)   # the head's initial weights come from the config's seed
        task, datasets, info = spec.build(dist.device)
        train = datasets["train"]
        sampler = BucketBatchSampler(train.bucket_lengths(), dc.batch_size, seed=dc.seed, shuffle=True,
                                     half_batch_above=dc.half_batch_above, rank=dist.rank,
                                     world_size=dist.world_size)
        dev_loader = eval_loader(datasets["dev"], dc.dev_batch_size, dc, spec.collate_fn)
        trainer = Trainer(task, train_data=train, collate_fn=spec.collate_fn, sampler=sampler,
                          optimizer_cfg=cfg.optimizer, runner_cfg=cfg.runner, exp_dir=exp_dir, dist=dist,
                          dev_loader=dev_loader, num_workers=dc.num_workers, progress=progress)
        task.current_step = lambda: trainer.step
        trainer.resume()
        history = trainer.fit()
        record = None
        if dist.is_main:
            record = spec.score(task, trainer, datasets, info, chash, history)
            if results_md:
                update_results_md(results_md, record, str(exp_dir), spec.table)
        D.barrier()
    return record or {}


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task: everything the CLI (s3prl.bin.train_downstream --task NAME), `run_spec`
    and the results table (s3prl.bin.results_table --table NAME) need, listed by name in
    s3prl.downstream.tasks.TASKS.

    config: its config dataclass (extends s3prl.downstream.config.TaskConfig; its
    `heads_by_task` lists the `head.name`s each task accepts: `heads`). add_arguments(parser): its own
    command-line options (where its data come from). inputs(args) -> the inputs object (with
    ``resolved()``: what the config hash records about them) from the parsed options.
    build(cfg, inputs, exp_dir, device) -> (trainer Task, {"train"|"dev"|"test": dataset}, info).
    score(task, trainer, datasets, info, chash, history, *, cfg, inputs, exp_dir, command) -> the
    results.json record, written (see `RunSpec`). collate_fn: batches its datasets. table: its
    RESULTS.md table (row builder and the results.json keys it needs). describe(record) -> the
    one-line summary the CLI prints. lock_name / barrier_after_config: as `RunSpec`.
    overrides(args) -> config overrides (``a.b=v``) of its own options (e.g. hybrid's --lmwts sets
    decode.lmwts); applied after ``--override``, --layer and --fine-tune (`cli_overrides`).
    """
    name: str
    config: type
    add_arguments: Callable[[Any], None]
    inputs: Callable[[Any], Any]
    build: Callable[..., tuple]
    score: Callable[..., dict]
    collate_fn: Callable
    table: TableSpec
    describe: Callable[[dict], str]
    lock_name: str = "train_downstream"
    barrier_after_config: bool = False
    overrides: Callable[[Any], list[str]] | None = None

    @property
    def heads(self) -> tuple[str, ...]:
        """The `head.name`s the task accepts (its config class's `heads_by_task`)."""
        return tuple(self.config.heads_by_task.get(self.name, ()))


def run_spec(spec: TaskSpec, cfg, inputs, exp_dir: str | Path, *, results_md: str | Path | None = None,
             command: str | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Run task `spec` with config `cfg` on `inputs` in `exp_dir` (see the module docstring);
    returns the results.json record (``skipped: True`` when the run was already complete). The
    head's initial weights come from `cfg.runner.seed` (seeded before `spec.build`)."""
    exp_dir = Path(exp_dir)
    rs = RunSpec(build=partial(spec.build, cfg, inputs, exp_dir), collate_fn=spec.collate_fn, seed=cfg.runner.seed,
                 score=partial(spec.score, cfg=cfg, inputs=inputs, exp_dir=exp_dir, command=command),
                 required=spec.table.required, table=spec.table, lock_name=spec.lock_name,
                 barrier_after_config=spec.barrier_after_config)
    return run_task(rs, resolved_config_yaml(cfg, inputs), cfg, exp_dir, results_md=results_md, device=device,
                    progress=progress)


def add_run_arguments(p):
    """The options every training CLI ends with (read by `cli_overrides` and `run_task`):
    --layer, --fine-tune, --results-md, --device, --no-progress, -v, and the exp dir. Returns `p`."""
    p.add_argument("--layer", help="last | weighted_sum | <index>")
    p.add_argument("--fine-tune", action="store_true", help="train the upstream jointly (input.fine_tune)")
    p.add_argument("--results-md", default="RESULTS.md", help="RESULTS.md to update ('' = none)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto (the default): cuda when available")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / TensorBoard")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("exp_dir", help="experiment directory")
    return p


def cli_overrides(args) -> list[str]:
    """The config overrides of a training CLI's arguments: ``--override a.b=v`` as given, then
    ``--layer`` (input.layer) and ``--fine-tune`` (input.fine_tune=true)."""
    overrides = list(args.override)
    if args.layer is not None:
        overrides.append(f"input.layer={args.layer}")
    if args.fine_tune:
        overrides.append("input.fine_tune=true")
    return overrides


def cli_command(verb: str, argv: list[str] | None) -> str:
    """The command line of ``python -m s3prl.bin.<verb>`` with `argv` (None: this process's), quoted."""
    return f"python -m s3prl.bin.{verb} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def print_record(record: dict, describe: Callable[[dict], str]) -> None:
    """A training CLI's one-line summary of its run ("complete: ..." when it was already done)."""
    if record:
        print(("complete: " if record.get("skipped") else "") + describe(record))


__all__ = ["TaskSpec", "run_spec", "resolved_config_yaml", "RunSpec", "run_task",
           "BestDev", "load_best_dev", "run_fields", "finish_run", "eval_loader",
           "command_line", "add_run_arguments", "cli_command", "cli_overrides", "print_record"]
