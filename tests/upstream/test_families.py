"""A new upstream family is one module: this test defines one (a two-layer feed-forward encoder
trained to predict the next frame with an L1 loss), registers it, pre-trains it through the
normal pre-training run, and loads its checkpoint through the hub, without any change to the
package. The registry is restored afterwards."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from s3prl.config import ConfigError, from_dict
from s3prl.errors import UserError
from s3prl.upstream.apc import apc_l1_loss
from s3prl.upstream.families import UpstreamFamily, family_of, model_names, register_family, unregister_family
from s3prl.upstream.objectives import ObjectiveOutput
from tests.train.conftest import make_data_dir


# ------------------------------------------------------------------------------ the new family
@dataclass
class NextFrameConfig:
    hidden_size: int = 8

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")


class Encoder(nn.Module):
    def __init__(self, input_dim: int, cfg: NextFrameConfig):
        super().__init__()
        self.config, self.input_dim = cfg, input_dim
        self.inp = nn.Linear(input_dim, cfg.hidden_size)
        self.layer = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, feats, lengths):
        valid = (torch.arange(feats.shape[1], device=feats.device)[None] < lengths[:, None].to(feats.device))[..., None]
        h1 = torch.tanh(self.inp(feats)) * valid
        return [h1, torch.tanh(self.layer(h1)) * valid]


class NextFrame(nn.Module):
    def __init__(self, input_dim: int, cfg: NextFrameConfig):
        super().__init__()
        self.input_dim = input_dim
        self.encoder = Encoder(input_dim, cfg)
        self.head = nn.Linear(cfg.hidden_size, input_dim)

    @property
    def upstream(self):
        return self.encoder

    def forward(self, feats, lengths, generator=None, target=None):
        pred = self.head(self.encoder(feats, lengths)[-1])
        loss, n = apc_l1_loss(pred, feats, lengths, 1)
        return ObjectiveOutput(loss=loss, num_elements=n)


class NextFrameFamily(UpstreamFamily):
    name = "nextframe"
    models = ("nextframe",)
    config_class = NextFrameConfig

    def build_objective(self, ucfg, input_dim, target_dim=None):
        return NextFrame(input_dim, self.config(ucfg))

    def forward_states(self, model, feats, lengths, output_attentions=False):
        return model(feats, lengths), lengths, None

    def num_hidden_states(self, model):
        return 2


@pytest.fixture
def family():
    fam = register_family(NextFrameFamily())
    yield fam
    unregister_family(fam)
    assert "nextframe" not in model_names()


def _cfg(steps: int, hidden: int = 8):
    from s3prl.train.pretrain import PretrainConfig

    return from_dict(PretrainConfig, {
        "upstream": {"model": "nextframe", "options": {"hidden_size": hidden}},
        "features": {"feat_type": "fbank", "num_mel_bins": 20},
        "dataloader": {"batch_size": 4, "max_timestep": 60, "max_timestep_policy": "crop", "half_batch_above": 0},
        "optimizer": {"lr": 1e-2},
        "runner": {"total_steps": steps, "log_step": 2, "save_step": 2, "max_keep": 3},
    }, "test")


def test_new_family_pretrains_saves_and_loads_through_the_hub(family, tmp_path):
    from s3prl.train.pretrain import run_pretrain
    from s3prl.upstream.checkpoint import load_checkpoint
    from s3prl.upstream.hub import load_upstream

    data = make_data_dir(tmp_path / "data", n_utts=6)
    exp = tmp_path / "exp"
    assert run_pretrain(_cfg(4), data, exp, progress=False) == 0
    ckpt = load_checkpoint(exp / "states-4.ckpt")
    assert ckpt["S3PRL_Recipes"]["model"] == "nextframe"
    assert ckpt["S3PRL_Recipes"]["upstream"]["options"] == {"hidden_size": 8}
    assert ckpt["Step"] == 4 and set(ckpt["model"]) == {"encoder.inp.weight", "encoder.inp.bias",
                                                        "encoder.layer.weight", "encoder.layer.bias",
                                                        "head.weight", "head.bias"}
    history = ckpt["S3PRL_Recipes"]["extra"]["Trainer"]["history"]
    assert [h["step"] for h in history] == [2, 4] and all(h["loss"] > 0 for h in history)

    # resume through the family's restore: two more steps from step 4
    assert run_pretrain(_cfg(6), data, exp, resume=True, progress=False) == 0
    assert load_checkpoint(exp / "states-6.ckpt")["Step"] == 6

    up = load_upstream(exp)  # newest checkpoint of the exp dir
    assert up.model_type == "nextframe" and up.family is family and up.step == 6
    assert (up.num_hidden_states, up.hidden_size, up.input_dim) == (2, 8, 20) and not up.has_attention
    wav = torch.randn(16000) * 0.1
    out = up([wav])
    frames = 1 + (16000 - 400) // 160
    assert [tuple(h.shape) for h in out.hidden_states] == [(1, frames, 8), (1, frames, 8)]
    # the states are those of the stored weights
    enc = Encoder(20, NextFrameConfig(8))
    enc.load_state_dict({k[len("encoder."):]: v for k, v in load_checkpoint(exp / "states-6.ckpt")["model"].items()
                         if k.startswith("encoder.")})
    feats = up.compute_features(wav)
    ref = enc(feats[None], torch.tensor([feats.shape[0]]))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ref, out.hidden_states))
    with pytest.raises(UserError, match="no self-attention"):
        up.attentions(feats[None], torch.tensor([feats.shape[0]]))


def test_family_options_are_validated_and_unknown_models_listed(family):
    from s3prl.train.pretrain import PretrainConfig

    with pytest.raises(ConfigError, match="hidden_size must be >= 1"):
        _cfg(2, hidden=0)
    with pytest.raises(ConfigError, match=r"upstream: options: unknown key 'depth' \(valid: hidden_size\)"):
        from_dict(PretrainConfig, {"upstream": {"model": "nextframe", "options": {"depth": 2}}})
    with pytest.raises(ConfigError, match=r"'npc' is not one of \['mockingjay', 'tera', 'aalbert', 'apc', 'nextframe'\]"):
        from_dict(PretrainConfig, {"upstream": {"model": "npc"}})
    with pytest.raises(ValueError, match="already served by family 'nextframe'"):
        register_family(type("Other", (NextFrameFamily,), {"name": "other"})())


def test_builtin_table():
    assert model_names()[:4] == ("mockingjay", "tera", "aalbert", "apc")
    assert {m: family_of(m).name for m in ("mockingjay", "tera", "aalbert", "apc")} == {
        "mockingjay": "transformer", "tera": "transformer", "aalbert": "transformer", "apc": "apc"}
    assert family_of("tera").has_attention and not family_of("apc").has_attention


def test_one_reader_per_layout_in_order(family):
    from s3prl.upstream.checkpoint import readers

    assert [r.name for r in readers()] == ["s3prl-recipes", "s3prl-upstream-config", "s3prl-legacy-config",
                                          "s3prl-2020-settings", "s3prl-transformer-without-config", "s3prl-apc",
                                          "apc-2020"]   # the registered test family reads only our layout
