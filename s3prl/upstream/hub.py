"""Representation extraction API: load a pre-trained upstream and get per-layer hidden states.

The contract is today's S3PRL hub (github.com/s3prl/s3prl, `s3prl/hub.py` and
`s3prl/nn/upstream.py`, `S3PRLUpstream`):

* input: a list of 1-D float waveforms at 16 kHz, or a padded (B, N) batch with lengths (B,);
* output (`UpstreamOutput`, also indexable like S3PRL's dict): ``hidden_states`` = the
  input-block output followed by every layer's output, each (B, T, H); ``last_hidden_state``;
  ``lengths`` (B,) in frames;
* ``hop_samples`` = samples per output frame (160 = 10 ms for every fbank/mfcc checkpoint; S3PRL's
  ``get_downsample_rates()`` returns it).

Features are computed inside the upstream from the checkpoint's ``audio`` section
(`FeatureConfig.from_s3prl_audio` / `from_apc_audio`), so a checkpoint always sees the features
it was trained on. Checkpoints trained on external Kaldi features (fMLLR etc.; no audio section)
take precomputed features through `Upstream.forward_features` (and `read_kaldi_feats` for a
feats.scp entry); a feature dim that differs from the checkpoint's is a UserError naming both.

Frame rate: the transformer stacks ``dr = frame_stacking`` frames (Mockingjay LARGE, AALBERT:
3). As the 2020 `nn_transformer.py` did, the output is brought back to one vector per input
feature frame: each stacked output is repeated dr times and the leftover ``T mod dr`` frames
replicate the last vector (padding on the right only). So output T == input feature T exactly
(Kaldi framing ``1 + (N - 400) // 160`` for 16 kHz fbank), which lines up with 10 ms labels.

Long inputs: the transformer encodes an utterance longer than its ``sequence_length`` (stacked
frames; S3PRL `task.sequence_length`) in non-overlapping `torch.chunk` pieces whose positions
restart, the split today's S3PRL makes of a single utterance (`transformer.utterance_windows`).
The cuts come from each utterance's own length, never from the padded batch length (today's
S3PRL cuts a padded batch by its length, so there an utterance's states change with its
batch-mates): an utterance's states are the same alone, in any batch and in any job split
(tests/upstream/test_hub.py, tests/bin/test_extract.py). Anything up to ``sequence_length`` is
one pass; the chunk size can be set per upstream (`Upstream.sequence_length`). APC is a causal
GRU and needs no chunking. `Upstream.chunk_context = N` (0 by default; the field
`transformer.chunk_context` of the model's config, validated there) encodes long inputs in
overlapping windows instead, so that every frame sees N frames of context on each side (no output
frame next to a hard cut).

Baselines ``fbank``, ``mfcc`` and ``mel160`` are parameter-free upstreams whose single hidden
state is the feature matrix itself, so baselines go through the same code as learned models.

Modes: frozen (``fine_tune=False``, the default) puts the model in eval mode, freezes its
parameters and runs under `torch.inference_mode()`; the returned tensors are ordinary tensors
(cloned out of inference mode) so a learned `Featurizer` can sit on top. ``fine_tune=True``
keeps the train/eval switch with the caller and records gradients. A frozen upstream given a
batch of mixed lengths runs it as groups of similar length (`length_groups`, at most 10 %
padding each), each cropped to its longest member: the outputs are the same as one padded pass
(within float rounding, <= 1e-5; padded frames are zero either way) and padded frames cost no
matmul or attention work.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from s3prl.errors import UserError
from s3prl.features.config import FeatureConfig
from s3prl.upstream.featurizer import Featurizer

__all__ = ["load_upstream", "Upstream", "UpstreamOutput", "Featurizer", "BASELINES", "SAMPLE_RATE",
           "read_kaldi_feats", "pad_features", "upsample_frames", "upstream_names", "apply_chunk_context"]

SAMPLE_RATE = 16000
BASELINES = ("fbank", "mfcc", "mel160")


def upstream_names() -> list[str]:
    """Names `load_upstream` accepts besides a checkpoint path."""
    return list(BASELINES)


@dataclass
class UpstreamOutput:
    """hidden_states: tuple of (B, T, H) (input block first, last layer last); last_hidden_state
    (B, T, H); lengths (B,) valid frames per utterance (padding frames are zero)."""

    hidden_states: tuple
    last_hidden_state: torch.Tensor
    lengths: torch.Tensor

    def __getitem__(self, key: str) -> Any:  # S3PRL's dict access: out["hidden_states"]
        if key not in ("hidden_states", "last_hidden_state", "lengths"):
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return ["hidden_states", "last_hidden_state", "lengths"]


def pad_features(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, D) -> zero-padded (B, max T, D) and lengths (B,) long."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = feats[0].new_zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out, lengths


# A frozen upstream splits a batch so that no group pads more than this fraction of its frames.
MAX_PADDING = 0.1


def length_groups(lengths: torch.Tensor, max_padding: float = MAX_PADDING) -> list[torch.Tensor]:
    """Split batch indices into groups of similar length (longest first): an item joins the
    current group while the group's padded frames stay within (1 + max_padding) x its valid
    frames. Returns index tensors; one group (the whole batch) when padding is already small."""
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    groups: list[list[int]] = []
    for i in order:
        g = groups[-1] if groups else None
        if g is not None:
            top = int(lengths[g[0]])
            valid = sum(int(lengths[j]) for j in g) + int(lengths[i])
            if top * (len(g) + 1) <= (1 + max_padding) * valid:
                g.append(i)
                continue
        groups.append([i])
    if len(groups) == 1:
        groups[0].sort()
    return [torch.tensor(g, dtype=torch.long) for g in groups]


def upsample_frames(h: torch.Tensor, stacked_lengths: torch.Tensor, lengths: torch.Tensor, rate: int,
                    total: int) -> torch.Tensor:
    """Undo frame stacking: (B, T', H) at 1/rate of the frame rate -> (B, total, H).

    Frame t of utterance b takes stacked vector min(t // rate, stacked_lengths[b] - 1): each vector
    repeated `rate` times, the leftover frames replicating the last one. Frames t >= lengths[b]
    are zero. Every utterance needs stacked_lengths[b] >= 1.
    """
    b = h.shape[0]
    t = torch.arange(total, device=h.device)
    last = (stacked_lengths.to(h.device) - 1).clamp(min=0)
    idx = torch.minimum(torch.div(t, rate, rounding_mode="floor")[None, :].expand(b, total), last[:, None])
    out = torch.gather(h, 1, idx[:, :, None].expand(b, total, h.shape[2]))
    valid = t[None, :] < lengths.to(h.device)[:, None]
    return out * valid[:, :, None].to(out.dtype)


def read_kaldi_feats(entry: str) -> torch.Tensor:
    """Read one feats.scp value (``/path/x.ark:123``, optionally with a ``[r0:r1]`` range) as (T, D)."""
    from s3prl.data.ark import read_scp_matrix

    mat = read_scp_matrix(entry)
    return torch.from_numpy(np.array(mat, dtype=np.float32, copy=True))


class Upstream(nn.Module):
    """A pre-trained (or baseline) upstream with the S3PRL hub contract; see the module docstring.

    Attributes:
        name: the checkpoint path or baseline name it was loaded from.
        model_type: an `upstream.model` name (s3prl.upstream.families) or "baseline".
        family: the model's `UpstreamFamily` (None for a baseline).
        feature_config: the on-the-fly `FeatureConfig`, or None for external features.
        input_dim: feature dim the model takes (D, before stacking).
        frame_stacking: frames stacked by the model (dr).
        hop_samples: samples per output frame (160 for 10 ms features).
        num_hidden_states, hidden_size: len(hidden_states) and H.
    """

    def __init__(self, model: nn.Module | None, *, name: str, model_type: str,
                 feature_config: FeatureConfig | None, input_dim: int, hidden_size: int,
                 num_hidden_states: int, frame_stacking: int = 1, fine_tune: bool = False,
                 step: int | None = None):
        super().__init__()
        self.model = model
        self.name = name
        self.model_type = model_type
        if model is not None:
            from s3prl.upstream.families import family_of

            self.family = family_of(model_type)
        else:
            self.family = None
        self.feature_config = feature_config
        self.input_dim = int(input_dim)
        self.hidden_size = int(hidden_size)
        self.num_hidden_states = int(num_hidden_states)
        self.frame_stacking = int(frame_stacking)
        self.fine_tune = bool(fine_tune)
        self.step = step
        self._dtype = torch.float32
        shift = feature_config.shift_samples() if feature_config is not None else 160
        self.hop_samples = int(shift)
        if not self.fine_tune and model is not None:
            for p in model.parameters():
                p.requires_grad_(False)
        self.train(False)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "Upstream":
        """Frozen upstreams stay in eval mode whatever the caller asks (dropout off)."""
        return super().train(mode and self.fine_tune)

    @property
    def has_attention(self) -> bool:
        """Whether `attentions` can draw this upstream's self-attention maps."""
        return self.family is not None and self.family.has_attention

    @property
    def external_features(self) -> bool:
        return self.feature_config is None

    @property
    def sequence_length(self) -> int:
        """Longest input (in stacked frames) encoded in one pass; 0 = no limit."""
        cfg = getattr(self.model, "config", None)
        return int(getattr(cfg, "sequence_length", 0) or 0)

    @sequence_length.setter
    def sequence_length(self, value: int) -> None:
        self._reconfigure("sequence_length", int(value), "has no chunk size")

    @property
    def chunk_context(self) -> int:
        """Frames of context each side when inputs longer than `sequence_length` are encoded in
        overlapping windows; 0 = non-overlapping chunks (S3PRL). A field of the model's config
        (`TransformerConfig.chunk_context`, which validates it); families without chunks have none."""
        cfg = getattr(self.model, "config", None)
        return int(getattr(cfg, "chunk_context", 0) or 0)

    @chunk_context.setter
    def chunk_context(self, value: int) -> None:
        self._reconfigure("chunk_context", int(value), "is not chunked (no chunk context)")

    def _reconfigure(self, key: str, value: int, missing: str) -> None:
        """Set one field of the model's config through the config's own validation."""
        cfg = getattr(self.model, "config", None)
        if cfg is None or not hasattr(cfg, key):
            raise UserError(f"{self.name}: a {self.model_type} upstream {missing}")
        try:
            self.model.config = dataclasses.replace(cfg, **{key: value})
        except ValueError as e:
            raise UserError(f"{self.name}: {e}") from None

    def get_downsample_rates(self, key: str = "hidden_states") -> int:
        """S3PRL API: samples per output frame."""
        return self.hop_samples

    @property
    def dtype(self) -> torch.dtype:
        """Compute precision of the model: torch.float32 (default: reproducible dumps, parity with
        S3PRL) or torch.bfloat16 (autocast: matmuls in bf16 on CUDA or a CPU with bf16 units,
        LayerNorm / softmax statistics in float32; states returned as float32)."""
        return self._dtype

    @dtype.setter
    def dtype(self, value: torch.dtype | str) -> None:
        names = {"float32": torch.float32, "bfloat16": torch.bfloat16}
        value = names.get(value, value) if isinstance(value, str) else value
        if value not in (torch.float32, torch.bfloat16):
            raise UserError(f"{self.name}: dtype must be float32 or bfloat16, got {value}")
        if value == torch.bfloat16 and self.device.type == "cpu":
            from s3prl import precision

            if not precision.cpu_supports_bf16():
                import logging

                logging.getLogger(__name__).warning("%s: this CPU has no bf16 matrix units (AVX512-BF16 / "
                                                    "AMX); running in float32", self.name)
                value = torch.float32
        self._dtype = value

    def _context(self):
        stack = contextlib.ExitStack()
        if not self.fine_tune:
            stack.enter_context(torch.inference_mode())
        if self._dtype != torch.float32 and self.model is not None:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=self._dtype))
        return stack

    @property
    def device(self) -> torch.device:
        if self.model is not None:
            for p in self.model.parameters():
                return p.device
        return torch.device("cpu")

    # --------------------------------------------------------------- features
    def _checked_wav(self, wav, utt_id: str | None) -> torch.Tensor:
        if self.feature_config is None:
            raise UserError(f"{self.name}: this checkpoint was trained on external features "
                            f"({self.input_dim}-dim, e.g. fMLLR); pass features with forward_features "
                            f"or a data dir with feats.scp, not waveforms")
        wav = torch.as_tensor(wav, dtype=torch.float32).detach().cpu()
        if wav.dim() != 1:
            raise UserError(f"{self.name}: expected a 1-D waveform, got shape {tuple(wav.shape)}"
                            + (f" (utterance {utt_id})" if utt_id else ""))
        who = f"utterance {utt_id}" if utt_id else "a waveform"
        if wav.numel() < self.feature_config.window_samples():
            raise UserError(f"{who} has {wav.numel()} samples, shorter than one analysis window "
                            f"({self.feature_config.window_samples()} samples)")
        return wav

    def compute_features(self, wav: torch.Tensor | np.ndarray, utt_id: str | None = None) -> torch.Tensor:
        """One 16 kHz waveform (N,) -> features (T, D) from the checkpoint's audio section."""
        from s3prl.features import compute_features

        feats = compute_features(self._checked_wav(wav, utt_id), self.feature_config)
        return torch.as_tensor(feats, dtype=torch.float32)

    def compute_features_batch(self, wavs: Sequence[torch.Tensor | np.ndarray],
                               utt_ids: Sequence[str] | None = None) -> list[torch.Tensor]:
        """Several waveforms -> their features, equal to `compute_features` one by one; Kaldi
        fbank is computed for the whole list at once (s3prl.features.compute_features_batch)."""
        from s3prl.features import compute_features_batch

        checked = [self._checked_wav(w, utt_ids[i] if utt_ids else None) for i, w in enumerate(wavs)]
        return compute_features_batch(checked, self.feature_config)

    def _check_features(self, feats: torch.Tensor, lengths: torch.Tensor,
                        utt_ids: Sequence[str] | None) -> None:
        if feats.dim() != 3:
            raise UserError(f"{self.name}: expected features (B, T, D), got shape {tuple(feats.shape)}")
        if feats.shape[-1] != self.input_dim:
            raise UserError(f"feature dim {feats.shape[-1]} does not match the upstream's input dim "
                            f"{self.input_dim} ({self.name})")
        short = (lengths < max(1, self.frame_stacking)).nonzero().flatten().tolist()
        if short:
            i = short[0]
            who = f"utterance {utt_ids[i]}" if utt_ids else f"batch item {i}"
            raise UserError(f"{who} has {int(lengths[i])} feature frames; {self.name} needs at least "
                            f"{max(1, self.frame_stacking)}")

    # ---------------------------------------------------------------- forward
    def forward(self, wavs: Sequence[torch.Tensor] | torch.Tensor, lengths: torch.Tensor | None = None,
                utt_ids: Sequence[str] | None = None) -> UpstreamOutput:
        """wavs: list of (N_i,) float 16 kHz, or padded (B, N) with `lengths` (B,) -> UpstreamOutput."""
        if isinstance(wavs, torch.Tensor) and wavs.dim() == 2:
            if lengths is None:
                lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
            wavs = [wavs[i, : int(lengths[i])] for i in range(wavs.shape[0])]
        elif isinstance(wavs, torch.Tensor) and wavs.dim() == 1:
            wavs = [wavs]
        if len(wavs) == 0:
            raise UserError(f"{self.name}: empty batch")
        feats = self.compute_features_batch(wavs, utt_ids)
        padded, flen = pad_features(feats)
        return self.forward_features(padded.to(self.device), flen, utt_ids=utt_ids)

    def _run(self, feats: torch.Tensor, lengths: torch.Tensor, output_attentions: bool = False):
        """-> (states list of (B, T', H), stacked lengths (B,), attentions | None)."""
        if self.model is None:
            return [feats], lengths, None
        return self.family.forward_states(self._compute_model(), feats, lengths, output_attentions)

    def _compute_model(self) -> nn.Module:
        """The model a forward pass runs: `self.model`, or, frozen in a low precision, a copy whose
        nn.Linear weights and biases are already in that dtype. Under autocast every call would
        otherwise cast each Linear weight again (autocast's cast cache lives only as long as one
        autocast region): at batch 1 that was a fifth of a TERA base bf16 forward on the CPU. The
        values are those autocast computes (the same round-to-nearest cast, done once); the copy
        is rebuilt when the weights change (their storage or version) and never saved (a plain
        attribute, not a submodule)."""
        if self._dtype == torch.float32 or self.fine_tune:
            return self.model
        params = list(self.model.parameters())
        key = (self._dtype, tuple((p.data_ptr(), p._version) for p in params))
        cached = self.__dict__.get("_low_precision")
        if cached is None or cached[0] != key:
            import copy

            lp = copy.deepcopy(self.model)
            for m in lp.modules():
                if isinstance(m, nn.Linear):
                    m.to(self._dtype)
            self.__dict__["_low_precision"] = cached = (key, lp)
        return cached[1]

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor,
                         utt_ids: Sequence[str] | None = None) -> UpstreamOutput:
        """Precomputed features (B, T, D) zero-padded + lengths (B,) -> UpstreamOutput with one
        vector per input frame (output T == input T)."""
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        self._check_features(feats, lengths, utt_ids)
        feats = feats.to(self.device)
        total = feats.shape[1]
        groups = length_groups(lengths) if (self.model is not None and not self.fine_tune) else []
        with self._context():
            if len(groups) <= 1:
                states, slen, _ = self._run(feats, lengths.to(feats.device))
                slen = torch.as_tensor(slen).cpu()
                hs = [upsample_frames(h, slen, lengths, self.frame_stacking, total) for h in states]
            else:
                # Frozen inference on a batch of mixed lengths: run each group of similar lengths
                # cropped to its own longest member, so padded frames cost (almost) nothing.
                hs = None
                for idx in groups:
                    glen = lengths[idx]
                    states, slen, _ = self._run(feats[idx.to(feats.device), :int(glen.max())],
                                                glen.to(feats.device))
                    slen = torch.as_tensor(slen).cpu()
                    part = [upsample_frames(h, slen, glen, self.frame_stacking, total) for h in states]
                    if hs is None:
                        hs = [p.new_zeros((feats.shape[0],) + tuple(p.shape[1:])) for p in part]
                    for out, p in zip(hs, part):
                        out[idx.to(out.device)] = p
        if self._dtype != torch.float32:
            hs = [h.float() for h in hs]
        if not self.fine_tune:
            hs = [h.clone() for h in hs]  # plain tensors, usable under autograd (e.g. a Featurizer)
        return UpstreamOutput(hidden_states=tuple(hs), last_hidden_state=hs[-1], lengths=lengths)

    def attentions(self, feats: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Self-attention maps per layer, each (B, heads, T', T') at the stacked frame rate."""
        if not self.has_attention:
            raise UserError(f"{self.name}: a {self.model_type} upstream has no self-attention")
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        self._check_features(feats, lengths, None)
        with torch.inference_mode():
            _, _, att = self._run(feats.to(self.device), lengths.to(self.device), output_attentions=True)
        return [a.clone().cpu() for a in att]


def apply_chunk_context(up: Upstream, chunk_context: int, option: str) -> None:
    """Set `chunk_context` on a chunked (transformer) upstream, whose config validates it; others
    encode in one pass (logged when a context was asked for). `option` names the setting."""
    if hasattr(getattr(up.model, "config", None), "chunk_context"):
        try:
            up.chunk_context = chunk_context
        except UserError as e:
            raise UserError(f"{option}: {e}") from None
    elif chunk_context:
        import logging

        logging.getLogger(__name__).info("%s: a %s upstream is not chunked; %s %d has no effect", up.name,
                                         up.model_type, option, chunk_context)


# -------------------------------------------------------------------- loading
def _baseline(name: str, fine_tune: bool) -> Upstream:
    from s3prl.features import feature_dim

    cfg = FeatureConfig(feat_type=name)
    dim = feature_dim(cfg)
    return Upstream(None, name=name, model_type="baseline", feature_config=cfg, input_dim=dim,
                    hidden_size=dim, num_hidden_states=1, fine_tune=fine_tune)


def _feature_config(loaded: Any, path: str) -> FeatureConfig | None:
    audio = loaded.audio
    # No (or an empty) audio section: the model was trained on external features (fMLLR ...);
    # s3prl.train.pretrain marks such checkpoints with {"external_features": true, "feat_dim": D}.
    if not audio or (isinstance(audio, dict) and ("external" in audio or audio.get("external_features"))):
        return None
    if isinstance(audio, FeatureConfig):
        return audio
    from s3prl.upstream.families import family_of

    return family_of(loaded.model_type).feature_config(audio, path)


def load_upstream(ckpt_path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu",
                  fine_tune: bool = False) -> Upstream:
    """Load an upstream for extraction or transfer.

    Args:
        ckpt_path_or_name: a checkpoint file (ours, today's S3PRL layout, or the 2020 layout), or
            a baseline name: "fbank", "mfcc", "mel160".
        device: where the model runs.
        fine_tune: False = frozen (eval, no gradients, inference mode); True = trainable.
    """
    from s3prl.features import feature_dim

    name = str(ckpt_path_or_name)
    if name in BASELINES and not Path(name).exists():
        return _baseline(name, fine_tune).to(device)
    from s3prl.upstream.checkpoint import resolve_checkpoint

    name = str(resolve_checkpoint(name))  # an experiment dir stands for its newest checkpoint
    if not Path(name).is_file():
        raise UserError(f"upstream '{name}': no such checkpoint file (or use a baseline: {', '.join(BASELINES)})")
    from s3prl.upstream.checkpoint import load_upstream as load_ckpt

    loaded = load_ckpt(name)
    model = loaded.model
    fcfg = _feature_config(loaded, name)
    input_dim = int(getattr(model, "input_dim", 0) or 0)
    if fcfg is not None:
        fdim = feature_dim(fcfg)
        if input_dim and fdim != input_dim:
            raise UserError(f"{name}: the audio section gives {fdim}-dim features but the model takes "
                            f"{input_dim}-dim input")
        input_dim = input_dim or fdim
    if not input_dim:
        raise UserError(f"{name}: cannot tell the model's input feature dim")
    from s3prl.upstream.families import family_of

    family = family_of(loaded.model_type)
    up = Upstream(model, name=name, model_type=str(loaded.model_type), feature_config=fcfg,
                  input_dim=input_dim, hidden_size=family.hidden_size(model),
                  num_hidden_states=family.num_hidden_states(model), frame_stacking=family.frame_stacking(model),
                  fine_tune=fine_tune, step=getattr(loaded, "step", None))
    return up.to(device)
