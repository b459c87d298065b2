"""TensorBoard logging: scalars, text, attention images (also written as PNG files), hparams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from seqlab.viz import attention_figure


class TensorBoardLogger:
    """One event directory per run (``<run>/tb``); attention maps also go to ``<run>/attention``."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, flush_secs: int = 30):
        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir / "tb"), flush_secs=flush_secs) if enabled else None

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        if self.writer:
            for k, v in metrics.items():
                self.writer.add_scalar(k, v, step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer:
            self.writer.add_text(tag, text, step)

    def attention(self, tag: str, weights, src, out, step: int) -> None:
        """An attention heatmap; also the PNG ``<run>/attention/<tag>.png``."""
        self.figure(tag, attention_figure(weights, src, out, title=f"{tag} (step {step})"), step, "attention")

    def figure(self, tag: str, fig, step: int, folder: str = "images") -> None:
        """Any matplotlib figure (e.g. an image with its caption and attention overlays); also a PNG
        under ``<run>/<folder>``."""
        png = self.run_dir / folder / f"{tag.replace('/', '_')}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png)
        if self.writer:
            self.writer.add_figure(tag, fig, step, close=False)
        plt.close(fig)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """HParams tab: one row per run, final metrics as columns."""
        if not self.writer:
            return
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}
        tags = {f"hparam/{k}": float(v) for k, v in metrics.items()}
        exp, ssi, sei = hparams_summary(clean, tags)
        fw = self.writer._get_file_writer()
        for s in (exp, ssi, sei):
            fw.add_summary(s)
        for k, v in tags.items():
            self.writer.add_scalar(k, v)

    def close(self) -> None:
        if self.writer:
            self.writer.flush()
            self.writer.close()
