"""The APC family: autoregressive predictive coding (Chung, Hsu, Tang & Glass, arXiv 1904.03240).

Our checkpoint sections are S3PRL's APC layout (github.com/s3prl/s3prl v0.4.18,
s3prl/upstream/apc/expert.py, which `apc_local` loads): `model` (state dict) and `config` =
{data: {audio: {...}}, model: {paras: {hidden_size, num_layers, dropout, residual}}}; the audio
section is what S3PRL's APC extracter reads (`FeatureConfig.to_apc_audio`: fbank, hamming
window). A feature config that extracter cannot express (another window, mfcc, deltas) is read by
this toolkit only (a warning says so when the file is written).

Readers of S3PRL's own APC layouts: `s3prl-apc` (`model` + `config`, as above) and `apc-2020`,
the bare state dict the 2020 code saved as `apc-<step>.ckpt` (github.com/s3prl/s3prl @
b72a2cd9, rnn/runner.py), residual connections as its default.
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from s3prl.errors import UserError
from s3prl.upstream.apc import APC
from s3prl.upstream.config import APCConfig, UpstreamConfig
from s3prl.upstream.families.base import Reader, UpstreamFamily, check_model
from s3prl.upstream.loading import LoadedUpstream, load_state
from s3prl.upstream.objectives import APCObjective


def _cfg_from_state(state: dict, paras: dict | None, path: Path) -> tuple[APCConfig, int]:
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


def _build(state: dict, paras: dict | None, path: Path, what: str, audio: dict | None,
           step: int | None) -> LoadedUpstream:
    acfg, input_dim = _cfg_from_state(state, paras, path)
    model = APC(input_dim, acfg)
    load_state(model, state, path, what)
    return LoadedUpstream("apc", model.eval(), UpstreamConfig(model="apc", apc=acfg), audio, step)


def _read_s3prl(ckpt: dict, path: Path, requested: str | None) -> LoadedUpstream:
    check_model("apc", requested, path)
    return _build(ckpt["model"], ckpt["config"].get("model", {}).get("paras"), path, "model",
                  ckpt["config"].get("data", {}).get("audio"), ckpt.get("Step"))


def _read_2020(ckpt: dict, path: Path, requested: str | None) -> LoadedUpstream:
    check_model("apc", requested, path)
    m = re.search(r"-(\d+)\.ckpt$", path.name)
    return _build(ckpt, None, path, "state dict", None, int(m.group(1)) if m else None)


class APCFamily(UpstreamFamily):
    name = "apc"
    models = ("apc",)
    config_section = "apc"
    readers = (
        Reader("s3prl-apc", lambda c: "model" in c and isinstance(c.get("config"), dict), _read_s3prl),
        Reader("apc-2020", lambda c: "postnet.weight" in c and any(str(k).startswith("rnn_layers.") for k in c),
               _read_2020),
    )

    def validate(self, ucfg: UpstreamConfig) -> None:
        if ucfg.target != "input":
            raise ValueError("model apc predicts its own input: target must be 'input'")

    def build_objective(self, ucfg: UpstreamConfig, input_dim: int, target_dim: int | None = None) -> nn.Module:
        if target_dim not in (None, input_dim):
            raise ValueError("model apc predicts its own input: no separate target")
        return APCObjective(ucfg, input_dim)

    # ---------------------------------------------------------------- hub
    def forward_states(self, model, feats, lengths, output_attentions=False):
        return list(model(feats, lengths)[1]), lengths, None

    def num_hidden_states(self, model) -> int:
        return int(model.config.num_layers)   # S3PRL's APC expert: one state per GRU layer

    def audio_section(self, features) -> dict:
        return features.to_apc_audio()

    def feature_config(self, audio: dict, path: str):
        from s3prl.features.config import FeatureConfig

        return FeatureConfig.from_apc_audio(audio, source=f"{path}: config.data.audio")

    # ---------------------------------------------------------------- our checkpoint layout
    def write_sections(self, objective, ucfg: UpstreamConfig, audio: dict) -> dict:
        c = ucfg.apc
        return {"model": {k: v.detach().cpu() for k, v in objective.apc.state_dict().items()},
                "config": {"data": {"audio": dict(audio)},
                           "model": {"paras": {"hidden_size": c.hidden_size, "num_layers": c.num_layers,
                                               "dropout": c.dropout, "residual": c.residual}}}}

    def read_sections(self, ckpt: dict, ucfg: UpstreamConfig, ours: dict, path: Path) -> LoadedUpstream:
        model = APC(int(ours["input_dim"]), ucfg.apc)
        load_state(model, ckpt.get("model"), path, "model")
        audio = ckpt.get("config", {}).get("data", {}).get("audio")
        if isinstance(audio, dict) and "feat_type" in audio and "window_type" not in audio \
                and int(ours.get("format", 1)) < 2:
            audio = {**audio, "window_type": "povey"}  # format 1 wrote no key for our povey default
        return LoadedUpstream("apc", model.eval(), ucfg, audio, ckpt.get("Step"))

    def restore_objective(self, objective, ckpt: dict, path: Path) -> None:
        load_state(objective.apc, ckpt.get("model"), path, "model")

    def s3prl_incompatibility(self, ucfg: UpstreamConfig, audio: dict) -> str | None:
        if isinstance(audio, dict) and "feat_type" in audio and not audio.get("external_features"):
            from s3prl.features.config import FeatureConfig

            return FeatureConfig.from_apc_audio(audio, "audio").apc_s3prl_incompatibility()
        return None


APC_FAMILY = APCFamily()
