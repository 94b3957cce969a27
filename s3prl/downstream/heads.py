"""Downstream classifier heads of the S3PRL 2020 / Mockingjay protocols.

As github.com/s3prl/s3prl @ b72a2cd9, downstream/model.py (LinearClassifier, RnnClassifier).

Frame-level heads map (B, T, H) representations to (B, T, C) logits:

- ``linear``  : Linear(H -> C)                                       (S3PRL `phone_linear`)
- ``1hidden`` : Linear(H -> 768) -> Dropout(0) -> ReLU -> Linear(768 -> C)   (`phone_1hidden`)
- ``concat``  : the 9 frames t-4 .. t+4 concatenated, the edges of each utterance replicated
                (the last *valid* frame, not the zero padding), then Linear(9H -> C) (`phone_concat`)
- ``frame``   : the speaker-task name of ``linear`` (utterance label broadcast to every frame).

Utterance-level heads map (B, T, H) + lengths to (B, C) logits:

- ``utterance``: mean over the valid frames, then Linear(H -> C) (`speaker_utterance`, S3PRL's
  RnnClassifier with hidden_size 0).
- ``rnn``: the Mockingjay paper's one-layer RNN classifier (ICASSP 2020 §4.3, confirmed in S3PRL
  issue #35): keep every 5th frame, one GRU layer of 32 units, final hidden state ->
  Linear(32 -> 32) -> ReLU -> Dropout(0.5) -> Linear(32 -> C).

Every head's ``forward(x, lengths)`` takes x (B, T, H) float and lengths (B,) int64 (valid frames
per utterance; frames at t >= length are padding and never influence the valid outputs) and has
``frame_level`` telling which of the two output shapes it gives.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from s3prl.errors import UserError


@dataclass
class HeadConfig:
    """Head hyper-parameters (the `model:` section of the downstream YAML).

    name: linear | 1hidden | concat | frame | utterance | rnn.
    hidden_size: the 1hidden layer width (768). context: frames on each side for concat (4 -> 9).
    dropout: dropout of 1hidden (0.0, as in 2020). rnn_*: the Mockingjay RNN head (GRU units,
    keep every k-th frame, dropout, widths of the post-GRU ReLU layers).
    """
    name: str = "linear"
    hidden_size: int = 768
    dropout: float = 0.0
    context: int = 4
    rnn_hidden_size: int = 32
    rnn_sample_rate: int = 5
    rnn_dropout: float = 0.5
    rnn_post_dims: list[int] = field(default_factory=lambda: [32])

    def __post_init__(self):
        if self.name not in HEADS:
            raise ValueError(f"head name {self.name!r} is not one of {sorted(HEADS)}")
        if self.hidden_size < 1 or self.rnn_hidden_size < 1 or self.rnn_sample_rate < 1:
            raise ValueError("hidden_size, rnn_hidden_size and rnn_sample_rate must be >= 1")
        if self.context < 0:
            raise ValueError(f"context must be >= 0, got {self.context}")
        for k in ("dropout", "rnn_dropout"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ValueError(f"{k} must be in [0, 1)")


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class LinearHead(nn.Module):
    frame_level = True

    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.out = nn.Linear(input_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(x)


class OneHiddenHead(nn.Module):
    frame_level = True

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 768, dropout: float = 0.0):
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.drop(self.hidden(x))))


def context_window(x: torch.Tensor, lengths: torch.Tensor, context: int) -> torch.Tensor:
    """Stack frames t-context .. t+context: (B, T, H) -> (B, T, (2 context + 1) H).

    Indices outside an utterance are clamped to its first / last valid frame (edge replication
    per utterance, so the zero padding of a shorter utterance in the batch never leaks in).
    """
    B, T, H = x.shape
    offsets = torch.arange(-context, context + 1, device=x.device)
    t = torch.arange(T, device=x.device)
    idx = t[None, :, None] + offsets[None, None, :]                         # (1, T, W)
    last = (lengths.to(x.device) - 1).clamp(min=0)[:, None, None]            # (B, 1, 1)
    idx = torch.minimum(idx.clamp(min=0), last)                              # (B, T, W)
    W = idx.shape[-1]
    gathered = torch.gather(x, 1, idx.reshape(B, T * W, 1).expand(B, T * W, H))
    return gathered.reshape(B, T, W * H)


class ConcatHead(nn.Module):
    frame_level = True

    def __init__(self, input_dim: int, num_classes: int, context: int = 4):
        super().__init__()
        self.context = context
        self.out = nn.Linear((2 * context + 1) * input_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(context_window(x, lengths, self.context))


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the valid frames: (B, T, H), (B,) -> (B, H)."""
    mask = valid_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / lengths.to(x.device).clamp(min=1)[:, None].to(x.dtype)


class UtteranceHead(nn.Module):
    frame_level = False

    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.out = nn.Linear(input_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(masked_mean(x, lengths))


class RnnHead(nn.Module):
    """Mockingjay's one-layer RNN classifier (see the module docstring)."""
    frame_level = False

    def __init__(self, input_dim: int, num_classes: int, hidden_size: int = 32, sample_rate: int = 5,
                 dropout: float = 0.5, post_dims: list[int] | None = None):
        super().__init__()
        self.sample_rate = sample_rate
        self.rnn = nn.GRU(input_dim, hidden_size, num_layers=1, batch_first=True)
        layers: list[nn.Module] = []
        dim = hidden_size
        for d in (post_dims if post_dims is not None else [32]):
            layers += [nn.Linear(dim, d), nn.ReLU(), nn.Dropout(dropout)]
            dim = d
        self.post = nn.Sequential(*layers)
        self.out = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        k = self.sample_rate
        x = x[:, ::k]
        # Frames 0, k, 2k, ... of an utterance of length L: ceil(L / k) of them.
        sub_len = ((lengths + k - 1) // k).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(x, sub_len.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)                                                  # (1, B, hidden)
        return self.out(self.post(h[-1]))


# name -> head class. The speaker task's `frame` head is the linear head.
HEADS = {
    "linear": LinearHead,
    "1hidden": OneHiddenHead,
    "concat": ConcatHead,
    "frame": LinearHead,
    "utterance": UtteranceHead,
    "rnn": RnnHead,
}


def build_head(cfg: HeadConfig, input_dim: int, num_classes: int) -> nn.Module:
    """Instantiate the head `cfg.name` for `input_dim`-dim inputs and `num_classes` outputs."""
    if cfg.name not in HEADS:
        raise UserError(f"unknown head '{cfg.name}' (valid: {', '.join(sorted(HEADS))})")
    if input_dim < 1 or num_classes < 1:
        raise UserError(f"head '{cfg.name}': input_dim {input_dim} and num_classes {num_classes} must be >= 1")
    if cfg.name == "1hidden":
        return OneHiddenHead(input_dim, num_classes, cfg.hidden_size, cfg.dropout)
    if cfg.name == "concat":
        return ConcatHead(input_dim, num_classes, cfg.context)
    if cfg.name == "rnn":
        return RnnHead(input_dim, num_classes, cfg.rnn_hidden_size, cfg.rnn_sample_rate, cfg.rnn_dropout,
                       cfg.rnn_post_dims)
    return HEADS[cfg.name](input_dim, num_classes)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
