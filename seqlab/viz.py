"""Pictures: attention heatmaps (source words x output words) as matplotlib figures and PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def attention_figure(weights: torch.Tensor, src: Sequence[str], out: Sequence[str], title: str = ""):
    """weights: len(out) x len(src), rows sum to 1. Returns a matplotlib Figure."""
    w = weights.detach().float().cpu().numpy()
    h = max(2.5, 0.32 * len(out) + 1.2)
    wd = max(3.0, 0.32 * len(src) + 1.8)
    fig, ax = plt.subplots(figsize=(wd, h), dpi=100)
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(len(src)))
    ax.set_xticklabels(src, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(out)))
    ax.set_yticklabels(out, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def save_attention_png(path: str | Path, weights, src, out, title: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = attention_figure(weights, src, out, title)
    fig.savefig(path)
    plt.close(fig)
    return path
