"""The Task contract: what the task-agnostic trainer, eval and predict verbs may call.

A task owns its network, loss, metrics, decoding and the name of the metric it monitors.
The trainer owns epochs, batching order, clipping, precision, scheduling, checkpoints, logging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from seqlab.data.batch import BucketBatchSampler


def as_dataclass(cls, d: Any):
    """``d`` (None, a mapping or already a ``cls``) as a ``cls``: tasks take their settings either way."""
    if d is None:
        return cls()
    if isinstance(d, cls):
        return d
    return cls(**dict(d))


@dataclass
class StepOutput:
    """loss: the scalar to back-propagate; n_tokens: target units in the batch (for tokens/s);
    logs: per-token training loss etc., already detached floats, named without the split."""

    loss: torch.Tensor
    n_tokens: int
    n_src_tokens: int = 0
    logs: dict[str, float] = field(default_factory=dict)


class Task(ABC):
    """Base class for every task kind (translation, sentiment, tagging, ...)."""

    name: str = "task"
    monitor: str = "val/loss"  # metric that picks best.pt and drives early stopping
    monitor_mode: str = "min"  # min | max
    network: nn.Module
    device: torch.device = torch.device("cpu")

    def to(self, device: torch.device) -> Task:
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The network's parameters as optimizer groups; a group's ``lr_scale`` multiplies the
        optimizer's learning rate for it (pretrained layers fine-tuned more gently, say)."""
        return [{"params": list(self.network.parameters())}]

    # --- training data
    @abstractmethod
    def train_lengths(self) -> Sequence[int]:
        """One length per training example (the trainer buckets by it)."""

    def make_sampler(self, lengths: Sequence[int], batch_size: int, seed: int, bucket: bool, pool: int):
        """The batch order (override for tasks whose batches must come in sequence, e.g. TBPTT).

        The result is iterable over lists of example indices and has ``state_dict``/
        ``load_state_dict``/``epoch``/``position``/``__len__`` like ``BucketBatchSampler``."""
        return BucketBatchSampler(lengths, batch_size, seed, bucket, pool)

    @abstractmethod
    def collate(self, indices: Sequence[int]) -> Any:
        """The training batch made of these examples, on ``self.device``."""

    @abstractmethod
    def training_step(self, batch: Any) -> StepOutput: ...

    # --- evaluation
    @abstractmethod
    def evaluate(self, split: str, limit: int | None = None, decode: Any = None) -> dict[str, float]:
        """Metrics on a split, named ``split/name`` (``val/loss``, ``val/bleu``)."""

    def read_inputs(self, spec: str) -> list[str]:
        """What ``seqlab predict input=...`` names, one entry per input (default: a sentence, a text
        file of lines, or ``-`` for stdin). Tasks whose inputs are files (images) override it."""
        from seqlab.predict import read_inputs

        return read_inputs(spec)

    def predict(self, inputs: Sequence[str], decode: Any = None, out_dir: str | None = None) -> list[str]:
        """One printable line per input; pictures (attention maps) go to ``out_dir`` if given."""
        raise NotImplementedError(f"{type(self).__name__} does not support predict")

    def log_samples(self, logger: Any, step: int, split: str = "val") -> None:
        """Optional: text samples and images (attention maps) for TensorBoard; none by default."""
        return None

    # --- persistence
    def state(self) -> dict[str, Any]:
        """Plain data (vocabularies, label sets) a checkpoint needs to rebuild the task."""
        return {}

    def hparams(self) -> dict[str, Any]:
        """Scalars describing the run for TensorBoard's HParams tab."""
        return {}


def scaled_groups(network: nn.Module, scaled: Sequence[tuple[Sequence[nn.Parameter], float]]) -> list[dict[str, Any]]:
    """Optimizer groups for ``Task.parameter_groups``: each ``(parameters, scale)`` pair becomes a
    group with that ``lr_scale`` (scale 0: the parameters are frozen), the rest of ``network`` one
    group at the optimizer's rate. A parameter named twice belongs to its first group."""
    seen: set[int] = set()
    groups = []
    for params, scale in scaled:
        if scale < 0:
            raise ValueError(f"a learning-rate scale must be >= 0, got {scale}")
        mine = [p for p in params if id(p) not in seen]
        seen.update(map(id, mine))
        if scale == 0:
            for p in mine:
                p.requires_grad_(False)
        groups.append({"params": mine, "lr_scale": float(scale)})
    groups.append({"params": [p for p in network.parameters() if id(p) not in seen]})
    return [g for g in groups if g["params"]]
