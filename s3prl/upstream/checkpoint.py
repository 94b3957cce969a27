"""Upstream checkpoints: write today's S3PRL layout, read ours and every historical S3PRL layout.

Written so that s3prl 0.4.x (PyPI; github.com/s3prl/s3prl `upstream/mockingjay/builder.py`,
`upstream/apc/expert.py`) loads our files with `mockingjay_local` / `tera_local` /
`audio_albert_local` / `apc_local` and computes the same hidden states:

* transformer family: `Transformer` (state dict), `SpecHead`, `Optimizer`, [`Scheduler`], `Step`,
  `Config` (runner config, no `transformer` key), `Upstream_Config` = {transformer: {...},
  task: {sequence_length}, audio: {...}};
* APC: `model` (state dict) + `config` = {data: {audio: {...}}, model: {paras: {hidden_size,
  num_layers, dropout, residual}}}, plus `Optimizer`, `Step`, `Config`; the audio section is what
  S3PRL's APC extracter reads (`FeatureConfig.to_apc_audio`: fbank, hamming window);
* both: `S3PRL_Recipes` = {format, model, upstream (our full UpstreamConfig), input_dim,
  target_dim, extra}.

Exceptions, logged as a warning when the file is written: a transformer that stacks frames
(`downsample_rate` > 1, the 2020 Mockingjay LARGE / AALBERT fbank3L layout) is read by this
toolkit (and the 2020 S3PRL code) only: s3prl 0.4.x builds its input layer for unstacked frames and
refuses the weights. An APC feature config S3PRL's extracter cannot express (another window, mfcc,
deltas) is read by this toolkit only. tests/upstream/test_s3prl_oracle.py checks both directions
against s3prl 0.4.18 for all four models.

Read: ours; today's S3PRL (`Upstream_Config`, or legacy `Config` holding `transformer`), including
the files s3prl's own `run_pretrain.py` writes, whose optimizer state pickles scheduler objects
(`optimizers.WarmupLinearSchedule`): globals like that in sections an upstream load never reads
(`Optimizer`, `Scheduler`, `Args`) become inert stand-ins (`load_checkpoint(lenient=True)`),
and in any other section the file is refused; the June-Dec 2020 layout (`Settings{Config, Paras}`,
`Transformer`, `SpecHead`, `Global_step`); the pre-June-2020 `Mockingjay` key with a `mockingjay`
config section; TF-style `gamma`/`beta` names; APC `model` + `config` and the bare 2020 APC state
dict. Everything is loaded with torch's weights_only unpickler (`torch.load(weights_only=True)`):
nothing in a file is imported or run; the 2020 `Settings.Paras` and s3prl's `Args`
argparse.Namespace is the one non-plain class admitted (a plain attribute bag).
"""
from __future__ import annotations

import argparse
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3prl.atomic import atomic_path
from s3prl.config import ConfigError, from_dict, to_dict
from s3prl.errors import UserError
from s3prl.train.trainer import checkpoint_name, find_checkpoints, prune_checkpoints  # one copy: the trainer writes them
from s3prl.upstream.apc import APC
from s3prl.upstream.config import APCConfig, MaskConfig, TransformerConfig, UpstreamConfig
from s3prl.upstream.transformer import SpecHead, TransformerModel

log = logging.getLogger(__name__)

__all__ = ["save_upstream_checkpoint", "load_checkpoint", "load_upstream", "LoadedUpstream",
           "restore_objective", "find_checkpoints", "prune_checkpoints", "checkpoint_name", "FORMAT_VERSION"]

# 2: APC audio sections follow S3PRL's APC extracter (no window_type key = hamming); format-1
# APC files of ours without the key were computed with a povey window.
FORMAT_VERSION = 2
OURS = "S3PRL_Recipes"
TRANSFORMER_FAMILY = ("mockingjay", "tera", "aalbert")
# The `transformer:` keys today's S3PRL TransformerConfig reads (plus what we need to rebuild).
_HUB_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "intermediate_size",
             "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
             "share_layer", "pre_layer_norm")


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


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_upstream_checkpoint(path: str | Path, *, objective: nn.Module, optimizer_state: dict | None,
                             scheduler_state: dict | None, step: int, runner_config: dict,
                             upstream_cfg: UpstreamConfig, audio: dict, extra: dict | None = None) -> None:
    """Write `path` atomically in today's S3PRL layout (see the module docstring).

    objective: a MaskedReconstruction or APCObjective (s3prl.upstream.objectives).
    runner_config: the trainer's config as a plain dict (must not hold a `transformer` key).
    audio: the feature config in S3PRL 'audio' layout (Kaldi style for the transformer family,
    `{feat_type, feat_dim, ...}` for APC).
    """
    runner_config = dict(runner_config or {})
    if "transformer" in runner_config:
        raise ValueError("runner_config must not contain a 'transformer' key (S3PRL reads it as a legacy model config)")
    ours = {"format": FORMAT_VERSION, "model": upstream_cfg.model, "upstream": to_dict(upstream_cfg),
            "input_dim": int(objective.input_dim), "target_dim": int(getattr(objective, "target_dim", objective.input_dim)),
            "extra": extra or {}}
    ckpt: dict[str, Any]
    if upstream_cfg.model == "apc":
        apc = objective.apc
        c = upstream_cfg.apc
        ckpt = {"model": _cpu_state(apc),
                "config": {"data": {"audio": dict(audio)},
                           "model": {"paras": {"hidden_size": c.hidden_size, "num_layers": c.num_layers,
                                               "dropout": c.dropout, "residual": c.residual}}}}
    else:
        t = upstream_cfg.transformer
        tsec = {k: getattr(t, k) for k in _HUB_KEYS}
        tsec.update(input_dim=int(objective.input_dim), downsample_rate=t.downsample_rate)
        ckpt = {"Transformer": _cpu_state(objective.transformer), "SpecHead": _cpu_state(objective.spec_head),
                "Upstream_Config": {"transformer": tsec, "task": {"sequence_length": t.sequence_length},
                                    "audio": dict(audio)}}
    ckpt.update({"Optimizer": optimizer_state, "Step": int(step), "Config": runner_config, OURS: ours})
    if scheduler_state is not None:
        ckpt["Scheduler"] = scheduler_state
    _check_plain(ckpt, "ckpt")
    _warn_s3prl_incompatible(path, upstream_cfg, audio)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _warn_s3prl_incompatible(path: str | Path, upstream_cfg: UpstreamConfig, audio: dict) -> None:
    """Say at save time when s3prl 0.4.x cannot read the file (see the module docstring)."""
    why = None
    if upstream_cfg.model == "apc":
        if isinstance(audio, dict) and "feat_type" in audio and not audio.get("external_features"):
            from s3prl.features.config import FeatureConfig

            why = FeatureConfig.from_apc_audio(audio, "audio").apc_s3prl_incompatibility()
    elif upstream_cfg.transformer.downsample_rate > 1:
        why = (f"it stacks {upstream_cfg.transformer.downsample_rate} frames (downsample_rate); "
               "s3prl 0.4.x has no frame stacking")
    if why:
        log.warning("%s: only this toolkit (and for stacked transformers the 2020 S3PRL layout "
                    "readers) can load this checkpoint: today's S3PRL cannot, %s", path, why)


# ------------------------------------------------------------------------------------------ reading
class _Unloaded:
    """Inert stand-in for a class or function a checkpoint names outside the sections we read
    (e.g. the `optimizers.WarmupLinearSchedule` object s3prl 0.4.x pickles into its optimizer
    state). Building one runs nothing and imports nothing: arguments and state are dropped."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Unloaded":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self.global_name}>"


def _unsafe_globals(path: Path) -> list[str]:
    """The pickle GLOBALs of `path` that weights_only does not admit, read statically (nothing is
    imported or run): torch's own scanner on the zip layout, the same scanner over the four
    pickles of the legacy (torch < 1.6) layout."""
    from torch import _weights_only_unpickler as wou

    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(f))
        f.seek(0)
        found: set[str] = set()
        for _ in range(4):  # magic number, protocol, sys info, the object
            found |= wou.get_globals_in_pkl(f)
    safe = set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())
    return sorted(found - safe)


def _stand_ins(names: list[str]) -> list[tuple[type, str]]:
    return [(type("Unloaded_" + re.sub(r"\W", "_", n), (_Unloaded,), {"global_name": n}), n) for n in names]


def _find_unloaded(obj: Any, where: str) -> tuple[str, str] | None:
    """(location, global name) of the first stand-in inside `obj`, else None."""
    if isinstance(obj, _Unloaded) or (isinstance(obj, type) and issubclass(obj, _Unloaded)):
        return where, obj.global_name
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif isinstance(obj, argparse.Namespace):
        items = vars(obj).items()
    else:
        return None
    for k, v in items:
        hit = _find_unloaded(v, f"{where}.{k}")
        if hit:
            return hit
    return None


def refuse_unloaded(ckpt: dict, path: str | Path, skip: tuple[str, ...] = ()) -> None:
    """UserError if a stand-in (`load_checkpoint(..., lenient=True)`) sits in any top-level
    section of `ckpt` but those in `skip` (sections the caller never reads)."""
    for key, value in ckpt.items():
        if key in skip:
            continue
        hit = _find_unloaded(value, str(key))
        if hit:
            raise UserError(f"{path}: refused: '{hit[0]}' holds a pickled {hit[1]}, not a tensor or plain "
                            "value (checkpoints are read without running code)")


def load_checkpoint(path: str | Path, lenient: bool = False) -> dict:
    """torch.load(weights_only=True, map_location='cpu'); refusals and corrupt files are UserErrors.

    lenient=False: a file naming any class or function weights_only does not admit is refused.
    lenient=True: such globals become inert `_Unloaded` stand-ins (registered for exactly the
    names found by a static scan, never imported, never called), so a file whose optimizer state
    pickles a scheduler object still loads; the caller must then `refuse_unloaded` every
    section it reads. The unpickler stays torch's weights_only one in both cases.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    allowed: list = [argparse.Namespace]
    try:
        try:
            with torch.serialization.safe_globals(allowed):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not lenient or not _refused_global(e):
                raise
            try:
                names = _unsafe_globals(path)
            except Exception:  # noqa: BLE001 - a file the scanner cannot parse is corrupt
                raise e from None
            if not names:
                raise
            with torch.serialization.safe_globals(allowed + _stand_ins(names)):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = lines[0] if lines else type(e).__name__
        why = next((ln for ln in lines if "Unsupported" in ln or "GLOBAL" in ln), None)
        if _refused_global(e):
            raise UserError(f"{path}: refused: checkpoint needs arbitrary unpickling ({(why or first)[:200]})") from None
        raise UserError(f"{path}: cannot read checkpoint (truncated or corrupt: {first[:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read checkpoint (truncated or corrupt: {first[:200]})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: not an S3PRL checkpoint (top level is a {type(ckpt).__name__}, not a dict)")
    return ckpt


def _refused_global(e: Exception) -> bool:
    text = str(e)
    return "Unsupported" in text or "GLOBAL" in text or "weights only" in text.lower() or "weights_only" in text \
        or "unrecognized function" in text or "Can only" in text


@dataclass
class LoadedUpstream:
    model_type: str                 # mockingjay | tera | aalbert | apc
    model: nn.Module                # TransformerModel or APC, in eval mode
    upstream_cfg: UpstreamConfig
    audio: dict | None              # the S3PRL 'audio' section, when the checkpoint has one
    step: int | None
    spec_head: SpecHead | None = None


def _rename_tf(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        k2 = re.sub(r"\.gamma$", ".weight", k)
        k2 = re.sub(r"\.beta$", ".bias", k2)
        out[k2] = v
    return out


def _shape(t: Any) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _load_state(module: nn.Module, state: dict, path: Path, what: str) -> None:
    """Load `state` into `module`; every refusal is one line naming the file and the tensor: not a
    state dict, a shape other than the one the checkpoint's own config builds, NaN/Inf weights
    (the one finiteness check of every upstream load: hub, extract, dump_feats), missing or
    unexpected names."""
    if not isinstance(state, dict):
        raise UserError(f"{path}: '{what}' is not a state dict")
    state = _rename_tf(state)
    own = module.state_dict()
    for k, v in state.items():
        if k not in own:
            continue
        if not isinstance(v, torch.Tensor):
            raise UserError(f"{path}: '{what}.{k}' is a {type(v).__name__}, not a tensor")
        if tuple(v.shape) != tuple(own[k].shape):
            raise UserError(f"{path}: tensor '{what}.{k}' has shape {_shape(v)} but the model its config "
                            f"describes needs {_shape(own[k])}")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"{path}: tensor '{what}.{k}' holds NaN or Inf values")
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"{path}: '{what}' does not match the model: missing {result.missing_keys[:5]}, "
                        f"unexpected {result.unexpected_keys[:5]}")


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


def _transformer_cfg(sec: dict, seq_len: int, path: Path) -> tuple[TransformerConfig, MaskConfig]:
    prune = sec.get("prune_headids")
    if prune not in (None, "None", "", "none"):
        raise UserError(f"{path}: transformer.prune_headids = {prune!r}: pruned-head checkpoints are not supported")
    kw: dict[str, Any] = {}
    types = {"hidden_size": int, "num_hidden_layers": int, "num_attention_heads": int, "intermediate_size": int,
             "hidden_act": str, "hidden_dropout_prob": float, "attention_probs_dropout_prob": float,
             "initializer_range": float, "layer_norm_eps": float, "share_layer": bool, "pre_layer_norm": bool,
             "downsample_rate": int}
    for k, tp in types.items():
        if k in sec and sec[k] is not None:
            kw[k] = _as(sec[k], tp, k, path)
    for k in ("hidden_size", "num_hidden_layers", "num_attention_heads"):
        if k not in kw:
            raise UserError(f"{path}: config section 'transformer' lacks '{k}'")
    kw["sequence_length"] = max(int(seq_len), 0)
    try:
        tcfg = TransformerConfig(**kw)
    except ValueError as e:
        raise UserError(f"{path}: bad transformer config: {e}") from None
    mkw: dict[str, Any] = {}
    mtypes = {"mask_proportion": float, "mask_consecutive_min": int, "mask_consecutive_max": int,
              "mask_allow_overlap": bool, "mask_bucket_ratio": float, "noise_proportion": float}
    for k, tp in mtypes.items():
        if k in sec and sec[k] is not None:
            mkw[k] = _as(sec[k], tp, k, path)
    if "mask_frequency" in sec and sec["mask_frequency"]:
        mf = float(sec["mask_frequency"])
        in_dim = int(sec.get("input_dim", 0) or 0) * tcfg.downsample_rate
        # Today's S3PRL stores a fraction of the feature dim; 2020 stored a band width.
        mkw["mask_frequency"] = int(round(mf * in_dim)) if mf < 1 and in_dim else int(mf)
    try:
        mcfg = MaskConfig(**mkw)
    except ValueError:
        mcfg = MaskConfig()
    return tcfg, mcfg


def _infer_family(tcfg: TransformerConfig, mcfg: MaskConfig) -> str:
    if tcfg.share_layer:
        return "aalbert"
    if mcfg.mask_frequency or mcfg.noise_proportion:
        return "tera"
    return "mockingjay"


def _check_type(found: str, requested: str | None, path: Path, strict: bool) -> None:
    if requested is None:
        return
    if requested not in TRANSFORMER_FAMILY + ("apc",):
        raise UserError(f"unknown upstream model '{requested}' (valid: mockingjay, tera, aalbert, apc)")
    ok = found == requested
    if not ok and not strict and found in TRANSFORMER_FAMILY and requested in TRANSFORMER_FAMILY:
        # Foreign checkpoints do not say which model they are; only layer sharing is certain.
        ok = (found == "aalbert") == (requested == "aalbert")
    if not ok:
        raise UserError(f"{path}: checkpoint holds a {found} upstream, not {requested}")


def _transformer_from_ckpt(ckpt: dict, path: Path) -> tuple[dict, dict, dict | None, int, int | None]:
    """-> (state, transformer section, audio, sequence_length, step) for every S3PRL layout."""
    state = ckpt.get("Transformer", ckpt.get("Mockingjay"))
    audio = None
    seq = 0
    if isinstance(ckpt.get("Upstream_Config"), dict) and "transformer" in ckpt["Upstream_Config"]:
        up = ckpt["Upstream_Config"]
    elif isinstance(ckpt.get("Config"), dict) and "transformer" in ckpt["Config"]:
        up = ckpt["Config"]
    elif isinstance(ckpt.get("Settings"), dict) and isinstance(ckpt["Settings"].get("Config"), dict):
        up = ckpt["Settings"]["Config"]
    else:
        raise UserError(f"{path}: transformer checkpoint without a model config "
                        "(looked for Upstream_Config, Config and Settings.Config)")
    sec = up.get("transformer", up.get("mockingjay"))
    if not isinstance(sec, dict):
        raise UserError(f"{path}: model config has no 'transformer' (or 'mockingjay') section")
    if isinstance(up.get("task"), dict):
        # Today's S3PRL keeps the masking options (which tell TERA from Mockingjay) in `task`;
        # the 2020 layout kept them in the transformer section.
        sec = {**{k: v for k, v in up["task"].items() if k.startswith("mask_") or k == "noise_proportion"}, **sec}
    if isinstance(up.get("task"), dict) and "sequence_length" in up["task"]:
        seq = int(up["task"]["sequence_length"] or 0)
    else:
        seq = int(sec.get("max_input_length", 0) or 0)
    if isinstance(up.get("audio"), dict):
        audio = up["audio"]
    step = ckpt.get("Step", ckpt.get("Global_step"))
    return state, sec, audio, seq, (int(step) if step is not None else None)


def _apc_cfg_from_state(state: dict, paras: dict | None, path: Path) -> tuple[APCConfig, int]:
    if "postnet.weight" not in state:
        raise UserError(f"{path}: APC state dict has no postnet.weight")
    input_dim = int(state["postnet.weight"].shape[0])
    hidden = int(state["postnet.weight"].shape[1])
    layers = len({k.split(".")[1] for k in state if k.startswith("rnn_layers.")})
    paras = dict(paras or {})
    if paras.get("vq"):
        raise UserError(f"{path}: VQ-APC checkpoints are not supported (config.model.paras.vq)")
    try:
        cfg = APCConfig(hidden_size=int(paras.get("hidden_size", hidden)), num_layers=int(paras.get("num_layers", layers)),
                        dropout=float(paras.get("dropout", 0.1)), residual=bool(paras.get("residual", True)))
    except ValueError as e:
        raise UserError(f"{path}: bad APC config: {e}") from None
    return cfg, input_dim


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


def load_upstream(path: str | Path, model_type: str | None = None) -> LoadedUpstream:
    """Build the upstream encoder stored in `path` (any supported layout), in eval mode.

    model_type: when given, a checkpoint of another model is a UserError.
    """
    path = Path(path)
    ckpt = load_checkpoint(path, lenient=True)
    _refuse_unloaded_in_read_sections(ckpt, path)
    ours = ckpt.get(OURS)
    if isinstance(ours, dict) and "upstream" in ours:
        try:
            ucfg = from_dict(UpstreamConfig, ours["upstream"], f"{path}:{OURS}.upstream")
        except ConfigError as e:
            raise UserError(str(e)) from None
        _check_type(ucfg.model, model_type, path, strict=True)
        if ucfg.model == "apc":
            model: nn.Module = APC(int(ours["input_dim"]), ucfg.apc)
            _load_state(model, ckpt.get("model"), path, "model")
            audio = ckpt.get("config", {}).get("data", {}).get("audio")
            if isinstance(audio, dict) and "feat_type" in audio and "window_type" not in audio \
                    and int(ours.get("format", 1)) < 2:
                audio = {**audio, "window_type": "povey"}  # format 1 wrote no key for our povey default
            return LoadedUpstream("apc", model.eval(), ucfg, audio, ckpt.get("Step"))
        model = TransformerModel(ucfg.transformer, int(ours["input_dim"]))
        _load_state(model, ckpt.get("Transformer"), path, "Transformer")
        head = None
        if isinstance(ckpt.get("SpecHead"), dict):
            head = SpecHead(ucfg.transformer, int(ours.get("target_dim", ours["input_dim"])))
            _load_state(head, ckpt["SpecHead"], path, "SpecHead")
            head.eval()
        audio = ckpt.get("Upstream_Config", {}).get("audio")
        return LoadedUpstream(ucfg.model, model.eval(), ucfg, audio, ckpt.get("Step"), head)

    if "Transformer" in ckpt or "Mockingjay" in ckpt:
        state, sec, audio, seq, step = _transformer_from_ckpt(ckpt, path)
        if not isinstance(state, dict) or "input_representations.spec_transform.weight" not in state:
            raise UserError(f"{path}: 'Transformer' state lacks input_representations.spec_transform.weight")
        tcfg, mcfg = _transformer_cfg(sec, seq, path)
        fan_in = int(state["input_representations.spec_transform.weight"].shape[1])
        if fan_in % tcfg.downsample_rate:
            raise UserError(f"{path}: spec_transform input {fan_in} is not a multiple of downsample_rate {tcfg.downsample_rate}")
        family = _infer_family(tcfg, mcfg)
        _check_type(family, model_type, path, strict=False)
        if model_type is not None:
            family = model_type
        if family != "tera":
            mcfg = MaskConfig(**{**to_dict(mcfg), "mask_frequency": 0, "noise_proportion": 0.0})
        ucfg = UpstreamConfig(model=family, transformer=tcfg, mask=mcfg)
        model = TransformerModel(tcfg, fan_in // tcfg.downsample_rate)
        _load_state(model, state, path, "Transformer" if "Transformer" in ckpt else "Mockingjay")
        head = None
        hs = ckpt.get("SpecHead")
        if isinstance(hs, dict) and "output.weight" in hs:
            out_dim = int(hs["output.weight"].shape[0]) // tcfg.downsample_rate
            head = SpecHead(tcfg, out_dim)
            _load_state(head, hs, path, "SpecHead")
            head.eval()
        return LoadedUpstream(family, model.eval(), ucfg, audio, step, head)

    if "model" in ckpt and isinstance(ckpt.get("config"), dict):
        _check_type("apc", model_type, path, strict=True)
        state = ckpt["model"]
        paras = ckpt["config"].get("model", {}).get("paras")
        acfg, input_dim = _apc_cfg_from_state(state, paras, path)
        model = APC(input_dim, acfg)
        _load_state(model, state, path, "model")
        audio = ckpt["config"].get("data", {}).get("audio")
        return LoadedUpstream("apc", model.eval(), UpstreamConfig(model="apc", apc=acfg), audio, ckpt.get("Step"))

    if "postnet.weight" in ckpt and any(k.startswith("rnn_layers.") for k in ckpt):
        # 2020 APC: a bare state dict (apc-<step>.ckpt); residual as the 2020 default.
        _check_type("apc", model_type, path, strict=True)
        acfg, input_dim = _apc_cfg_from_state(ckpt, None, path)
        model = APC(input_dim, acfg)
        _load_state(model, ckpt, path, "state dict")
        m = re.search(r"-(\d+)\.ckpt$", path.name)
        return LoadedUpstream("apc", model.eval(), UpstreamConfig(model="apc", apc=acfg), None,
                              int(m.group(1)) if m else None)

    raise UserError(f"{path}: not an upstream checkpoint (keys: {', '.join(map(str, list(ckpt)[:8]))})")


def restore_objective(objective: nn.Module, ckpt: dict, path: str | Path = "checkpoint") -> None:
    """Load the model weights of a checkpoint written by save_upstream_checkpoint into `objective`
    (for resuming pre-training); the optimizer/scheduler states are left to the caller."""
    path = Path(path)
    if hasattr(objective, "apc"):
        _load_state(objective.apc, ckpt.get("model"), path, "model")
    else:
        _load_state(objective.transformer, ckpt.get("Transformer"), path, "Transformer")
        _load_state(objective.spec_head, ckpt.get("SpecHead"), path, "SpecHead")


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
