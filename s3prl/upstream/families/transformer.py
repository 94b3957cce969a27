"""The transformer family: Mockingjay, TERA and Audio ALBERT (one BERT-style encoder, masked
reconstruction; Liu et al. arXiv 1910.12638, Liu et al. arXiv 2007.06028, Chi et al. arXiv
2005.08575).

Our checkpoint sections are today's S3PRL transformer layout (github.com/s3prl/s3prl v0.4.18,
s3prl/upstream/mockingjay/builder.py): `Transformer` and `SpecHead` state dicts and
`Upstream_Config` = {transformer: {...}, task: {sequence_length}, audio: {...}}, which s3prl
0.4.x loads with `mockingjay_local` / `tera_local` / `audio_albert_local`, except a transformer
that stacks frames (`frame_stacking` > 1): s3prl 0.4.x has no frame stacking. S3PRL's own
layouts are read by `s3prl.upstream.families.s3prl_transformer`; docs/checkpoint-formats.md.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from s3prl.upstream.config import MaskConfig, TransformerConfig, UpstreamConfig
from s3prl.upstream.families.base import UpstreamFamily
from s3prl.upstream.families.s3prl_transformer import READERS
from s3prl.upstream.loading import LoadedUpstream, load_state
from s3prl.upstream.objectives import LINEAR_TARGET_DIM, MaskedReconstruction
from s3prl.upstream.transformer import SpecHead, TransformerModel

# The `transformer:` keys today's S3PRL TransformerConfig reads (plus what we need to rebuild).
HUB_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "intermediate_size",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
            "share_layer", "pre_layer_norm")


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


class TransformerFamily(UpstreamFamily):
    name = "transformer"
    models = ("mockingjay", "tera", "aalbert")
    config_section = "transformer"
    has_attention = True
    readers = READERS   # S3PRL's own layouts

    def validate(self, ucfg: UpstreamConfig) -> None:
        """Mockingjay = time masking only, TERA = time (+ frequency + noise), AALBERT = time masking
        with one layer shared by all depths."""
        m, t, k = ucfg.model, ucfg.transformer, ucfg.mask
        if m == "aalbert" and not t.share_layer:
            raise ValueError("model aalbert needs transformer.share_layer: true (one layer shared by all depths)")
        if m != "aalbert" and t.share_layer:
            raise ValueError(f"model {m} has transformer.share_layer: true; use model: aalbert")
        if m != "tera" and (k.mask_frequency or k.noise_proportion):
            raise ValueError(f"model {m} uses time masking only: set mask.mask_frequency: 0 and "
                             "mask.noise_proportion: 0 (or use model: tera)")
        if ucfg.target != "input" and k.mask_frequency:
            raise ValueError("a separate target stream needs mask.mask_frequency: 0 (bands are input dims)")

    def preset(self, model: str) -> UpstreamConfig:
        """The 2020 recipe defaults (github.com/s3prl/s3prl @ b72a2cd9, config/*.yaml)."""
        if model == "mockingjay":
            return UpstreamConfig(model=model, transformer=TransformerConfig(sequence_length=3000))
        if model == "tera":
            return UpstreamConfig(model=model, mask=MaskConfig(mask_frequency=8, noise_proportion=0.15))
        return UpstreamConfig(model=model, transformer=TransformerConfig(share_layer=True, frame_stacking=3),
                              mask=MaskConfig(mask_consecutive_min=1, mask_consecutive_max=1))

    def build_objective(self, ucfg: UpstreamConfig, input_dim: int, target_dim: int | None = None) -> nn.Module:
        if ucfg.target == "linear1025" and target_dim is None:
            target_dim = LINEAR_TARGET_DIM
        return MaskedReconstruction(ucfg, input_dim, target_dim)

    # ---------------------------------------------------------------- hub
    def forward_states(self, model, feats, lengths, output_attentions=False):
        out = model(feats, lengths, output_attentions=output_attentions)
        return list(out.hidden_states), out.lengths, out.attentions

    def num_hidden_states(self, model) -> int:
        return int(model.config.num_hidden_layers) + 1   # input block + every layer

    def frame_stacking(self, model) -> int:
        return int(model.config.frame_stacking)

    def feature_config(self, audio: dict, path: str):
        from s3prl.features.config import FeatureConfig

        return FeatureConfig.from_s3prl_audio(audio, source=f"{path}: Upstream_Config.audio")

    # ---------------------------------------------------------------- our checkpoint layout
    def write_sections(self, objective, ucfg: UpstreamConfig, audio: dict) -> dict:
        t = ucfg.transformer
        tsec = {k: getattr(t, k) for k in HUB_KEYS}
        tsec.update(input_dim=int(objective.input_dim), downsample_rate=t.frame_stacking)  # S3PRL's name
        return {"Transformer": _cpu_state(objective.transformer), "SpecHead": _cpu_state(objective.spec_head),
                "Upstream_Config": {"transformer": tsec, "task": {"sequence_length": t.sequence_length},
                                    "audio": dict(audio)}}

    def read_sections(self, ckpt: dict, ucfg: UpstreamConfig, ours: dict, path: Path) -> LoadedUpstream:
        model = TransformerModel(ucfg.transformer, int(ours["input_dim"]))
        load_state(model, ckpt.get("Transformer"), path, "Transformer")
        head = None
        if isinstance(ckpt.get("SpecHead"), dict):
            head = SpecHead(ucfg.transformer, int(ours.get("target_dim", ours["input_dim"])))
            load_state(head, ckpt["SpecHead"], path, "SpecHead")
            head.eval()
        audio = ckpt.get("Upstream_Config", {}).get("audio")
        return LoadedUpstream(ucfg.model, model.eval(), ucfg, audio, ckpt.get("Step"), head)

    def restore_objective(self, objective, ckpt: dict, path: Path) -> None:
        load_state(objective.transformer, ckpt.get("Transformer"), path, "Transformer")
        load_state(objective.spec_head, ckpt.get("SpecHead"), path, "SpecHead")

    def s3prl_incompatibility(self, ucfg: UpstreamConfig, audio: dict) -> str | None:
        dr = ucfg.transformer.frame_stacking
        if dr > 1:
            return f"it stacks {dr} frames (frame_stacking); s3prl 0.4.x has no frame stacking"
        return None


TRANSFORMER = TransformerFamily()
