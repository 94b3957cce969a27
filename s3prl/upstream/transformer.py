"""The one transformer encoder of the toolkit: Mockingjay, TERA and Audio ALBERT are presets of it.

Follows the BERT-style model of S3PRL (`transformer/model.py` 2020, `upstream/mockingjay/model.py`
today; Mockingjay arXiv 1910.12638, TERA arXiv 2007.06028, AALBERT arXiv
2005.08575):

* frame stacking by `frame_stacking` (B, T, D) -> (B, T // dr, D * dr), leftover frames dropped;
* input block: Linear `spec_transform` + fixed sinusoidal positional encoding (Vaswani et al.,
  computed in float64 for any length and cached) -> LayerNorm -> dropout;
* post-LN encoder layers (or pre-LN with one extra LayerNorm per returned state), additive -10000
  mask on padded keys, erf-GELU (relu / swish selectable), N(0, initializer_range) init;
* `share_layer` (AALBERT): one layer object repeated N times; the state dict still lists
  `encoder.layer.0 ... N-1`.

Parameter names are exactly the original layout so released checkpoints load without renaming.
Attention runs through `torch.nn.functional.scaled_dot_product_attention` unless attention maps are
requested (or `use_sdpa` is switched off), which uses the explicit softmax path. Training on CPU
with attention dropout takes its own blocked path (`s3prl.upstream.dropout_attention`):
torch's CPU SDPA has no fused kernel with dropout, its math path materialises every (T, T)
probability, mask and gradient, and its Bernoulli masks are drawn by one thread, one generator
call per probability (20 % of a base step at 2 threads, bench/README.md §2).
The hidden-state dropouts draw their CPU training masks the same way (`Dropout`), Q/K/V run as one
(H -> 3H) matmul and GELU is torch's fused exact-erf kernel: fewer memory-bound passes, which is
what a bf16 step on the CPU's matrix units is left waiting for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from s3prl.upstream.config import TransformerConfig
from s3prl.upstream.dropout_attention import DROPOUT_LEVELS, blocked_dropout_attention, dropout_keep_mask  # noqa: F401

__all__ = ["TransformerConfig", "TransformerModel", "TransformerOutput", "SpecHead", "stack_frames",
           "positional_encoding", "ACT2FN", "Window", "utterance_windows"]

MASK_VALUE = -10000.0  # additive attention bias on padded keys, as in BERT / S3PRL


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, as BERT and S3PRL use: x * 0.5 * (1 + erf(x / sqrt(2))), through torch's
    fused kernel (one pass forward and one backward instead of five and eight elementwise passes
    over the (B, T, intermediate) activations)."""
    return F.gelu(x)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


ACT2FN = {"gelu": gelu, "relu": F.relu, "swish": swish}

_PE_CACHE: dict[int, torch.Tensor] = {}


def positional_encoding(length: int, hidden_size: int) -> torch.Tensor:
    """Sinusoidal table (length, hidden_size): sin on even dims, cos on odd, base 10000.

    Computed in float64 then cast to float32 (as S3PRL's numpy table); grown and cached per size.
    """
    table = _PE_CACHE.get(hidden_size)
    if table is None or table.shape[0] < length:
        n = max(length, 2 * (table.shape[0] if table is not None else 1024))
        pos = torch.arange(n, dtype=torch.float64)[:, None]
        idx = torch.arange(hidden_size, dtype=torch.float64)
        angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(idx, 2, rounding_mode="floor") / hidden_size)
        angle[:, 0::2] = torch.sin(angle[:, 0::2])
        angle[:, 1::2] = torch.cos(angle[:, 1::2])
        table = angle.float()
        _PE_CACHE[hidden_size] = table
    return table[:length]


def stack_frames(feats: torch.Tensor, lengths: torch.Tensor, rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `rate` consecutive frames: (B, T, D) -> (B, T // rate, D * rate); lengths // rate."""
    if rate == 1:
        return feats, lengths
    b, t, d = feats.shape
    t2 = t // rate
    return feats[:, : t2 * rate].reshape(b, t2, d * rate), torch.div(lengths, rate, rounding_mode="floor")


def _layer_norm(cfg: TransformerConfig) -> nn.LayerNorm:
    # torch's LayerNorm is the TF-style one (biased variance, eps inside the square root).
    return nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU training mask comes from `dropout_keep_mask` (torch's CPU Bernoulli
    draws one generator call per element on one thread: 20 ms per 1500 x 768 activation at 2
    threads). Elsewhere (CUDA, eval, p 0 or 1) it is nn.Dropout. Still an nn.Dropout, so code that
    sets `.p` on an upstream's dropouts keeps working."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and 0.0 < self.p < 1.0 and x.device.type == "cpu":
            keep, scale = dropout_keep_mask(x.shape, self.p, x.device)
            return torch.where(keep, x, 0.0).mul_(scale)
        return super().forward(x)


class InputRepresentations(nn.Module):
    """Linear(D*dr -> H) + sinusoidal positions -> LayerNorm -> dropout."""

    def __init__(self, cfg: TransformerConfig, input_dim: int):
        super().__init__()
        self.spec_transform = nn.Linear(input_dim, cfg.hidden_size)
        self.LayerNorm = _layer_norm(cfg)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.spec_transform(x)
        pe = positional_encoding(x.shape[1], h.shape[-1]).to(device=h.device, dtype=h.dtype)
        return self.dropout(self.LayerNorm(h + pe))


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = Dropout(cfg.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_size).transpose(1, 2)

    def _cpu_dropout_attention(self, q, k, v, bias, p: float) -> torch.Tensor:
        """Training attention on CPU with dropout p (`blocked_dropout_attention`): the 1/sqrt(d)
        scale goes on q, the key mask rides in the batched matmul, and no (B*heads, T, T) tensor
        is materialised or kept for the backward pass."""
        b, h, t, d = q.shape
        q3 = (q * (1.0 / math.sqrt(d))).reshape(b * h, t, d)
        key_bias = bias.expand(b, h, 1, t).reshape(b * h, 1, t) if bool(bias.any()) else None
        ctx = blocked_dropout_attention(q3, k.reshape(b * h, t, d), v.reshape(b * h, t, d), key_bias, p)
        return ctx.view(b, h, t, d).transpose(1, 2).reshape(b, t, h * d)

    def _qkv(self, x: torch.Tensor):
        """The three projections as one (H -> 3H) matmul: one pass over x instead of three (under
        autocast one bf16 cast of x instead of three) and a wider matrix for the kernel."""
        w = torch.cat((self.query.weight, self.key.weight, self.value.weight))
        b = torch.cat((self.query.bias, self.key.bias, self.value.bias))
        return [self._heads(t) for t in F.linear(x, w, b).split(self.query.out_features, dim=-1)]

    def forward(self, x: torch.Tensor, bias: torch.Tensor, explicit: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, H), bias (B, 1, 1, T) additive -> context (B, T, H), probs (B, heads, T, T) | None."""
        q, k, v = self._qkv(x)
        p = self.dropout.p if self.training else 0.0
        if 0.0 < p < 1.0 and x.device.type == "cpu" and not explicit:
            return self._cpu_dropout_attention(q, k, v, bias, p), None
        if explicit:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size) + bias
            probs = torch.softmax(scores, dim=-1)
            ctx = torch.matmul(self.dropout(probs), v)
        else:
            probs = None
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=p)
        b, _, t, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(b, t, -1), probs


class _ResidualOutput(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm (the LayerNorm is skipped in pre-LN mode)."""

    def __init__(self, cfg: TransformerConfig, in_size: int):
        super().__init__()
        self.pre_layer_norm = cfg.pre_layer_norm
        self.dense = nn.Linear(in_size, cfg.hidden_size)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.LayerNorm = _layer_norm(cfg)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.dense(h)) + residual
        return h if self.pre_layer_norm else self.LayerNorm(h)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.pre_layer_norm = cfg.pre_layer_norm
        self.self = SelfAttention(cfg)
        self.output = _ResidualOutput(cfg, cfg.hidden_size)
        if cfg.pre_layer_norm:
            # The original registers the same LayerNorm under a second name (state-dict layout).
            self.LayerNorm = self.output.LayerNorm

    def forward(self, x, bias, explicit):
        ctx, probs = self.self(self.LayerNorm(x) if self.pre_layer_norm else x, bias, explicit)
        return self.output(ctx, x), probs


class Intermediate(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = ACT2FN[cfg.hidden_act]

    def forward(self, x):
        return self.act(self.dense(x))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.pre_layer_norm = cfg.pre_layer_norm
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = _ResidualOutput(cfg, cfg.intermediate_size)
        if cfg.pre_layer_norm:
            self.LayerNorm = self.output.LayerNorm

    def forward(self, x, bias, explicit):
        a, probs = self.attention(x, bias, explicit)
        inter = self.intermediate(self.LayerNorm(a) if self.pre_layer_norm else a)
        return self.output(inter, a), probs


class Encoder(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.pre_layer_norm = cfg.pre_layer_norm
        if cfg.share_layer:
            shared = TransformerLayer(cfg)
            self.layer = nn.ModuleList([shared] * cfg.num_hidden_layers)
        else:
            self.layer = nn.ModuleList([TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        if cfg.pre_layer_norm:
            # One LayerNorm per returned state (input block + each layer), as S3PRL's Pre-LN.
            self.LayerNorm = nn.ModuleList([_layer_norm(cfg) for _ in range(cfg.num_hidden_layers + 1)])

    def forward(self, x, bias, explicit, want_attn):
        states, attns = [], []
        for i, layer in enumerate(self.layer):
            states.append(self.LayerNorm[i](x) if self.pre_layer_norm else x)
            x, probs = layer(x, bias, explicit)
            if want_attn:
                attns.append(probs)
        states.append(self.LayerNorm[-1](x) if self.pre_layer_norm else x)
        return states, attns


@dataclass
class TransformerOutput:
    """hidden_states: L+1 tensors (B, T', H) (input block, then each layer); lengths (B,) in
    stacked frames; attentions: L tensors (B, heads, T', T') when requested, else None."""

    hidden_states: list
    lengths: torch.Tensor
    attentions: list | None = None


@dataclass(frozen=True)
class Window:
    """One encoder pass over frames [start, start + length) of an utterance, whose outputs are
    kept for frames [core_start, core_end)."""

    start: int
    length: int
    core_start: int
    core_end: int


def utterance_windows(n: int, sequence_length: int, chunk_context: int = 0) -> list[Window]:
    """How an utterance of `n` (stacked) frames is encoded, from its own length only.

    * n <= sequence_length (or no limit): one pass.
    * chunk_context 0: today's S3PRL split, `torch.chunk` into ceil(n / sequence_length) pieces
      (pieces of ceil(n / pieces) frames, the last one shorter), positions restarting per piece
      (s3prl `upstream/mockingjay/model.py`, `TransformerModel.forward` on long inputs).
    * chunk_context c > 0: overlapping windows of sequence_length frames; frames [a, a + hop)
      (hop = sequence_length - 2c) come from the window that sees c frames on each side of them,
      shifted inside the utterance at its edges, so no output frame sits next to a hard cut.
    """
    seq = int(sequence_length)
    if seq <= 0 or n <= seq:
        return [Window(0, n, 0, n)]
    if chunk_context > 0:
        hop = seq - 2 * chunk_context
        if hop < 1:
            raise ValueError(f"chunk_context {chunk_context} leaves no frames of a {seq}-frame window "
                             f"(needs 2*ctx < seq)")
        return [Window(min(max(a - chunk_context, 0), n - seq), seq, a, min(a + hop, n))
                for a in range(0, n, hop)]
    size = math.ceil(n / math.ceil(n / seq))
    return [Window(a, min(a + size, n) - a, a, min(a + size, n)) for a in range(0, n, size)]



def _init_weights(module: nn.Module, std: float) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TransformerModel(nn.Module):
    """Input block + encoder. `input_dim` is the per-frame feature dim D (before stacking)."""

    def __init__(self, cfg: TransformerConfig, input_dim: int):
        super().__init__()
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        self.config = cfg
        self.input_dim = input_dim
        self.use_sdpa = True
        self.input_representations = InputRepresentations(cfg, input_dim * cfg.frame_stacking)
        self.encoder = Encoder(cfg)
        self.apply(lambda m: _init_weights(m, cfg.initializer_range))

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, output_attentions: bool = False) -> TransformerOutput:
        """feats (B, T, D) zero-padded, lengths (B,) long -> TransformerOutput (stacked frame rate)."""
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise ValueError(f"expected features (B, T, {self.input_dim}), got {tuple(feats.shape)}")
        stacked, slen = stack_frames(feats, lengths, self.config.frame_stacking)
        return self.encode(stacked, slen, output_attentions)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor, output_attentions: bool = False) -> TransformerOutput:
        """Already stacked input x (B, T', D*dr), lengths (B,) in stacked frames.

        Each utterance is cut by its own valid length (`utterance_windows`), never by the padded
        batch length, so its states depend on that utterance alone: the same in any batch, any
        job split. The windows of the whole batch run in one forward pass."""
        t = x.shape[1]
        lengths = lengths.to(x.device)
        # Inputs longer than sequence_length (utterance_windows): config.chunk_context 0 = S3PRL's
        # non-overlapping chunks; N > 0 = overlapping windows giving every frame N frames of context.
        seq, ctx = self.config.sequence_length, self.config.chunk_context
        plans = [utterance_windows(int(n), seq, ctx) for n in lengths.tolist()]
        if all(len(p) == 1 for p in plans):
            # Every utterance fits one pass: the padded batch itself, keys past each length masked.
            states, attns = self._run_windows(x, lengths, output_attentions)
            return TransformerOutput(hidden_states=states, lengths=lengths,
                                     attentions=attns if output_attentions else None)
        flat = [(b, w) for b, plan in enumerate(plans) for w in plan]
        longest = max(w.length for _, w in flat)
        win = x.new_zeros(len(flat), longest, x.shape[-1])
        wlen = torch.tensor([w.length for _, w in flat], dtype=torch.long, device=x.device)
        for k, (b, w) in enumerate(flat):
            win[k, :w.length] = x[b, w.start:w.start + w.length]
        want_attn = output_attentions and ctx == 0
        states, attns = self._run_windows(win, wlen, want_attn)
        # Output frame (b, f) comes from the window whose core holds f, at offset f - window start.
        src = torch.zeros(x.shape[0], t, dtype=torch.long)
        for k, (b, w) in enumerate(flat):
            src[b, w.core_start:w.core_end] = k * longest + torch.arange(w.core_start - w.start, w.core_end - w.start)
        src = src.to(x.device)
        valid = (torch.arange(t, device=x.device)[None, :] < lengths[:, None])[:, :, None]
        hidden = [torch.where(valid, st.reshape(-1, st.shape[-1])[src], st.new_zeros(())) for st in states]
        attentions = None
        if want_attn:  # block-diagonal: no attention across chunks
            attentions = []
            for a in attns:
                full = a.new_zeros(x.shape[0], a.shape[1], t, t)
                for k, (b, w) in enumerate(flat):
                    e = w.start + w.length
                    full[b, :, w.start:e, w.start:e] = a[k, :, :w.length, :w.length]
                attentions.append(full)
        return TransformerOutput(hidden_states=hidden, lengths=lengths, attentions=attentions)

    def _run_windows(self, x: torch.Tensor, lengths: torch.Tensor, output_attentions: bool):
        """One pass of input block + encoder over (N, n, D*dr) with keys past `lengths` masked."""
        n = x.shape[1]
        if self.config.max_position and n > self.config.max_position:
            raise ValueError(f"sequence of {n} frames exceeds max_position {self.config.max_position}")
        valid = torch.arange(n, device=x.device)[None, :] < lengths[:, None]
        bias = ((~valid).to(x.dtype) * MASK_VALUE)[:, None, None, :]
        h = self.input_representations(x)
        return self.encoder(h, bias, explicit=output_attentions or not self.use_sdpa, want_attn=output_attentions)


class SpecHead(nn.Module):
    """Pre-training prediction head: dense(H,H) -> act -> LayerNorm -> output(H, output_dim*dr)."""

    def __init__(self, cfg: TransformerConfig, output_dim: int):
        super().__init__()
        self.output_dim = output_dim
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACT2FN[cfg.hidden_act]
        self.LayerNorm = _layer_norm(cfg)
        self.output = nn.Linear(cfg.hidden_size, output_dim * cfg.frame_stacking)
        self.apply(lambda m: _init_weights(m, cfg.initializer_range))

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (B, T', H) -> (prediction (B, T', output_dim*dr), pre-output hidden (B, T', H))."""
        h = self.LayerNorm(self.act(self.dense(hidden)))
        return self.output(h), h
