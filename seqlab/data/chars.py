"""Character streams for language modelling, and the batch order that truncated BPTT needs.

The text is read through Hugging Face ``datasets`` (one document per file) and split by
characters: the first ``1 - val_fraction`` for training, the rest for validation (nanoGPT's and
char-rnn's convention for Tiny Shakespeare).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqlab.data.batch import BucketBatchSampler
from seqlab.data.hub import hf_datasets
from seqlab.data.text import _file_digest, check_text_file, column
from seqlab.errors import DataError


@dataclass
class CharCorpus:
    splits: dict[str, str]  # split -> the whole text
    fingerprint: str


def read_text(path: str, key: str) -> str:
    check_text_file(path, key)
    ds = hf_datasets().load_dataset("text", data_files={"doc": str(path)}, split="doc", sample_by="document",
                               keep_linebreaks=True)
    return "".join(column(ds, "text"))


def load_chars(path: str, val_path: str | None = None, val_fraction: float = 0.1) -> CharCorpus:
    """Train/val character streams from one text (split by ``val_fraction``) or two."""
    text = read_text(path, "data.path")
    if val_path:
        splits = {"train": text, "val": read_text(val_path, "data.val_path")}
    else:
        if not 0 < val_fraction < 1:
            raise DataError(f"data.val_fraction={val_fraction}: must be in (0, 1), or give data.val_path")
        cut = int(len(text) * (1 - val_fraction))
        splits = {"train": text[:cut], "val": text[cut:]}
    for split, t in splits.items():
        if len(t) < 2:
            raise DataError(f"data ({path}): the {split} text has {len(t)} character(s); too short to model")
    paths = [Path(path)] + ([Path(val_path)] if val_path else [])
    key = f"{_file_digest(paths)}|{val_fraction}"
    return CharCorpus(splits, hashlib.sha1(key.encode()).hexdigest())


class StreamBatchSampler(BucketBatchSampler):
    """Batches for truncated BPTT: ``B`` parallel streams, each a run of consecutive chunks.

    Example ``i`` is chunk ``i`` of the text. The ``N`` chunks are cut into ``B = batch_size``
    streams of ``K = N // B`` consecutive chunks; batch ``k`` is ``[k, K + k, 2K + k, ...]``, so
    row ``b`` of batch ``k + 1`` continues row ``b`` of batch ``k`` and the hidden state can be
    carried over. The order is the same every epoch (nothing to shuffle without breaking the
    streams); iteration, ``epoch``/``position`` and the resumable state come from ``BucketBatchSampler``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0):
        super().__init__(lengths, max(1, batch_size), seed, bucket=False, shuffle=False)
        n = len(lengths)
        self.streams = max(1, min(batch_size, n))
        self.per_stream = n // self.streams

    def __len__(self) -> int:
        return self.per_stream

    def batches(self, epoch: int = 0) -> list[list[int]]:
        K = self.per_stream
        return [[b * K + k for b in range(self.streams)] for k in range(K)]
