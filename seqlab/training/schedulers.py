"""Learning-rate schedules, built from ``conf/scheduler/*.yaml`` by ``seqlab.train``.

Each builder takes the optimizer, the run's total number of updates and the monitor mode, plus
its own keyword arguments from ``scheduler.kwargs``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau


def plateau(optimizer: Optimizer, total_steps: int, mode: str, factor: float = 0.5, patience: int = 1,
            min_lr: float = 0.0) -> ReduceLROnPlateau:
    """Multiply the rate by ``factor`` after ``patience`` validations without improvement."""
    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr)


def warmup_cosine(optimizer: Optimizer, total_steps: int, mode: str, warmup_steps: int = 200,
                  min_ratio: float = 0.05) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_ratio`` of the rate."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
