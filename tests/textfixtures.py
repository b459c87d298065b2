"""Tiny in-code data and model settings shared by the text-task tests (sentiment, tagging, charlm)."""

from __future__ import annotations

import gzip
from pathlib import Path

from seqlab.config import ModelConfig, asset_path

PRESETS = ("rnn", "gru", "lstm", "rnn_attn", "gru_attn", "lstm_attn")
# every model preset, shrunk: the tests check wiring, not quality
TINY = ["model.emb_size=16", "model.hidden_size=16", "model.dropout=0.0"]


def tiny_model(preset: str, **kw) -> ModelConfig:
    cell = preset.split("_")[0]
    attention = "additive" if preset.endswith("_attn") else "none"
    args = dict(name=preset, cell=cell, emb_size=12, hidden_size=16, num_layers=1, bidirectional=True,
                dropout=0.0, attention=attention, init_range=0.1)
    args.update(kw)
    return ModelConfig(**args)


def slice_of(asset: str, dest: Path, n_lines: int) -> Path:
    """The first ``n_lines`` lines of a bundled gzipped file, as a (gzipped) file under ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(asset_path(asset), "rt", encoding="utf-8") as src, gzip.open(dest, "wt", encoding="utf-8") as out:
        for k, line in enumerate(src):
            if k >= n_lines:
                break
            out.write(line)
    return dest
