"""Observability of a training run (rank 0 only): tqdm progress, TensorBoard, PNG plots.

- tqdm bar over the optimizer steps with the running loss and steps/s;
- TensorBoard scalars (loss, lr, grad norm, dev metrics) and images under ``<exp>/tb``;
- the same images as PNG files under ``<exp>/plots/<name>-<step>.png`` (matplotlib Agg), e.g. the
  masked input / prediction / target spectrograms that S3PRL 2020 logged to TensorBoard;
- a learning-curve PNG (``<exp>/plots/learning_curve.png``) from the logged history at the end.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from s3prl.atomic import atomic_path, save_png

log = logging.getLogger(__name__)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def spectrogram_figure(mats: dict[str, "np.ndarray"], title: str = ""):
    """A figure with one panel per (T, D) matrix (drawn with time on x, feature dim on y)."""
    plt = _plt()
    fig, axes = plt.subplots(len(mats), 1, figsize=(8, 2.2 * len(mats)), squeeze=False)
    for ax, (name, m) in zip(axes[:, 0], mats.items()):
        m = np.asarray(m, dtype=np.float32)
        ax.imshow(m.T, origin="lower", aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("dim")
    axes[-1, 0].set_xlabel("frame")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class Observer:
    """Progress bar + TensorBoard + PNG plots for one run; every method is a no-op off rank 0."""

    def __init__(self, exp_dir: str | Path, *, enabled: bool, total_steps: int, initial_step: int = 0,
                 tensorboard: bool = True, progress: bool = True):
        self.enabled = enabled
        self.exp_dir = Path(exp_dir)
        self.plot_dir = self.exp_dir / "plots"
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.exp_dir / "tb"))
            except ImportError as e:  # tensorboard is a listed dependency; keep training anyway
                log.warning("TensorBoard unavailable (%s); scalars go to the log only", e)
        if not progress:
            return
        from tqdm import tqdm
        self.bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True, unit="step",
                        desc="train", leave=True, mininterval=1.0)

    def step(self, n: int = 1, **postfix) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()},
                                     refresh=False)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)

    def figures(self, step: int, figs: dict) -> list[Path]:
        """Save each figure (matplotlib Figure or (H, W[, 3]) image array) as PNG and to TensorBoard."""
        if not self.enabled or not figs:
            return []
        plt = _plt()
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, fig in figs.items():
            path = self.plot_dir / f"{name}-{step}.png"
            if hasattr(fig, "savefig"):
                with atomic_path(path, fsync=False) as tmp:
                    fig.savefig(tmp, format="png", dpi=80)
                if self.writer is not None:
                    self.writer.add_figure(name, fig, step, close=False)
                plt.close(fig)
            else:
                img = np.asarray(fig)
                with atomic_path(path, fsync=False) as tmp:
                    plt.imsave(tmp, img, format="png", origin="lower")
                if self.writer is not None:
                    self.writer.add_image(name, img if img.ndim == 3 else img[None], step,
                                          dataformats="HWC" if img.ndim == 3 else "CHW")
            written.append(path)
        return written

    def learning_curve(self, history: list[dict], name: str = "learning_curve") -> Path | None:
        """Plot every numeric key of `history` (dicts with "step") against the step."""
        if not self.enabled or not history:
            return None
        plt = _plt()
        keys = sorted({k for h in history for k, v in h.items() if k != "step" and isinstance(v, (int, float))})
        if not keys:
            return None
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), squeeze=False)
        for ax, k in zip(axes[:, 0], keys):
            pts = [(h["step"], h[k]) for h in history if k in h]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
            ax.set_ylabel(k)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        return save_png(fig, self.plot_dir / f"{name}.png")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
