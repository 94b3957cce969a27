"""Upstream families and the table `upstream.model name -> family` (see `base`).

Built in: `transformer` (mockingjay, tera, aalbert) and `apc`. A new family is one module with an
`UpstreamFamily` subclass plus one `register_family` line here (or in the caller's own code).
"""
from s3prl.upstream.families.apc import APC_FAMILY
from s3prl.upstream.families.base import (Reader, UpstreamFamily, check_model, check_requested, families,
                                          family_of, model_names, register_family, unregister_family)
from s3prl.upstream.families.transformer import TRANSFORMER

__all__ = ["UpstreamFamily", "Reader", "register_family", "unregister_family", "family_of", "families",
           "model_names", "check_model", "check_requested", "build_objective", "TRANSFORMER", "APC_FAMILY"]

register_family(TRANSFORMER)
register_family(APC_FAMILY)


def build_objective(cfg, input_dim: int, target_dim: int | None = None):
    """The pre-training module (objective holding the encoder) of `cfg.model`'s family, for
    features of `input_dim`; `target_dim` only for a separate target stream (Mockingjay LARGE)."""
    return family_of(cfg.model).build_objective(cfg, input_dim, target_dim)
