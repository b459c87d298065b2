"""``seqlab predict``: run a checkpoint on a sentence, a file of inputs, or stdin."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from seqlab.config import decode_settings
from seqlab.errors import DataError
from seqlab.evaluate import restore
from seqlab.runtime import (
    CONF_DIR,
    lean_decoding_memory,
    offline_defaults,
    resolve_device,
    user_errors,
)
from seqlab.training.trainer import precision_context


def read_inputs(spec: str) -> list[str]:
    """``-``: stdin; an existing file: its non-empty lines; anything else: the input itself."""
    if spec == "-":
        lines = sys.stdin.read().splitlines()
    elif len(spec) < 4096 and Path(spec).is_file():
        try:
            lines = Path(spec).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DataError(f"{spec}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    else:
        lines = [spec]
    lines = [x for x in lines if x.strip()]
    if not lines:
        raise DataError("input: nothing to predict (empty input)")
    return lines


def predict(cfg: DictConfig) -> list[str]:
    """Print one output per input line; with ``attention_dir``, write attention PNGs there."""
    offline_defaults()
    decode = decode_settings(cfg.decode)  # checked before the checkpoint is read
    task, _, _ = restore(cfg.ckpt_path, with_data=False, device=cfg.device, precision=cfg.precision)
    inputs = task.read_inputs(str(cfg.input))
    with torch.inference_mode(), precision_context(cfg.precision, resolve_device(cfg.device)):
        lines = task.predict(inputs, decode, cfg.attention_dir)
    for line in lines:
        print(line, flush=True)
    if cfg.attention_dir:
        print(f"attention maps written to {cfg.attention_dir}", file=sys.stderr)
    return lines


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    lean_decoding_memory()
    predict(cfg)
