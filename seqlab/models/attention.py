"""Attention modules: ``(query, keys, values, mask) -> (context, weights)``.

Keys are projected once per batch with ``project_keys`` (they do not change across decoder
steps); padding positions (``mask`` False) get exactly zero weight.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Base class: subclasses define ``project_keys`` and ``score``."""

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory  # B x S x M

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query: B x Q (one step) or B x T x Q (all steps); keys: B x S x K; values: B x S x M;
        mask: B x S, True where a real position. Returns context (B x [T x] M), weights (B x [T x] S)."""
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query  # B x T x Q
        scores = self.score(q, keys)  # B x T x S
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1)  # B x T x S
        # The context in fp32, outside autocast: per step this is B small matrix-vector products,
        # memory-bound, as fast in fp32; in bf16 oneDNN would build and cache a kernel for every
        # (batch, source length) shape a decoder meets (hundreds of MiB).
        acc = torch.promote_types(values.dtype, torch.float32)
        with torch.autocast(values.device.type, enabled=False):
            context = torch.bmm(weights.to(acc), values.to(acc))  # B x T x M
        weights = weights.to(values.dtype)
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


SCORE_CHUNK = 1 << 20  # elements of AdditiveAttention's sum formed at once when no gradient is kept


class AdditiveAttention(Attention):
    """Bahdanau et al. 2015: ``v^T tanh(W_q q + W_k k)``, an MLP over each (query, key) pair."""

    def __init__(self, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__()
        attn_size = attn_size or query_size
        self.query_proj = nn.Linear(query_size, attn_size, bias=True)
        self.key_proj = nn.Linear(key_size, attn_size, bias=False)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        keys = self.key_proj(memory)  # B x S x A
        return keys.to(torch.promote_types(keys.dtype, torch.float32))  # see score

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # The sum, tanh and v-product run in fp32 also under autocast or in a bf16 copy of the
        # network: a CPU's bf16 tanh is ~4x slower than its fp32 one, and casting this, the largest
        # tensor of a decoder step, to bf16 for the product costs more than an fp32 matrix-vector
        # product (torch.mv, which autocast leaves alone) over it.
        q = self.query_proj(query).to(keys.dtype)  # B x T x A
        v = self.v.weight.to(keys.dtype).squeeze(0)  # A
        B, T, A = q.shape
        # Without a gradient to keep, a few queries at a time: beam search's K queries per source
        # would otherwise make a B x K x S x A sum (26 MB for 64 x 5 x 40 x 512) at every step.
        step = T if torch.is_grad_enabled() else max(1, SCORE_CHUNK // (B * keys.size(1) * A))
        if step >= T:
            return self._score(q, keys, v)
        return torch.cat([self._score(q[:, t : t + step], keys, v) for t in range(0, T, step)], dim=1)

    @staticmethod
    def _score(q: torch.Tensor, keys: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        hidden = tanh_(q.unsqueeze(2) + keys.unsqueeze(1))  # B x T x S x A; in place: one allocation
        return hidden.reshape(-1, hidden.size(-1)).mv(v).view(hidden.shape[:-1])  # B x T x S


def tanh_(x: torch.Tensor) -> torch.Tensor:
    """``x.tanh_()`` as ``2 sigmoid(2x) - 1``, in place, with autograd where ``x`` needs it.

    Additive attention's tanh over the B x S x A sum of keys and query is the largest elementwise
    pass of a decoder step, and torch's CPU tanh is slow: 2.3 ms for 64 x 38 x 512 floats on 2
    threads of an AMD EPYC VM, against 0.54 ms for this, whose error is below 2e-7 (session 15)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Tanh.apply(x)
    return torch.sigmoid(x.mul_(2), out=x).mul_(2).sub_(1)


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        with torch.no_grad():
            y = tanh_(x)
        ctx.mark_dirty(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class DotAttention(Attention):
    """Luong et al. 2015 "dot": ``q . k`` (query and key sizes must match)."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        if query_size != key_size:
            raise ValueError(
                f"dot attention needs equal query and key sizes, got {query_size} and {key_size}; "
                "use model.attention=general"
            )

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # B x T x S


class GeneralAttention(Attention):
    """Luong et al. 2015 "general": ``q^T W k``; ``W k`` is precomputed once per batch."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory)  # B x S x Q

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(query, keys.transpose(1, 2))  # B x T x S


ATTENTIONS: dict[str, type[Attention]] = {
    "additive": AdditiveAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
}


def build_attention(kind: str, query_size: int, key_size: int) -> Attention | None:
    """The attention module named by ``model.attention`` (``none`` gives None)."""
    kind = getattr(kind, "value", kind)
    if kind == "none":
        return None
    return ATTENTIONS[kind](query_size, key_size)
