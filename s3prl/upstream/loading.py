"""Building blocks shared by every upstream checkpoint reader (ours and S3PRL's layouts): the
`LoadedUpstream` record and `load_state` (the one place that checks a stored state dict against
the model its config builds: names, shapes, NaN/Inf).

TF-style LayerNorm names (`gamma`/`beta`), which the pre-2021 S3PRL transformer checkpoints use
(github.com/s3prl/s3prl @ b72a2cd9, transformer/model.py `TransformerLayerNorm`), are renamed to
torch's `weight`/`bias` on the way in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3prl.errors import UserError
from s3prl.upstream.config import UpstreamConfig

__all__ = ["LoadedUpstream", "load_state"]


@dataclass
class LoadedUpstream:
    model_type: str                 # an `upstream.model` name (s3prl.upstream.families)
    model: nn.Module                # the encoder, in eval mode
    upstream_cfg: UpstreamConfig
    audio: dict | None              # the S3PRL 'audio' section, when the checkpoint has one
    step: int | None
    spec_head: nn.Module | None = None


def _rename_tf(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        k2 = re.sub(r"\.gamma$", ".weight", k)
        k2 = re.sub(r"\.beta$", ".bias", k2)
        out[k2] = v
    return out


def _shape(t: Any) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def load_state(module: nn.Module, state: dict, path: Path, what: str) -> None:
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
