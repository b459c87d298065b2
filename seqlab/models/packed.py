"""Weights packed once for oneDNN's bfloat16 matmul, for decoding on a CPU.

A bf16 matmul on a CPU with AMX/AVX-512-BF16 first reorders the weight into the kernel's blocked
layout, at every call. A decoder step multiplies the same few weights once per step, and for the
output layer (vocabulary x hidden) the reorder costs as much as the product itself. Decoding
reorders each weight once instead (``torch.ops.mkldnn._reorder_linear_weight``, the prepacking
PyTorch's own CPU compiler uses) and multiplies with the packed copy: the same products (tested
equal), about twice as fast for the output layer. Where oneDNN has no bf16 kernels, or the weight
is not bf16 on a CPU, ``packed`` returns a plain ``x @ w.T``.
"""

from __future__ import annotations

import torch


def _can_pack(w: torch.Tensor) -> bool:
    if w.dtype != torch.bfloat16 or w.device.type != "cpu" or w.dim() != 2 or w.requires_grad:
        return False
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


class Plain:
    """``mm(x) = x @ w.T``, ``linear(x) = x @ w.T + b``."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None):
        self.w, self.b = w, b

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.w.dtype).mm(self.w.t())

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(self.w.dtype), self.w, self.b)


class Packed(Plain):
    """The same products against a copy of ``w`` packed once for oneDNN."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None, rows: int = 64):
        super().__init__(w, b)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w, rows)  # laid out for about ``rows`` rows

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(self.w.dtype), self.packed, None, "none", [], "")

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(self.w.dtype), self.packed, self.b, "none", [], "")


def packed(w: torch.Tensor, b: torch.Tensor | None = None, rows: int = 64) -> Plain:
    """``w`` (out x in) and bias ``b`` ready for repeated products without gradients, with inputs
    of about ``rows`` rows (any number works; the layout is tuned for that one)."""
    w = w.detach().contiguous()
    b = b.detach().to(w.dtype) if b is not None else None  # once, not at every product
    if _can_pack(w):
        try:
            return Packed(w, b, rows)
        except RuntimeError:  # a oneDNN build without this path
            pass
    return Plain(w, b)
