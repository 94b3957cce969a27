"""Times s3prl 0.4.18's own pre-training step (runs inside tools/bench-venv; s3prl.bench.pretrain_ref).

The step of its `run_pretrain.py` runner for Mockingjay/TERA without the data loader: the model
`TransformerForMaskedAcousticModel` (s3prl `pretrain/mockingjay/pretrain_expert.py`: transformer +
SpecHead + masked L1), forward, backward, gradient clipping at 1.0 and the `BertAdam` update
with its warm-up schedule (s3prl `optimizers.py`, `get_BertAdam_with_schedule`), on random
(B, T, 80) features with 15 % of the frames masked. Prints JSON: best step seconds, float32.
"""
import argparse
import importlib.machinery
import json
import os
import sys
import time

import s3prl

sys.path.insert(0, os.path.dirname(s3prl.__file__))   # its modules import each other as top-level packages
# pretrain_expert imports its dataset and audio-plotting modules, which import pandas, librosa and
# scipy, matplotlib (the bench venv has none); the step timed here reads no data and plots nothing, so empty
# stand-in modules are enough.
for _m in ("pandas", "librosa", "scipy", "scipy.signal", "scipy.io", "scipy.io.wavfile", "utility.audio"):
    _stub = type(sys)(_m)
    _stub.__spec__ = importlib.machinery.ModuleSpec(_m, None)
    sys.modules.setdefault(_m, _stub)
sys.modules["utility.audio"].plot_spectrogram_to_numpy = None

import torch  # noqa: E402
from optimizers import get_BertAdam_with_schedule  # noqa: E402
from pretrain.mockingjay.pretrain_expert import TransformerForMaskedAcousticModel  # noqa: E402
from upstream.mockingjay.model import TransformerConfig  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--inter", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = TransformerConfig({"hidden_size": a.hidden, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
                             "hidden_act": "gelu", "intermediate_size": a.inter, "hidden_dropout_prob": 0.1,
                             "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
                             "layer_norm_eps": 1e-12, "share_layer": False, "pre_layer_norm": False})
    cfg.loss = "L1"
    model = TransformerForMaskedAcousticModel(cfg, 80, output_dim=None).train()
    opt = get_BertAdam_with_schedule([model], lr=2e-4, total_steps=100000, warmup_proportion=0.07)
    spec = torch.randn(a.batch, a.frames, 80)
    pos = torch.randn(a.frames, a.hidden).expand(a.batch, a.frames, a.hidden)
    mask = (torch.rand(a.batch, a.frames, 1) < 0.15).expand(a.batch, a.frames, 80)
    attn = torch.ones(a.batch, a.frames)

    def step():
        opt.zero_grad()
        loss, _ = model(spec, pos, mask, attn, spec)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()
    best = float("inf")
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"step_seconds": best, "s3prl_version": getattr(s3prl, "__version__", "0.4.18")}))


if __name__ == "__main__":
    main()
