"""Featurizer: turn an upstream's list of hidden states into the one representation a downstream
model consumes.

Follows today's S3PRL `s3prl.nn.Featurizer` / `upstream/interfaces.Featurizer`
(github.com/s3prl/s3prl v0.4.18, s3prl/nn/upstream.py and s3prl/upstream/interfaces.py):

* ``layer="weighted_sum"``: a softmax-weighted sum over **all** hidden states (the input-block
  output plus every layer, N+1 states, as today's S3PRL; the 2020 code summed the N encoder
  outputs only). The weights are learnable scalars initialised to zeros, i.e. uniform 1/(N+1)
  ("ELMo-style", Mockingjay/TERA papers' "weighted sum" transfer mode).
* ``layer=<int>``: one hidden state, 0 = the input block, N = the last layer; ``"last"`` = N.
* ``normalize=True``: each state goes through a parameter-free layer norm over the feature dim
  before selection/weighting (S3PRL's ``normalize`` / 2020 ``weighted_sum_norm``).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s3prl.errors import UserError


def resolve_layer(layer: int | str, num_states: int, where: str = "--layer") -> int:
    """Map a layer spec ("last", an int or an int-valued string) to an index in [0, num_states)."""
    if isinstance(layer, str):
        if layer == "last":
            return num_states - 1
        try:
            layer = int(layer)
        except ValueError:
            raise UserError(f"{where}: '{layer}' is not a layer index, 'last' or 'weighted_sum'") from None
    if not 0 <= layer < num_states:
        raise UserError(f"{where}: layer {layer} is out of range; this upstream has {num_states} hidden "
                        f"states (0 = input block .. {num_states - 1} = last layer)")
    return int(layer)


class Featurizer(nn.Module):
    """Select or learn-to-combine the hidden states of an `Upstream`.

    Args:
        upstream: an `s3prl.upstream.hub.Upstream` (anything with `num_hidden_states` and
            `hidden_size`).
        layer: "weighted_sum" (default), "last", or an index in [0, num_hidden_states).
        normalize: layer-normalise each state (no learned affine) before use.

    forward(hidden_states) takes the upstream output (or its `hidden_states` sequence of
    (B, T, H) tensors) and returns (B, T, H).
    """

    def __init__(self, upstream: Any, layer: int | str = "weighted_sum", normalize: bool = False):
        super().__init__()
        self.num_states = int(upstream.num_hidden_states)
        self.hidden_size = int(upstream.hidden_size)
        self.normalize = bool(normalize)
        if layer == "weighted_sum":
            self.layer: int | None = None
            self.weights = nn.Parameter(torch.zeros(self.num_states))
        else:
            self.layer = resolve_layer(layer, self.num_states, "Featurizer layer")
            self.weights = None

    @property
    def out_dim(self) -> int:
        return self.hidden_size

    def layer_weights(self) -> torch.Tensor:
        """The softmax weights (num_states,), or a one-hot vector for a selected layer."""
        if self.weights is None:
            w = torch.zeros(self.num_states)
            w[self.layer] = 1.0
            return w
        return torch.softmax(self.weights.detach(), dim=0)

    def _norm(self, h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, (h.shape[-1],)) if self.normalize else h

    def forward(self, hidden_states: Any) -> torch.Tensor:
        states: Sequence[torch.Tensor] = getattr(hidden_states, "hidden_states", hidden_states)
        if isinstance(hidden_states, dict):
            states = hidden_states["hidden_states"]
        if len(states) != self.num_states:
            raise UserError(f"Featurizer: got {len(states)} hidden states, expected {self.num_states}")
        if self.weights is None:
            return self._norm(states[self.layer])
        stacked = torch.stack([self._norm(h) for h in states], dim=0)  # (L, B, T, H)
        w = torch.softmax(self.weights, dim=0).to(stacked.dtype)
        return (w.view(-1, 1, 1, 1) * stacked).sum(dim=0)
