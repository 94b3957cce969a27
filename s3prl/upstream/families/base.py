"""The interface of an upstream family and the one table `model name -> family`.

A family is the code behind one or more `upstream.model` names: its config section, the
pre-training objective (which holds the encoder), the encoder's hidden states as the hub returns
them, the sections it writes to and reads from our checkpoint layout, the feature ('audio')
section of its checkpoints, and readers of foreign (S3PRL) layouts. The toolkit's hub,
checkpoint, pre-training and plotting code ask `family_of(model)` and never test model names
themselves, as S3PRL resolves an upstream by name through its hub table (github.com/s3prl/s3prl
v0.4.18, s3prl/hub.py; each upstream a fixed `UpstreamExpert` interface). A new family is one
module defining an `UpstreamFamily` subclass and one `register_family(...)` call
(tests/upstream/test_families.py adds one from a test module).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from s3prl.config import from_dict
from s3prl.errors import UserError
from s3prl.upstream.config import UpstreamConfig
from s3prl.upstream.loading import LoadedUpstream, load_state

__all__ = ["UpstreamFamily", "Reader", "register_family", "unregister_family", "family_of", "families",
           "model_names", "check_model", "check_requested"]


@dataclass(frozen=True)
class Reader:
    """A reader of one foreign checkpoint layout: `matches(ckpt)` says whether the top-level dict
    is in this layout, `read(ckpt, path, model_type)` builds the `LoadedUpstream` (model_type:
    the model name the caller asked for, or None)."""

    name: str
    matches: Callable[[dict], bool]
    read: Callable[[dict, Path, "str | None"], Any]


class UpstreamFamily:
    """One upstream family. Subclasses set `name`, `models` and implement the methods that raise.

    objective: what `build_objective` returns, an nn.Module with `forward(feats, lengths,
    generator, target=None) -> s3prl.upstream.objectives.ObjectiveOutput`, an `input_dim`
    attribute and an `upstream` property (the encoder the hub runs).
    encoder (`model` below): an nn.Module with `input_dim` and `config`; `forward_states` runs it.
    """

    name: str = ""
    models: tuple[str, ...] = ()
    # Field of UpstreamConfig holding this family's settings; a family without one (registered
    # outside this package) keeps them in `upstream.options`, parsed with `config_class`.
    config_section: str | None = None
    config_class: type | None = None
    has_attention: bool = False
    readers: tuple[Reader, ...] = ()   # foreign checkpoint layouts, tried in order

    # ---------------------------------------------------------------- config
    def config(self, ucfg) -> Any:
        """The family's typed settings from an UpstreamConfig."""
        if self.config_section is not None:
            return getattr(ucfg, self.config_section)
        return from_dict(self.config_class, ucfg.options, "options")

    def validate(self, ucfg) -> None:
        """Model-specific checks of an UpstreamConfig (ValueError naming the keys)."""
        if self.config_section is None and self.config_class is not None:
            self.config(ucfg)

    def preset(self, model: str):
        """The recipe defaults of `model` as an UpstreamConfig."""
        return UpstreamConfig(model=model)

    # ---------------------------------------------------------------- build
    def build_objective(self, ucfg, input_dim: int, target_dim: int | None = None) -> nn.Module:
        raise NotImplementedError

    # ---------------------------------------------------------------- hub
    def forward_states(self, model: nn.Module, feats: torch.Tensor, lengths: torch.Tensor,
                       output_attentions: bool = False) -> tuple[list, torch.Tensor, list | None]:
        """-> (hidden states list of (B, T', H), lengths (B,) at T', attentions or None)."""
        raise NotImplementedError

    def num_hidden_states(self, model: nn.Module) -> int:
        raise NotImplementedError

    def hidden_size(self, model: nn.Module) -> int:
        return int(model.config.hidden_size)

    def frame_stacking(self, model: nn.Module) -> int:
        """Input frames per output state (frame stacking); 1 = none."""
        return 1

    def audio_section(self, features) -> dict:
        """The checkpoint's description of a FeatureConfig (default: S3PRL's transformer 'audio')."""
        return features.to_s3prl_audio()

    def feature_config(self, audio: dict, path: str):
        """FeatureConfig back from the checkpoint's audio section."""
        from s3prl.features.config import FeatureConfig

        return FeatureConfig.from_s3prl_audio(audio, source=f"{path}: audio")

    # ---------------------------------------------------------------- our checkpoint layout
    def write_sections(self, objective: nn.Module, ucfg, audio: dict) -> dict:
        """Top-level sections of our checkpoint holding the weights, config and audio section."""
        return {"model": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
                "audio": dict(audio)}

    def read_sections(self, ckpt: dict, ucfg, ours: dict, path: Path):
        """A `LoadedUpstream` from the sections `write_sections` wrote (ours: our own section)."""
        objective = self.build_objective(ucfg, int(ours["input_dim"]))
        load_state(objective, ckpt.get("model"), path, "model")
        return LoadedUpstream(ucfg.model, objective.upstream.eval(), ucfg, ckpt.get("audio"), ckpt.get("Step"))

    def restore_objective(self, objective: nn.Module, ckpt: dict, path: Path) -> None:
        """Load the weights `write_sections` wrote back into a training objective (resume)."""
        load_state(objective, ckpt.get("model"), path, "model")

    def s3prl_incompatibility(self, ucfg, audio: dict) -> str | None:
        """Why today's S3PRL cannot load what `write_sections` wrote, or None."""
        return None


_BY_MODEL: dict[str, UpstreamFamily] = {}


def register_family(family: UpstreamFamily) -> UpstreamFamily:
    """Add `family` to the table under each of its model names (a name taken by another family
    is a ValueError). Returns the family."""
    if not family.models:
        raise ValueError(f"family {family.name!r} lists no model names")
    for m in family.models:
        if m in _BY_MODEL and _BY_MODEL[m] is not family:
            raise ValueError(f"upstream model {m!r} is already served by family {_BY_MODEL[m].name!r}")
    for m in family.models:
        _BY_MODEL[m] = family
    return family


def unregister_family(family: UpstreamFamily) -> None:
    for m in family.models:
        if _BY_MODEL.get(m) is family:
            del _BY_MODEL[m]


def family_of(model: str) -> UpstreamFamily:
    """The family serving `model` (ValueError listing the known names otherwise)."""
    try:
        return _BY_MODEL[model]
    except KeyError:
        raise ValueError(f"unknown upstream model {model!r} (valid: {', '.join(model_names())})") from None


def check_requested(requested: str | None) -> None:
    """A model name a caller asked for must be in the table (UserError listing the valid ones)."""
    if requested is not None:
        try:
            family_of(requested)
        except ValueError as e:
            raise UserError(str(e)) from None


def check_model(found: str, requested: str | None, path: Path) -> None:
    """UserError when the caller asked for another model than the checkpoint holds."""
    check_requested(requested)
    if requested is not None and found != requested:
        raise UserError(f"{path}: checkpoint holds a {found} upstream, not {requested}")


def families() -> list[UpstreamFamily]:
    """Registered families, each once, in registration order."""
    out: list[UpstreamFamily] = []
    for f in _BY_MODEL.values():
        if f not in out:
            out.append(f)
    return out


def model_names() -> tuple[str, ...]:
    return tuple(_BY_MODEL)
