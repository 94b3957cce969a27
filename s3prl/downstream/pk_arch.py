"""`S3PRLUpstream`: one of our pre-trained upstreams as a PyTorch-Kaldi architecture.

The role of the 2020 S3PRL `transformer/nn_transformer.py::TRANSFORMER(options, inp_dim)`
(github.com/s3prl/s3prl, 2020 src/pytorch_kaldi/; PyTorch-Kaldi's core.py and utils.py,
github.com/mravanelli/pytorch-kaldi): PyTorch-Kaldi imports `arch_library`
(`s3prl.downstream.pk_arch`), builds `arch_class(config[architectureN], inp_dim)` with the cfg
section's **string** options, reads `out_dim`, and feeds it the chunk's features time-major,
(T, B, D) zero-padded, for `arch_seq_model=True` architectures. The options (declared for
PyTorch-Kaldi's check_cfg in `pk_arch.proto`, parsed with strtobool as PyTorch-Kaldi does):

- `upstream_ckpt` (alias `ckpt_file`, the 2020 name): any checkpoint `s3prl.upstream.hub.load_upstream`
  reads (ours, today's S3PRL layout, the 2020 layout; Mockingjay / TERA / AALBERT / APC).
- `load_pretrain` ('True'): 'False' re-initialises the loaded architecture (a no-pre-training baseline).
- `no_grad` ('True'): frozen upstream, eval mode, no gradients; 'False' = fine-tune it.
- `dropout` ('default' | float): overrides every dropout of the upstream (fine-tuning).
- `weighted_sum` ('False'): learnable softmax-weighted sum over all hidden states
  (`s3prl.upstream.featurizer.Featurizer`); trainable even when the upstream is frozen.
- `select_layer` ('-1'): -1 = last layer, else a hidden-state index (0 = input block .. N = last).
- `spec_aug` ('False'), `spec_aug_prev` ('True'), `spec_aug_seed`: SpecAugment in training mode,
  on the input features (prev=True: 2 time masks <= 70 frames, 2 frequency masks <= 4 bins) or on
  the output representation (prev=False: frequency masks <= 86 dims), as the 2020 wrapper did;
  masks are drawn from a torch.Generator seeded with `spec_aug_seed + torch.initial_seed()`.
  PyTorch-Kaldi builds the architecture anew for every chunk right after
  `torch.manual_seed(seed + epoch + chunk)` (core.run_nn, utils.write_cfg_chunk), so every chunk
  draws different masks and a rerun draws the same ones.
- `permute_input` ('True'): (T, B, D) in and (T, B, out_dim) out; 'False' = (B, T, D) batch-major.
  Both outputs are contiguous: PyTorch-Kaldi's forward_model `.view(max_len * batch, -1)`s the
  output of a sequential architecture before a non-sequential one (the MLP above it).

Input: the features as the checkpoint was trained on them, which the cfg's fea_opts chain makes
(`s3prl.downstream.pytorch_kaldi`: the checkpoint's deltas and per-utterance CMVN over a plain
fbank/MFCC dump, computed on whole utterances before PyTorch-Kaldi cuts long ones); this class
adds no normalisation of its own, so it also takes external features (fMLLR) as they come.

Padding: PyTorch-Kaldi zero-pads shorter sequences in a batch; as the 2020 wrapper did, the valid
frames are the span between the first and the last non-zero frame of each sequence. Padded
positions come out as zeros. Output frames equal input frames (the hub upsamples stacked models).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from s3prl.errors import UserError
from s3prl.upstream.featurizer import Featurizer

_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")


def _strtobool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    """distutils.util.strtobool semantics (what PyTorch-Kaldi uses) on an option string."""
    raw = options.get(key, None)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    v = str(raw).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise UserError(f"[architecture] {key}: {raw!r} is not a boolean (True/False)")


def _int(options: Mapping[str, Any], key: str, default: int) -> int:
    raw = options.get(key, None)
    if raw is None:
        return default
    try:
        return int(str(raw).strip())
    except ValueError:
        raise UserError(f"[architecture] {key}: {raw!r} is not an integer") from None


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator, *,
                 n_time: int = 2, max_time: int = 70, n_freq: int = 2, max_freq: int = 4) -> torch.Tensor:
    """Zero `n_time` time spans (<= max_time frames, within each sequence's length) and `n_freq`
    frequency bands (<= max_freq dims) of every sequence. x: (B, T, D) -> new tensor (B, T, D)."""
    x = x.clone()
    B, _, D = x.shape
    for b in range(B):
        T = int(lengths[b])
        for _ in range(n_time):
            w = int(torch.randint(0, min(max_time, T) + 1, (1,), generator=gen))
            if w:
                t0 = int(torch.randint(0, T - w + 1, (1,), generator=gen))
                x[b, t0:t0 + w] = 0
        for _ in range(n_freq):
            w = int(torch.randint(0, min(max_freq, D) + 1, (1,), generator=gen))
            if w:
                f0 = int(torch.randint(0, D - w + 1, (1,), generator=gen))
                x[b, :T, f0:f0 + w] = 0
    return x


class S3PRLUpstream(nn.Module):
    """PyTorch-Kaldi architecture wrapping an S3PRL upstream (+ layer selection / weighted sum).

    Args:
        options: PyTorch-Kaldi's `config[architectureN]` section (or any str -> str mapping).
        inp_dim: feature dim PyTorch-Kaldi computed for the input (after fea_opts and context);
            must equal the upstream's input dim. <= 0 means "take the upstream's".
    Attributes: out_dim (hidden size), upstream (`s3prl.upstream.hub.Upstream`), featurizer.
    """

    def __init__(self, options: Mapping[str, Any], inp_dim: int):
        super().__init__()
        from s3prl.upstream.hub import load_upstream

        ckpt = options.get("upstream_ckpt") or options.get("ckpt_file")
        if not ckpt or str(ckpt).strip().lower() == "none":
            raise UserError("[architecture] upstream_ckpt: no upstream checkpoint given")
        self.no_grad = _strtobool(options, "no_grad", True)
        self.load_pretrain = _strtobool(options, "load_pretrain", True)
        self.weighted_sum = _strtobool(options, "weighted_sum", False)
        self.select_layer = _int(options, "select_layer", -1)
        self.permute_input = _strtobool(options, "permute_input", True)
        self.spec_aug = _strtobool(options, "spec_aug", False)
        self.spec_aug_prev = _strtobool(options, "spec_aug_prev", True)
        # Offset by torch's seed: PyTorch-Kaldi reseeds torch per chunk before building us, and a
        # fixed seed alone would repeat the same mask sequence in every chunk of every epoch.
        # Modulo 2**64: Generator.manual_seed takes an unsigned 64-bit seed.
        seed = (_int(options, "spec_aug_seed", 1337) + torch.initial_seed()) % 2**64
        self.gen = torch.Generator().manual_seed(seed)
        self.upstream = load_upstream(str(ckpt).strip(), fine_tune=not self.no_grad)
        if inp_dim is not None and int(inp_dim) > 0 and int(inp_dim) != self.upstream.input_dim:
            raise UserError(f"[architecture] {ckpt}: PyTorch-Kaldi gives {int(inp_dim)}-dim input but "
                            f"the upstream takes {self.upstream.input_dim}-dim features (write the cfg with "
                            f"s3prl.bin.make_pytorch_kaldi_cfg --upstream-ckpt: its fea_opts make them)")
        if not self.load_pretrain and self.upstream.model is not None:
            for m in self.upstream.model.modules():
                if hasattr(m, "reset_parameters") and m is not self.upstream.model:
                    m.reset_parameters()
        dropout = str(options.get("dropout", "default")).strip()
        if dropout.lower() != "default":
            try:
                p = float(dropout)
            except ValueError:
                raise UserError(f"[architecture] dropout: {dropout!r} is not 'default' or a float") from None
            if not 0.0 <= p < 1.0:
                raise UserError(f"[architecture] dropout: {p} is not in [0, 1)")
            for m in self.upstream.modules():
                if isinstance(m, nn.Dropout):
                    m.p = p
        if self.weighted_sum:
            layer: int | str = "weighted_sum"
        elif self.select_layer == -1:
            layer = "last"
        else:
            layer = self.select_layer
        try:
            self.featurizer = Featurizer(self.upstream, layer=layer)
        except UserError as e:
            raise UserError(f"[architecture] select_layer: {e}") from None
        self.out_dim = self.featurizer.out_dim
        self.inp_dim = self.upstream.input_dim

    @staticmethod
    def _spans(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end) of the non-zero frames of each (B, T, D) sequence."""
        nz = (x != 0).any(dim=-1)  # (B, T)
        T = x.shape[1]
        idx = torch.arange(T, device=x.device).expand_as(nz)
        has = nz.any(dim=1)
        start = torch.where(nz, idx, torch.full_like(idx, T)).min(dim=1).values
        end = torch.where(nz, idx + 1, torch.zeros_like(idx)).max(dim=1).values
        # An all-zero sequence (silence after CMVN is not exactly zero, so only padding) keeps one frame.
        start = torch.where(has, start, torch.zeros_like(start))
        end = torch.where(has, end, torch.ones_like(end))
        return start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, B, D) if permute_input else (B, T, D) -> same layout with out_dim features."""
        if x.dim() != 3:
            raise UserError(f"S3PRLUpstream: expected a 3-D batch, got shape {tuple(x.shape)} "
                            f"(set arch_seq_model=True for this architecture)")
        if self.permute_input:
            x = x.transpose(0, 1)
        B, T, _ = x.shape
        start, end = self._spans(x)
        lengths = (end - start).cpu()
        # Left-align every sequence (PyTorch-Kaldi pads on either side depending on the version).
        feats = x.new_zeros(B, int(lengths.max()), x.shape[2])
        for b in range(B):
            feats[b, : int(lengths[b])] = x[b, int(start[b]): int(end[b])]
        if self.spec_aug and self.spec_aug_prev and self.training:
            feats = spec_augment(feats, lengths, self.gen)
        out = self.upstream.forward_features(feats, lengths)
        h = self.featurizer(out.hidden_states)  # (B, T', H)
        if self.spec_aug and not self.spec_aug_prev and self.training:
            h = spec_augment(h, lengths, self.gen, max_freq=86)
        # Allocated in the output layout so the result is contiguous (a transposed view is not,
        # and PyTorch-Kaldi .view()s it into (T * B, H) for the next architecture).
        if self.permute_input:
            y = h.new_zeros(T, B, h.shape[-1])
            for b in range(B):
                y[int(start[b]): int(end[b]), b] = h[b, : int(lengths[b])]
        else:
            y = h.new_zeros(B, T, h.shape[-1])
            for b in range(B):
                y[b, int(start[b]): int(end[b])] = h[b, : int(lengths[b])]
        return y


# The 2020 cfgs name the class TRANSFORMER; keep that spelling importable for old cfgs.
TRANSFORMER = S3PRLUpstream
