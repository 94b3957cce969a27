"""The upstream pre-training objectives the trainer calls.

* `MaskedReconstruction`: Mockingjay / TERA / AALBERT (github.com/s3prl/s3prl @ b72a2cd9,
  transformer/model.py and transformer/mam.py): stack frames, alter the input
  (`s3prl.upstream.masking.alter`), encode with `TransformerModel`, predict with `SpecHead`, L1 on
  the masked elements of the clean (or separate, e.g. linear-1025) target.
* `APCObjective`: APC (Chung et al., arXiv 1904.03240; github.com/s3prl/s3prl @ b72a2cd9, rnn/):
  predict x_{t+n} from x_{<=t}, L1 over valid frames.

`s3prl.upstream.families.build_objective` builds the one of a model's family. Both take `forward(feats (B, T, D), lengths (B,), generator, target=None) -> ObjectiveOutput`.
A batch in which no utterance received a mask returns `num_elements == 0` and a zero loss that
carries no gradient to the model: the trainer skips it (S3PRL's `batch_is_valid`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from s3prl.upstream.apc import APC, apc_l1_loss
from s3prl.upstream.config import UpstreamConfig
from s3prl.upstream.masking import alter, masked_l1
from s3prl.upstream.transformer import SpecHead, TransformerModel, stack_frames

__all__ = ["ObjectiveOutput", "MaskedReconstruction", "APCObjective", "LINEAR_TARGET_DIM"]

LINEAR_TARGET_DIM = 1025  # Mockingjay LARGE's linear-spectrogram target (n_fft 2048)


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor            # scalar
    num_elements: int             # elements the loss averages over (0 = skip this batch)
    extras: dict = field(default_factory=dict)  # "masked_input", "prediction", "target": (T, D) of one utterance


class MaskedReconstruction(nn.Module):
    """TransformerModel + SpecHead trained to reconstruct altered frames."""

    def __init__(self, cfg: UpstreamConfig, input_dim: int, target_dim: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.input_dim = input_dim
        self.target_dim = target_dim or input_dim
        if target_dim not in (None, input_dim) and cfg.mask.mask_frequency:
            raise ValueError("a separate target stream needs mask.mask_frequency: 0")
        self.transformer = TransformerModel(cfg.transformer, input_dim)
        self.spec_head = SpecHead(cfg.transformer, self.target_dim)

    @property
    def upstream(self) -> TransformerModel:
        return self.transformer

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator,
                target: torch.Tensor | None = None) -> ObjectiveOutput:
        dr = self.cfg.transformer.frame_stacking
        stacked, slen = stack_frames(feats, lengths, dr)
        if target is None:
            if self.target_dim != self.input_dim:
                raise ValueError(f"this objective predicts a {self.target_dim}-dim target: pass target=")
            tgt = stacked
        else:
            if target.shape[:2] != feats.shape[:2] or target.shape[-1] != self.target_dim:
                raise ValueError(f"target {tuple(target.shape)} does not match features {tuple(feats.shape)} "
                                 f"with target_dim {self.target_dim}")
            tgt, _ = stack_frames(target, lengths, dr)
        alt = alter(stacked, slen, self.cfg.mask, generator)
        if not bool(alt.keep.any()):
            return ObjectiveOutput(loss=stacked.new_zeros((), requires_grad=True), num_elements=0)
        keep = alt.keep
        inputs, slen_k, tgt = alt.inputs[keep], slen[keep], tgt[keep]
        if target is None or tgt.shape[-1] == alt.mask_label.shape[-1]:
            label = alt.mask_label[keep]
        else:  # separate target stream: the time-masked frames, every target dim
            label = alt.time_mask[keep][..., None].expand_as(tgt)
        out = self.transformer.encode(inputs, slen_k)
        pred, _ = self.spec_head(out.hidden_states[-1])
        loss = masked_l1(pred, tgt, label)
        n0 = int(slen_k[0])
        extras = {"masked_input": inputs[0, :n0].detach(), "prediction": pred[0, :n0].detach(),
                  "target": tgt[0, :n0].detach()}
        return ObjectiveOutput(loss=loss, num_elements=int(label.sum()), extras=extras)


class APCObjective(nn.Module):
    """APC with an L1 loss on the frame `time_shift` steps ahead (valid frames only)."""

    def __init__(self, cfg: UpstreamConfig, input_dim: int):
        super().__init__()
        self.cfg = cfg
        self.input_dim = input_dim
        self.apc = APC(input_dim, cfg.apc)

    @property
    def upstream(self) -> APC:
        return self.apc

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None,
                target: torch.Tensor | None = None) -> ObjectiveOutput:
        if target is not None:
            raise ValueError("APC predicts its own input; a separate target is not supported")
        pred, _ = self.apc(feats, lengths)
        shift = self.cfg.apc.time_shift
        loss, n = apc_l1_loss(pred, feats, lengths, shift)
        n0 = int(lengths[0])
        extras = {"masked_input": feats[0, : max(n0 - shift, 0)].detach(),
                  "prediction": pred[0, : max(n0 - shift, 0)].detach(),
                  "target": feats[0, shift:n0].detach()}
        return ObjectiveOutput(loss=loss, num_elements=n, extras=extras)
