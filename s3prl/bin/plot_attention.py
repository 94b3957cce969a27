"""Plot the self-attention maps of a transformer upstream for one utterance.

The analysis of Yang et al., "Understanding Self-Attention of Self-Supervised Audio Transformers"
(arXiv 2006.03265): for each layer, a grid of that layer's heads, each head an image of the
attention probabilities (query frame on the y axis, key frame on the x axis) at the model's
(stacked) frame rate.

    python -m s3prl.bin.plot_attention --upstream CKPT [--layers all|N,M] --utt UTT <data-dir> <out-dir>

Writes ``<out-dir>/<utt>.layer-<k>.png`` per layer (k = 1..L, matplotlib Agg backend) and
``<out-dir>/<utt>.attention.npz`` with the maps themselves (``layer_<k>``: (heads, T', T')).
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch

from s3prl.atomic import save_png
from s3prl.errors import UserError, cli_main
from s3prl.log import setup_logging

log = logging.getLogger("s3prl.plot_attention")


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """'all' | 'last' | 'N,M' (1-based encoder layers) -> sorted indices in [1, num_layers]."""
    if spec == "all":
        return list(range(1, num_layers + 1))
    out = set()
    for part in spec.split(","):
        part = part.strip()
        if part == "last":
            out.add(num_layers)
            continue
        try:
            k = int(part)
        except ValueError:
            raise UserError(f"--layers: '{part}' is not a layer number, 'last' or 'all'") from None
        if not 1 <= k <= num_layers:
            raise UserError(f"--layers: layer {k} is out of range (this upstream has layers 1..{num_layers})")
        out.add(k)
    if not out:
        raise UserError(f"--layers: empty layer list '{spec}'")
    return sorted(out)


def plot_layer(att: np.ndarray, path: Path, title: str) -> None:
    """att (heads, T', T') -> one PNG with a near-square grid of heads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = att.shape[0]
    cols = math.ceil(math.sqrt(heads))
    rows = math.ceil(heads / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= heads:
            ax.axis("off")
            continue
        ax.imshow(att[h], origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=float(att[h].max()) or 1.0)
        ax.set_title(f"head {h}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def plot_attention(upstream_name: str, data: str | Path, utt: str, out_dir: str | Path,
                   layers: str = "all", device: str = "cpu") -> list[Path]:
    """Compute and plot the attention maps of utterance `utt`; returns the PNG paths."""
    from s3prl.data.kaldi_dir import read_kv
    from s3prl.upstream.hub import load_upstream, read_kaldi_feats

    data, out_dir = Path(data), Path(out_dir)
    up = load_upstream(upstream_name, device=device)
    if not up.has_attention:
        raise UserError(f"--upstream {upstream_name}: a {up.model_type} upstream has no self-attention")
    if not (data / "utt2spk").is_file():
        raise UserError(f"{data}/utt2spk: missing (not a Kaldi data dir)")
    if utt not in read_kv(data / "utt2spk"):
        raise UserError(f"--utt {utt}: not in {data}/utt2spk")
    if up.external_features:
        feats_scp = read_kv(data / "feats.scp") if (data / "feats.scp").is_file() else {}
        if utt not in feats_scp:
            raise UserError(f"{data}/feats.scp: no entry for utterance {utt}")
        feats = read_kaldi_feats(feats_scp[utt])
    else:
        from s3prl.data.audio import load_audio

        wav_scp = read_kv(data / "wav.scp") if (data / "wav.scp").is_file() else {}
        segments = read_kv(data / "segments") if (data / "segments").is_file() else {}
        if utt in segments:
            reco, s, e = segments[utt].split()
            wav = load_audio(wav_scp[reco], utt_id=utt, segment=(float(s), float(e)))
        elif utt in wav_scp:
            wav = load_audio(wav_scp[utt], utt_id=utt)
        else:
            raise UserError(f"{data}/wav.scp: no entry for utterance {utt}")
        feats = up.compute_features(torch.from_numpy(wav), utt_id=utt)
    n_layers = up.num_hidden_states - 1
    wanted = parse_layers(layers, n_layers)
    att = up.attentions(feats[None], torch.tensor([feats.shape[0]]))
    paths, maps = [], {}
    for k in wanted:
        a = att[k - 1][0].numpy()
        maps[f"layer_{k}"] = a
        p = out_dir / f"{utt}.layer-{k}.png"
        plot_layer(a, p, f"{utt}  layer {k}/{n_layers}  ({a.shape[0]} heads, {a.shape[-1]} frames)")
        paths.append(p)
    tmp = out_dir / f".{utt}.attention.tmp.npz"
    np.savez_compressed(tmp, **maps)
    tmp.replace(out_dir / f"{utt}.attention.npz")
    log.info("wrote %d attention plots to %s", len(paths), out_dir)
    return paths


def main(argv: list[str] | None = None) -> int:
    from s3prl.train.distributed import DEVICES, resolve_device

    p = argparse.ArgumentParser(prog="python -m s3prl.bin.plot_attention",
                                description="Plot per-layer self-attention heads of one utterance.")
    p.add_argument("--upstream", required=True, help="transformer checkpoint (Mockingjay / TERA / AALBERT)")
    p.add_argument("--layers", default="all", help="all | last | N,M (1-based encoder layers)")
    p.add_argument("--utt", required=True, help="utterance id in the data dir")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="auto (cuda when available) | cpu | cuda")
    p.add_argument("data_dir")
    p.add_argument("out_dir")
    args = p.parse_args(argv)
    setup_logging()
    plot_attention(args.upstream, args.data_dir, args.utt, args.out_dir, args.layers, resolve_device(args.device))
    return 0


if __name__ == "__main__":
    cli_main(main)
