"""An exponential moving average of a network's weights (``trainer.ema_decay``; Polyak averaging).

The trainer updates it after every optimizer step and validates, checkpoints and hands out the
averaged weights, which usually generalise a little better and move less from one validation to
the next than the weights the optimizer is pushing around. It knows nothing of the task either."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightEMA:
    """``avg <- d * avg + (1 - d) * w`` over the floating-point entries of ``module.state_dict()``
    (parameters and buffers), with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so
    that the first updates follow the fast-moving early weights instead of remembering the random
    initialisation (as timm's ``ModelEmaV2`` and TensorFlow's ``ExponentialMovingAverage`` do)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"trainer.ema_decay={decay} must be in (0, 1) (0 disables the average)")
        self.module, self.decay, self.updates = module, decay, 0
        state = module.state_dict()
        self.names = [k for k, v in state.items() if v.is_floating_point()]
        # detached views of the module's own storage, taken once (the module is on its device by now;
        # load_state_dict copies into the same storage): no state_dict() call per training step
        self.live = [state[k] for k in self.names]
        self.average = [t.clone() for t in self.live]

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        torch._foreach_lerp_(self.average, self.live, 1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The module's state dict with the averaged weights in place of the live ones."""
        state = self.module.state_dict()
        state.update(zip(self.names, (t.clone() for t in self.average), strict=True))
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        for avg, k in zip(self.average, self.names, strict=True):
            avg.copy_(state[k])
        self.updates = updates

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The module holds the averaged weights inside the block and its own ones again after."""
        with torch.no_grad():
            kept = [t.clone() for t in self.live]
            torch._foreach_copy_(self.live, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.live, kept)
