"""Autoregressive Predictive Coding (APC; Chung, Hsu, Tang & Glass, Interspeech 2019, arXiv 1904.03240).

A stack of single-layer GRUs (`rnn_layers.{i}`; padding never reaches a valid frame's state, see
`APC.forward`), dropout between layers, residual connections from the second layer on (where
input and output sizes match), and a `postnet` Linear(hidden -> input_dim) that predicts the frame
`time_shift` (n = 3) steps ahead. Parameter names and shapes equal S3PRL's `upstream/apc/apc.py`
(`rnn_layers.<i>.{weight,bias}_{ih,hh}_l0`, `postnet.{weight,bias}`), so the state dict loads there
and vice versa (github.com/s3prl/s3prl @ b72a2cd9, rnn/model.py; github.com/s3prl/s3prl v0.4.18,
s3prl/upstream/apc/hubconf.py `apc_local`; docs/checkpoint-formats.md).

Hidden states: we return the output of every GRU layer (after residual), L tensors (B, T, H) and no
input-level state, which is what S3PRL's APC upstream returns for the usual 3 layers (its hooks
take the inputs of layers 1 and 2 plus the last layer's output). Unlike the 2020 code, the loss
(`apc_l1_loss`) averages over valid frames only, not over padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from s3prl.upstream.config import APCConfig

__all__ = ["APCConfig", "APC", "apc_l1_loss"]


class APC(nn.Module):
    def __init__(self, input_dim: int, cfg: APCConfig):
        super().__init__()
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        self.config = cfg
        self.input_dim = input_dim
        sizes = [input_dim] + [cfg.hidden_size] * cfg.num_layers
        self.rnn_layers = nn.ModuleList(
            [nn.GRU(input_size=sizes[i], hidden_size=sizes[i + 1], batch_first=True) for i in range(cfg.num_layers)])
        self.rnn_dropout = nn.Dropout(cfg.dropout)
        self.postnet = nn.Linear(cfg.hidden_size, input_dim)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """feats (B, T, D) zero-padded, lengths (B,) -> (prediction (B, T, D), [L x (B, T, H)]).

        prediction[:, t] estimates feats[:, t + time_shift]; padded positions are zero in every state.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise ValueError(f"expected features (B, T, {self.input_dim}), got {tuple(feats.shape)}")
        t = feats.shape[1]
        cpu_len = lengths.detach().to("cpu", torch.int64).clamp(min=1)
        # A unidirectional GRU is causal: the padding after an utterance never reaches the states
        # of its valid frames, so the padded batch can run through the GRU as it is and its
        # padded positions be zeroed afterwards (what pad_packed_sequence leaves there). On CPU that
        # takes torch's fused (oneDNN) GRU, whose training backward is ~4x faster than the
        # packed-sequence one (B 8 x 300 frames, 3 x 128: 0.18 vs 0.73 s at one thread); for a
        # batch of equal lengths (the presets' crops) the two give bitwise the same states and
        # gradients (tests/upstream/test_objectives.py). A mixed-length batch at inference (dumps)
        # keeps the packed path: there the two differ in the last float bits.
        full = bool((cpu_len == t).all())
        padded = self.training or full
        valid = None if full or not padded else \
            (torch.arange(t)[None, :] < cpu_len[:, None]).to(feats.device)[..., None]
        x = feats
        hidden = []
        last = len(self.rnn_layers) - 1
        for i, rnn in enumerate(self.rnn_layers):
            if padded:
                h, _ = rnn(x)
                if valid is not None:
                    h = h * valid
            else:
                packed = pack_padded_sequence(x, cpu_len, batch_first=True, enforce_sorted=False)
                out, _ = rnn(packed)
                h, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
            if i < last:
                h = self.rnn_dropout(h)
            if self.config.residual and i > 0:
                h = h + x
            hidden.append(h)
            x = h
        return self.postnet(x), hidden


def apc_l1_loss(pred: torch.Tensor, feats: torch.Tensor, lengths: torch.Tensor, shift: int) -> tuple[torch.Tensor, int]:
    """L1 between pred[:, t] and feats[:, t + shift] over frames with t + shift < length.

    Returns (mean over the valid elements, number of valid elements). Padding is excluded.
    """
    b, t, d = feats.shape
    if t <= shift:
        raise ValueError(f"sequences of {t} frames are too short for time_shift {shift}")
    p = pred[:, : t - shift]
    y = feats[:, shift:]
    valid = torch.arange(t - shift, device=feats.device)[None, :] + shift < lengths.to(feats.device)[:, None]
    n = int(valid.sum()) * d
    if n == 0:
        raise ValueError(f"no utterance is longer than time_shift {shift}")
    err = (p - y).abs() * valid[..., None]
    return err.sum() / n, n
