"""Typed configs of the upstream (pre-trained) models: the transformer encoder shared by
Mockingjay / TERA / Audio ALBERT, the alteration (masking) objective, and APC.

Field names and defaults follow the 2020 S3PRL `transformer:` YAML section and today's
`Upstream_Config.transformer` (github.com/s3prl/s3prl @ b72a2cd9, config/*.yaml;
github.com/s3prl/s3prl v0.4.18, s3prl/upstream/mockingjay/model.py); they load through
`s3prl.config.load_config`. `UpstreamConfig.model` selects the family (s3prl.upstream.families),
which checks the model-specific settings: Mockingjay = time masking only, TERA = time
(+ frequency + magnitude), AALBERT = time masking with one transformer layer shared by all depths,
APC = autoregressive predictive coding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ACTIVATIONS = ("gelu", "relu", "swish")


@dataclass
class TransformerConfig:
    """The BERT-style encoder (Mockingjay paper, arXiv 1910.12638, §2; TERA arXiv 2007.06028)."""

    RENAMED_KEYS = {"downsample_rate": "frame_stacking"}

    hidden_size: int = 768
    num_hidden_layers: int = 3
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: Literal["gelu", "relu", "swish"] = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    share_layer: bool = False
    pre_layer_norm: bool = False
    # Frames stacked into one input vector (Mockingjay LARGE: 3); 1 = no stacking. S3PRL's
    # checkpoints and configs call it `downsample_rate`; its readers and writers translate.
    frame_stacking: int = 1
    # Longest (stacked) sequence the model accepts in one piece; 0 = no limit. The sinusoidal
    # positional table is computed for any length on demand.
    max_position: int = 0
    # Inputs longer than this (in stacked frames) are encoded in torch.chunk pieces, as today's
    # S3PRL `task.sequence_length` does; 0 = never chunk.
    sequence_length: int = 1500
    # Inputs longer than sequence_length are encoded in overlapping windows that give every frame
    # this many frames of context on each side; 0 = S3PRL's non-overlapping chunks. An inference
    # setting (extraction, on-the-fly downstream input): training never reads it.
    chunk_context: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size <= 0 or self.num_attention_heads <= 0:
            raise ValueError("hidden_size and num_attention_heads must be positive")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.num_hidden_layers < 1:
            raise ValueError(f"num_hidden_layers must be >= 1, got {self.num_hidden_layers}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {list(ACTIVATIONS)}")
        if self.frame_stacking < 1:
            raise ValueError(f"frame_stacking must be >= 1, got {self.frame_stacking}")
        if self.sequence_length < 0 or self.max_position < 0:
            raise ValueError("sequence_length and max_position must be >= 0")
        c, seq = self.chunk_context, self.sequence_length
        if c < 0 or (c and seq and 2 * c >= seq):
            raise ValueError(f"chunk context {c} must be >= 0 and leave frames of its {seq}-frame windows "
                             "(2 x chunk_context < sequence_length)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")


@dataclass
class MaskConfig:
    """Alteration of the (stacked) input (github.com/s3prl/s3prl @ b72a2cd9, `transformer/mam.py`)."""

    mask_proportion: float = 0.15
    mask_consecutive_min: int = 7
    mask_consecutive_max: int = 7
    mask_allow_overlap: bool = True
    mask_bucket_ratio: float = 1.2
    # Largest frequency band (in dims of the stacked vector) zeroed per utterance; 0 = off.
    mask_frequency: int = 0
    # Probability, decided once per batch, of adding Gaussian noise to the whole input.
    noise_proportion: float = 0.0
    noise_std: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_proportion <= 1.0:
            raise ValueError(f"mask_proportion must be in [0, 1], got {self.mask_proportion}")
        if self.mask_consecutive_min < 1 or self.mask_consecutive_max < self.mask_consecutive_min:
            raise ValueError("need 1 <= mask_consecutive_min <= mask_consecutive_max")
        if self.mask_bucket_ratio < 1.0:
            raise ValueError("mask_bucket_ratio must be >= 1")
        if self.mask_frequency < 0:
            raise ValueError("mask_frequency must be >= 0")
        if not 0.0 <= self.noise_proportion <= 1.0:
            raise ValueError("noise_proportion must be in [0, 1]")
        if self.noise_std < 0:
            raise ValueError("noise_std must be >= 0")


@dataclass
class APCConfig:
    """Autoregressive predictive coding (Chung et al., arXiv 1904.03240): GRU stack + postnet."""

    hidden_size: int = 512
    num_layers: int = 3
    dropout: float = 0.1
    residual: bool = True
    time_shift: int = 3

    def __post_init__(self) -> None:
        if self.hidden_size <= 0:
            raise ValueError("hidden_size must be positive")
        if self.num_layers < 1:
            raise ValueError("num_layers must be >= 1 (s3prl's apc_local needs >= 3)")
        if self.time_shift < 1:
            raise ValueError("time_shift must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")


@dataclass
class UpstreamConfig:
    """Which upstream to pre-train and its sub-configs (only its family's are used).

    model: a name of the table in `s3prl.upstream.families` (built in: mockingjay, tera, aalbert
    = the transformer family, apc); the family checks the model-specific settings. options: the
    settings of a family that has no section of its own here (one registered outside this
    package); its adapter reads them.
    """

    model: str = "tera"
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    apc: APCConfig = field(default_factory=APCConfig)
    # Reconstruction target: the clean input, or a separate 1025-dim linear spectrogram stream
    # (Mockingjay LARGE, `duo_feature`).
    target: Literal["input", "linear1025"] = "input"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from s3prl.upstream.families import family_of, model_names  # (the families import this module)

        if self.model not in model_names():
            raise ValueError(f"model {self.model!r} is not one of {list(model_names())}")
        family_of(self.model).validate(self)


def preset(model: str) -> UpstreamConfig:
    """The recipe defaults of `model` (its family's `preset`; the 2020 S3PRL configs for the
    built-in families: github.com/s3prl/s3prl @ b72a2cd9, config/*.yaml and rnn/runner.py)."""
    from s3prl.upstream.families import family_of

    return family_of(model).preset(model)
