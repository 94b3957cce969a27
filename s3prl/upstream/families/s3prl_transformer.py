"""Readers of S3PRL's own transformer checkpoint layouts (Mockingjay / TERA / AALBERT), one per
layout, each finding the model config and handing it to one builder:

* `s3prl-upstream-config`: today's S3PRL (github.com/s3prl/s3prl v0.4.18,
  s3prl/pretrain/mockingjay/... and s3prl/upstream/mockingjay/builder.py): `Transformer`,
  `SpecHead`, `Upstream_Config` = {transformer, task: {sequence_length, mask_*}, audio}, `Step`;
* `s3prl-legacy-config`: the same with the model config under `Config` (legacy builder path);
* `s3prl-2020-settings`: the June-Dec 2020 layout (github.com/s3prl/s3prl @ b72a2cd9,
  transformer/solver.py): `Settings{Config, Paras}`, `Transformer`, `SpecHead`, `Global_step`,
  and the pre-June-2020 one whose state is `Mockingjay` with a `mockingjay` config section.

Masking options tell TERA from Mockingjay (frequency masking or noise = TERA) and layer sharing
tells AALBERT; a caller that asks for a model decides between Mockingjay and TERA, whose weights
are alike. `mask_frequency` is a fraction of the feature dim in today's layout and a band width
in 2020's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from s3prl.config import to_dict
from s3prl.errors import UserError
from s3prl.upstream.config import MaskConfig, TransformerConfig, UpstreamConfig
from s3prl.upstream.families.base import Reader, check_requested
from s3prl.upstream.loading import LoadedUpstream, load_state
from s3prl.upstream.transformer import SpecHead, TransformerModel

__all__ = ["READERS"]

_TYPES = {"hidden_size": int, "num_hidden_layers": int, "num_attention_heads": int, "intermediate_size": int,
          "hidden_act": str, "hidden_dropout_prob": float, "attention_probs_dropout_prob": float,
          "initializer_range": float, "layer_norm_eps": float, "share_layer": bool, "pre_layer_norm": bool,
          "frame_stacking": int}
_MASK_TYPES = {"mask_proportion": float, "mask_consecutive_min": int, "mask_consecutive_max": int,
               "mask_allow_overlap": bool, "mask_bucket_ratio": float, "noise_proportion": float}


def _as(value: Any, tp: type, key: str, path: Path) -> Any:
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "false"):
                    return value.lower() == "true"
                raise ValueError(value)
            return bool(value)
        return tp(value)
    except (TypeError, ValueError):
        raise UserError(f"{path}: config key transformer.{key} = {value!r} is not a {tp.__name__}") from None


def _typed(sec: dict, types: dict, path: Path) -> dict:
    return {k: _as(sec[k], tp, k, path) for k, tp in types.items() if k in sec and sec[k] is not None}


def _transformer_cfg(sec: dict, seq_len: int, path: Path) -> tuple[TransformerConfig, MaskConfig]:
    prune = sec.get("prune_headids")
    if prune not in (None, "None", "", "none"):
        raise UserError(f"{path}: transformer.prune_headids = {prune!r}: pruned-head checkpoints are not supported")
    # S3PRL's `downsample_rate` is our frame_stacking
    kw = _typed({("frame_stacking" if k == "downsample_rate" else k): v for k, v in sec.items()}, _TYPES, path)
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        if k not in kw:
            raise UserError(f"{path}: config section 'transformer' lacks '{k}'")
    kw["sequence_length"] = max(int(seq_len), 0)
    try:
        tcfg = TransformerConfig(**kw)
    except ValueError as e:
        raise UserError(f"{path}: bad transformer config: {e}") from None
    mkw = _typed(sec, _MASK_TYPES, path)
    if "mask_frequency" in sec and sec["mask_frequency"]:
        mf = float(sec["mask_frequency"])
        in_dim = int(sec.get("input_dim", 0) or 0) * tcfg.frame_stacking
        # Today's S3PRL stores a fraction of the feature dim; 2020 stored a band width.
        mkw["mask_frequency"] = int(round(mf * in_dim)) if mf < 1 and in_dim else int(mf)
    try:
        mcfg = MaskConfig(**mkw)
    except ValueError:
        mcfg = MaskConfig()
    return tcfg, mcfg


def _model_name(tcfg: TransformerConfig, mcfg: MaskConfig, requested: str | None, path: Path) -> str:
    """The model the stored config describes, or the requested one where the weights cannot tell
    (only layer sharing is certain in a foreign checkpoint)."""
    found = "aalbert" if tcfg.share_layer else "tera" if (mcfg.mask_frequency or mcfg.noise_proportion) \
        else "mockingjay"
    check_requested(requested)
    if requested is None:
        return found
    if requested not in _MODELS or (found == "aalbert") != (requested == "aalbert"):
        raise UserError(f"{path}: checkpoint holds a {found} upstream, not {requested}")
    return requested


_MODELS = ("mockingjay", "tera", "aalbert")


def _read(ckpt: dict, up: dict, path: Path, requested: str | None) -> LoadedUpstream:
    """Build the encoder (and SpecHead) from the state and the model config `up` of any layout."""
    state_key = "Transformer" if "Transformer" in ckpt else "Mockingjay"
    state = ckpt.get(state_key)
    sec = up.get("transformer", up.get("mockingjay"))
    if not isinstance(sec, dict):
        raise UserError(f"{path}: model config has no 'transformer' (or 'mockingjay') section")
    task = up.get("task") if isinstance(up.get("task"), dict) else None
    if task is not None:
        # Today's S3PRL keeps the masking options (which tell TERA from Mockingjay) in `task`;
        # the 2020 layout kept them in the transformer section.
        sec = {**{k: v for k, v in task.items() if k.startswith("mask_") or k == "noise_proportion"}, **sec}
    seq = int(task["sequence_length"] or 0) if task is not None and "sequence_length" in task \
        else int(sec.get("max_input_length", 0) or 0)
    if not isinstance(state, dict) or "input_representations.spec_transform.weight" not in state:
        raise UserError(f"{path}: 'Transformer' state lacks input_representations.spec_transform.weight")
    tcfg, mcfg = _transformer_cfg(sec, seq, path)
    fan_in = int(state["input_representations.spec_transform.weight"].shape[1])
    if fan_in % tcfg.frame_stacking:
        raise UserError(f"{path}: spec_transform input {fan_in} is not a multiple of downsample_rate {tcfg.frame_stacking}")
    model_name = _model_name(tcfg, mcfg, requested, path)
    if model_name != "tera":
        mcfg = MaskConfig(**{**to_dict(mcfg), "mask_frequency": 0, "noise_proportion": 0.0})
    ucfg = UpstreamConfig(model=model_name, transformer=tcfg, mask=mcfg)
    model = TransformerModel(tcfg, fan_in // tcfg.frame_stacking)
    load_state(model, state, path, state_key)
    head = None
    hs = ckpt.get("SpecHead")
    if isinstance(hs, dict) and "output.weight" in hs:
        head = SpecHead(tcfg, int(hs["output.weight"].shape[0]) // tcfg.frame_stacking)
        load_state(head, hs, path, "SpecHead")
        head.eval()
    step = ckpt.get("Step", ckpt.get("Global_step"))
    audio = up["audio"] if isinstance(up.get("audio"), dict) else None
    return LoadedUpstream(model_name, model.eval(), ucfg, audio, int(step) if step is not None else None, head)


def _has_state(ckpt: dict) -> bool:
    return "Transformer" in ckpt or "Mockingjay" in ckpt


def _with_transformer(sec: Any) -> bool:
    return isinstance(sec, dict) and "transformer" in sec


def _settings_config(ckpt: dict) -> Any:
    return ckpt["Settings"].get("Config") if isinstance(ckpt.get("Settings"), dict) else None


def _no_config(ckpt: dict, path: Path, requested: str | None) -> LoadedUpstream:
    raise UserError(f"{path}: transformer checkpoint without a model config "
                    "(looked for Upstream_Config, Config and Settings.Config)")


READERS = (
    Reader("s3prl-upstream-config", lambda c: _has_state(c) and _with_transformer(c.get("Upstream_Config")),
           lambda c, p, m: _read(c, c["Upstream_Config"], p, m)),
    Reader("s3prl-legacy-config", lambda c: _has_state(c) and _with_transformer(c.get("Config")),
           lambda c, p, m: _read(c, c["Config"], p, m)),
    Reader("s3prl-2020-settings", lambda c: _has_state(c) and isinstance(_settings_config(c), dict),
           lambda c, p, m: _read(c, _settings_config(c), p, m)),
    Reader("s3prl-transformer-without-config", _has_state, _no_config),
)
