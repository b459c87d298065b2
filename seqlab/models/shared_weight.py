"""Weights shared across time steps, with their gradient computed once per batch.

In a step-by-step decoder each use of a weight ``W`` (``y_t = x_t W^T``) makes autograd compute
``dy_t^T x_t`` and add it into ``W.grad``: T matmuls and T additions of a full weight-sized tensor.
``SharedWeight`` keeps the per-step inputs and output gradients instead and forms
``dW = [dy_1 .. dy_T]^T [x_1 .. x_T]`` with one matmul when autograd reaches the weight, which
gives the same gradient for a fraction of the memory traffic.

    shared = SharedWeight(w)          # once per batch
    y_t = shared.mm(x_t)              # at every step: x_t @ w.T

For a stack of weights (one per direction of a bidirectional RNN), ``bmm`` is the batched form:
``w`` is D x in x out and ``y_t = x_t @ w`` with x_t D x B x in.
"""

from __future__ import annotations

import torch


class _Stash:
    __slots__ = ("xs", "gys", "batched")

    def __init__(self) -> None:
        self.xs: list[torch.Tensor] = []
        self.gys: dict[int, torch.Tensor] = {}
        self.batched = False


class _Collect(torch.autograd.Function):
    """Identity on the weight; its backward runs after every step's and builds dW in one matmul."""

    @staticmethod
    def forward(ctx, w, stash):
        ctx.stash = stash
        return w.view_as(w)

    @staticmethod
    def backward(ctx, _unused):
        st = ctx.stash
        steps = [t for t in range(len(st.xs)) if t in st.gys]
        if not steps:
            return None, None
        if st.batched:  # D x (T*B) x in/out -> D x in x out
            gy = torch.cat([st.gys[t] for t in steps], 1)
            x = torch.cat([st.xs[t] for t in steps], 1)
            st.xs, st.gys = [], {}
            return torch.bmm(x.transpose(1, 2), gy.to(x.dtype)), None
        gy = torch.cat([st.gys[t] for t in steps], 0)  # (T*B) x out
        x = torch.cat([st.xs[t] for t in steps], 0)  # (T*B) x in
        st.xs, st.gys = [], {}
        return gy.t().mm(x.to(gy.dtype)), None


def _product(x, w, batched: bool):
    return torch.bmm(x, w) if batched else x.mm(w.t())


class _Step(torch.autograd.Function):
    """One step's product with the shared weight; its backward gives x its gradient and leaves the
    output gradient in the stash for ``_Collect``."""

    @staticmethod
    def forward(ctx, x, w, stash):
        ctx.save_for_backward(w)
        ctx.stash, ctx.t, ctx.x_dtype = stash, len(stash.xs), x.dtype
        x = x.to(w.dtype)
        stash.xs.append(x)
        return _product(x, w, stash.batched)

    @staticmethod
    def backward(ctx, gy):
        (w,) = ctx.saved_tensors
        gy = gy.to(w.dtype)
        ctx.stash.gys[ctx.t] = gy
        gx = torch.bmm(gy, w.transpose(1, 2)) if ctx.stash.batched else gy.mm(w)
        return gx.to(ctx.x_dtype), None, None


class SharedWeight:
    """``mm(x) = x @ w.T`` for a weight used at many steps of one batch (see module docstring).

    Without gradients (decoding) it is a plain matmul."""

    def __init__(self, w: torch.Tensor):
        self.track = torch.is_grad_enabled() and w.requires_grad
        self.stash = _Stash()
        self.w = _Collect.apply(w, self.stash) if self.track else w

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, batched=False)

    def bmm(self, x: torch.Tensor) -> torch.Tensor:
        """``torch.bmm(x, w)`` for a stacked weight w (D x in x out), x: D x B x in."""
        return self._apply(x, batched=True)

    def _apply(self, x: torch.Tensor, batched: bool) -> torch.Tensor:
        if not self.track:
            return _product(x.to(self.w.dtype), self.w, batched)
        self.stash.batched = batched  # one weight is used one way
        return _Step.apply(x, self.w, self.stash)
