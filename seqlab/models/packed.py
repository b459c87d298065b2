"""Weights prepared once for the products a decoder step repeats: packed for oneDNN's bfloat16
matmul, or quantized to int8.

A bf16 matmul on a CPU with AMX/AVX-512-BF16 first reorders the weight into the kernel's blocked
layout, at every call. A decoder step multiplies the same few weights once per step, and for the
output layer (vocabulary x hidden) the reorder costs as much as the product itself. Decoding
reorders each weight once instead (``torch.ops.mkldnn._reorder_linear_weight``, the prepacking
PyTorch's own CPU compiler uses) and multiplies with the packed copy: the same products (tested
equal), about twice as fast for the output layer. Where oneDNN has no bf16 kernels, or the weight
is not bf16 on a CPU, ``packed`` returns a plain ``x @ w.T``.

``Int8`` (``decode.quantize=int8``) is dynamic quantization, as CTranslate2 and PyTorch's
``quantize_dynamic`` do it: the weight is quantized once, per output row; each input row is
quantized when it arrives, with its own scale; the product runs in integers (``torch._int_mm``;
VNNI instructions on x86) and is scaled back to fp32. That is not the same arithmetic: each
product's relative error is about 1%, which moved the benchmark model's test BLEU by at most a few
hundredths (docs/translation.md).
"""

from __future__ import annotations

import torch

from seqlab.errors import ConfigError


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


def _quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``x ~ q * scale`` with ``q`` in [-127, 127] and ``scale`` R x 1."""
    scale = x.abs().amax(1, keepdim=True).clamp_min_(1e-12).div_(127.0)
    return torch.div(x, scale).round_().to(torch.int8), scale


class Int8(Plain):
    """``mm``/``linear`` as ``Plain``'s, with the product in int8: ``w`` is quantized here, once,
    with one scale per output row; each call quantizes ``x`` with one scale per row (dynamic
    quantization) and returns fp32. CPU only."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None):
        w = w.detach().float()
        if w.device.type != "cpu":
            raise ConfigError(f"decode.quantize=int8 runs on a CPU only (the model is on {w.device.type}); "
                              "use decode.quantize=none there")
        q, scale = _quantize_rows(w)
        self.q_t, self.scale = q.t(), scale.view(1, -1)  # _int_mm multiplies by the transposed view as is
        self.w, self.b = None, (b.detach().float() if b is not None else None)  # no fp32 copy kept

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        q, scale = _quantize_rows(x.float())
        if q.size(1) == 1:  # _int_mm's CPU kernel gets a one-column product wrong (torch 2.14)
            return (q.float() * scale).mm(self.q_t.float() * self.scale)
        return torch._int_mm(q, self.q_t).float().mul_(scale).mul_(self.scale)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mm(x)
        return y.add_(self.b) if self.b is not None else y
