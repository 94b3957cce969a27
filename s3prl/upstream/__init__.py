"""Upstream (self-supervised) models: the shared transformer encoder (Mockingjay, TERA, Audio
ALBERT presets), the input alteration, APC, the pre-training objectives and checkpoints."""
from s3prl.upstream.config import APCConfig, MaskConfig, TransformerConfig, UpstreamConfig, preset

__all__ = ["APCConfig", "MaskConfig", "TransformerConfig", "UpstreamConfig", "preset"]
