"""Upstream families and the table `upstream.model name -> family` (see `base`).

Built in: `transformer` (mockingjay, tera, aalbert) and `apc`. A new family is one module with an
`UpstreamFamily` subclass plus one `register_family` line here (or in the caller's own code).
"""
from s3prl.upstream.families.apc import APC_FAMILY
from s3prl.upstream.families.base import (Reader, UpstreamFamily, families, family_of, model_names,
                                          register_family, unregister_family)
from s3prl.upstream.families.transformer import TRANSFORMER

__all__ = ["UpstreamFamily", "Reader", "register_family", "unregister_family", "family_of", "families",
           "model_names", "TRANSFORMER", "APC_FAMILY"]

register_family(TRANSFORMER)
register_family(APC_FAMILY)
