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


# ------------------------------------------------------------ captions: attention over the image
def _overlay(ax, image: torch.Tensor, weights: torch.Tensor | None, title: str) -> None:
    """image: 3 x H x W uint8; weights: h x w attention over the feature grid (upsampled smoothly)."""
    img = image.permute(1, 2, 0).cpu().numpy()
    ax.imshow(img)
    if weights is not None:
        H, W = img.shape[:2]
        up = torch.nn.functional.interpolate(weights[None, None].float(), size=(H, W), mode="bilinear",
                                             align_corners=False)[0, 0]
        ax.imshow(up.numpy(), cmap="jet", alpha=0.5, vmin=0.0, vmax=max(float(up.max()), 1e-6))
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def caption_figure(image: torch.Tensor, words: Sequence[str], attention: torch.Tensor | None, caption: str = ""):
    """The image and, with attention (len(words)+1 x h x w), one overlay per word (and ``</s>``)."""
    if attention is None:
        fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=100)
        _overlay(ax, image, None, caption[:60])
        fig.tight_layout()
        return fig
    labels = [*words, "</s>"][: attention.size(0)]
    n = len(labels) + 1
    cols = min(n, 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), dpi=100, squeeze=False)
    flat = axes.ravel()
    _overlay(flat[0], image, None, "image")
    for k, word in enumerate(labels):
        _overlay(flat[k + 1], image, attention[k], word)
    for ax in flat[n:]:
        ax.axis("off")
    if caption:
        fig.suptitle(caption[:90], fontsize=10)
    fig.tight_layout()
    return fig


def save_caption_overlays(out_dir: str | Path, stem: str, image: torch.Tensor, words: Sequence[str],
                          attention: torch.Tensor | None, caption: str = "") -> list[Path]:
    """``<stem>_<k>_<word>.png`` per word (with attention) and ``<stem>_grid.png``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if attention is not None:
        for k, word in enumerate(words[: attention.size(0)]):
            fig, ax = plt.subplots(figsize=(3.0, 3.2), dpi=100)
            _overlay(ax, image, attention[k], word)
            fig.tight_layout()
            safe = "".join(ch if ch.isalnum() else "_" for ch in word)[:20]
            paths.append(out_dir / f"{stem}_{k:02d}_{safe}.png")
            fig.savefig(paths[-1])
            plt.close(fig)
    fig = caption_figure(image, words, attention, caption)
    paths.append(out_dir / f"{stem}_grid.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths
