"""Upstream checkpoints: write our layout (today's S3PRL layout plus our own section), read ours
and every S3PRL layout through one dispatcher.

Each upstream family (s3prl.upstream.families) writes and reads its own sections, which are the
layout s3prl 0.4.x (PyPI; github.com/s3prl/s3prl `upstream/mockingjay/builder.py`,
`upstream/apc/expert.py`) loads with `mockingjay_local` / `tera_local` / `audio_albert_local` /
`apc_local`, computing the same hidden states:

* transformer family: `Transformer` (state dict), `SpecHead`, `Upstream_Config` = {transformer:
  {...}, task: {sequence_length}, audio: {...}};
* APC: `model` (state dict) + `config` = {data: {audio: {...}}, model: {paras: {...}}};
* every file: `Optimizer`, [`Scheduler`], `Step`, `Config` (runner config, no `transformer` key)
  and `S3PRL_Recipes` = {format, model, upstream (our full UpstreamConfig), input_dim,
  target_dim, extra}.

A file today's S3PRL cannot load (a transformer that stacks frames; an APC feature config its
extracter cannot express) gets a warning when it is written (`UpstreamFamily.s3prl_incompatibility`).
tests/upstream/test_s3prl_oracle.py checks both directions against s3prl 0.4.18.

Reading (`load_upstream`): one reader per layout, tried in order: ours (`S3PRL_Recipes`, handed
to the family its `model` names), then each family's readers of S3PRL's layouts (transformer:
`Upstream_Config`, legacy `Config`, 2020 `Settings`, pre-June-2020 `Mockingjay`; APC: `model` +
`config`, the bare 2020 state dict). Files are read with torch's weights_only unpickler
(`s3prl.checkpoints.load_checkpoint`); s3prl's own `run_pretrain.py` files pickle scheduler
objects into their optimizer state, which become inert stand-ins (`lenient=True`) in the
sections an upstream load never reads (`Optimizer`, `Scheduler`, `Args`, `Runner`); anywhere
else the file is refused. The 2020 `Settings.Paras` and s3prl's `Args` argparse.Namespace is the
one non-plain class admitted (a plain attribute bag).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3prl.atomic import atomic_path
from s3prl.checkpoints import (_Unloaded, checkpoint_name, find_checkpoints, load_checkpoint,  # noqa: F401
                               prune_checkpoints, refuse_unloaded)
from s3prl.config import ConfigError, from_dict, to_dict, upgrade_keys
from s3prl.errors import UserError
from s3prl.upstream.config import UpstreamConfig
from s3prl.upstream.families import Reader, check_model, families, family_of
from s3prl.upstream.loading import LoadedUpstream

log = logging.getLogger(__name__)

__all__ = ["save_upstream_checkpoint", "load_checkpoint", "load_upstream", "LoadedUpstream", "readers",
           "restore_objective", "find_checkpoints", "prune_checkpoints", "checkpoint_name", "FORMAT_VERSION",
           "resolve_checkpoint"]

# 2: APC audio sections follow S3PRL's APC extracter (no window_type key = hamming); format-1
# APC files of ours without the key were computed with a povey window.
FORMAT_VERSION = 2
OURS = "S3PRL_Recipes"


# ------------------------------------------------------------------------------------------ writing
def _check_plain(value: Any, where: str) -> None:
    """Refuse anything torch.load(weights_only=True) would not read back (numpy, dataclasses, ...)."""
    # Exact types: numpy.float64 subclasses float but needs numpy to unpickle.
    if value is None or type(value) in (bool, int, float, str) or \
            isinstance(value, (torch.Tensor, torch.dtype, torch.device)):
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if type(value) is dict:
        for k, v in value.items():
            if type(k) not in (str, int):
                raise TypeError(f"checkpoint key {where}.{k!r} is not a str or int")
            _check_plain(v, f"{where}.{k}")
        return
    raise TypeError(f"checkpoint value {where} is a {type(value).__name__}; only tensors and plain Python values are allowed")


def save_upstream_checkpoint(path: str | Path, *, objective: nn.Module, optimizer_state: dict | None,
                             scheduler_state: dict | None, step: int, runner_config: dict,
                             upstream_cfg: UpstreamConfig, audio: dict, extra: dict | None = None) -> None:
    """Write `path` atomically in our layout (see the module docstring).

    objective: what `s3prl.upstream.families.build_objective` built.
    runner_config: the trainer's config as a plain dict (must not hold a `transformer` key).
    audio: the feature config as the family's `audio_section` describes it.
    """
    runner_config = dict(runner_config or {})
    if "transformer" in runner_config:
        raise ValueError("runner_config must not contain a 'transformer' key (S3PRL reads it as a legacy model config)")
    family = family_of(upstream_cfg.model)
    ours = {"format": FORMAT_VERSION, "model": upstream_cfg.model, "upstream": to_dict(upstream_cfg),
            "input_dim": int(objective.input_dim), "target_dim": int(getattr(objective, "target_dim", objective.input_dim)),
            "extra": extra or {}}
    ckpt: dict[str, Any] = family.write_sections(objective, upstream_cfg, audio)
    ckpt.update({"Optimizer": optimizer_state, "Step": int(step), "Config": runner_config, OURS: ours})
    if scheduler_state is not None:
        ckpt["Scheduler"] = scheduler_state
    _check_plain(ckpt, "ckpt")
    why = family.s3prl_incompatibility(upstream_cfg, audio)
    if why:
        log.warning("%s: only this toolkit (and for stacked transformers the 2020 S3PRL layout "
                    "readers) can load this checkpoint: today's S3PRL cannot, %s", path, why)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


# ------------------------------------------------------------------------------------------ reading
# Sections an upstream load never reads: optimizer/scheduler state (s3prl 0.4.x pickles scheduler
# objects into it), s3prl's runner `Args` namespace, the 2020 `Runner` config.
_UNREAD = ("Optimizer", "Scheduler", "Args", "Runner")


def _refuse_unloaded_in_read_sections(ckpt: dict, path: Path) -> None:
    skip = list(_UNREAD)
    if not (isinstance(ckpt.get("Config"), dict) and "transformer" in ckpt["Config"]):
        skip.append("Config")  # today's runner config; only the legacy layout keeps the model there
    if isinstance(ckpt.get("Settings"), dict):  # 2020: Settings.Config is read, Settings.Paras is not
        skip.append("Settings")
        refuse_unloaded({"Settings": {k: v for k, v in ckpt["Settings"].items() if k != "Paras"}}, path)
    refuse_unloaded(ckpt, path, tuple(skip))


def _read_ours(ckpt: dict, path: Path, requested: str | None) -> LoadedUpstream:
    """Our layout: `S3PRL_Recipes.upstream` is the full UpstreamConfig; its family reads the rest."""
    ours = ckpt[OURS]
    try:
        ucfg = from_dict(UpstreamConfig, upgrade_keys(UpstreamConfig, ours["upstream"]), f"{path}:{OURS}.upstream")
    except ConfigError as e:
        raise UserError(str(e)) from None
    check_model(ucfg.model, requested, path)
    return family_of(ucfg.model).read_sections(ckpt, ucfg, ours, path)


def readers() -> list:
    """Every layout reader, in the order they are tried: ours, then each family's."""
    ours = Reader("s3prl-recipes", lambda c: isinstance(c.get(OURS), dict) and "upstream" in c[OURS], _read_ours)
    return [ours] + [r for fam in families() for r in fam.readers]


def load_upstream(path: str | Path, model_type: str | None = None) -> LoadedUpstream:
    """Build the upstream encoder stored in `path` (any supported layout), in eval mode.

    model_type: when given, a checkpoint of another model is a UserError.
    """
    path = Path(path)
    ckpt = load_checkpoint(path, lenient=True)
    _refuse_unloaded_in_read_sections(ckpt, path)
    for reader in readers():
        if reader.matches(ckpt):
            return reader.read(ckpt, path, model_type)
    raise UserError(f"{path}: not an upstream checkpoint (keys: {', '.join(map(str, list(ckpt)[:8]))})")


def restore_objective(objective: nn.Module, ckpt: dict, path: str | Path = "checkpoint") -> None:
    """Load the model weights of a checkpoint written by save_upstream_checkpoint into `objective`
    (for resuming pre-training); the optimizer/scheduler states are left to the caller."""
    path = Path(path)
    ours = ckpt.get(OURS)
    if not isinstance(ours, dict) or "model" not in ours:
        raise UserError(f"{path}: not a checkpoint of this toolkit (no {OURS}.model); cannot restore")
    try:
        family = family_of(str(ours["model"]))
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    family.restore_objective(objective, ckpt, path)


# ------------------------------------------------------------------------------------------ files
def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the newest `states-<step>.ckpt` of an experiment directory."""
    p = Path(path)
    if p.is_dir():
        found = find_checkpoints(p)
        if not found:
            raise UserError(f"{p}: experiment directory holds no states-<step>.ckpt checkpoint")
        return found[-1][1]
    return p
