"""Batching: a seeded, resumable length-bucketing sampler and padding collation."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch


class BucketBatchSampler:
    """Yields lists of example indices, one list per batch.

    Each epoch shuffles the examples with ``seed + epoch``; with ``bucket`` it then cuts pools of
    ``pool * batch_size`` examples, sorts each pool by length (so a batch holds sentences of similar
    length and little padding, as OpenNMT-py does), cuts batches and shuffles their order. The order
    is a pure function of (seed, epoch), so a resumed run skips the ``position`` batches it had
    already seen in that epoch and continues with exactly the same data.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int,
        bucket: bool = True,
        pool: int = 50,
        shuffle: bool = True,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.lengths = list(lengths)
        self.batch_size, self.seed, self.bucket, self.pool, self.shuffle = batch_size, seed, bucket, pool, shuffle
        self.epoch = 0
        self.position = 0  # batches already yielded in this epoch

    def batches(self, epoch: int) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            rng.shuffle(idx)
        if self.bucket:
            size = self.pool * self.batch_size
            idx = [i for s in range(0, len(idx), size) for i in sorted(idx[s : s + size], key=self.lengths.__getitem__)]
        out = [idx[s : s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        if self.shuffle and self.bucket:
            rng.shuffle(out)
        return out

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        while self.position < len(batches):
            b = batches[self.position]
            self.position += 1
            yield b
        self.epoch += 1
        self.position = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches for decoding: sorted by length (fast), callers restore the order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``B x T`` padded ids and the ``B`` lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths
