"""The fused output layer + cross-entropy equals ``F.linear`` followed by ``F.cross_entropy``:
same loss, same plain NLL, same gradients for the input, the weight and the bias."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqlab.models import output_loss
from seqlab.models.output_loss import linear_cross_entropy

pytestmark = pytest.mark.unit


def _case(seed: int, n: int = 37, h: int = 12, v: int = 23, pad: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, h, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, v, (n,), generator=g)
    t[::5] = pad  # some ignored rows
    return x, w, b, t


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("chunk", [4, 2048])
@pytest.mark.parametrize("row_multiple", [1, 8, 64])
def test_matches_linear_then_cross_entropy(smoothing, chunk, row_multiple, monkeypatch):
    monkeypatch.setattr(output_loss, "CHUNK_ROWS", chunk)  # several chunks and a single one
    monkeypatch.setattr(output_loss, "ROW_MULTIPLE", row_multiple)  # padded rows must count for nothing
    x, w, b, t = _case(0)
    ref = F.cross_entropy(F.linear(x, w, b), t, ignore_index=0, reduction="sum", label_smoothing=smoothing)
    ref_nll = F.cross_entropy(F.linear(x, w, b), t, ignore_index=0, reduction="sum")
    ref_grads = torch.autograd.grad(3.0 * ref, (x, w, b))

    loss, nll, n = linear_cross_entropy(x, w, b, t, ignore_index=0, label_smoothing=smoothing)
    grads = torch.autograd.grad(3.0 * loss, (x, w, b))
    assert n == int((t != 0).sum())
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(nll, ref_nll)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_batch_by_time_shapes_and_no_grad_path():
    x, w, b, t = _case(1, n=24)
    x3, t3 = x.detach().view(4, 6, -1), t.view(4, 6)
    with torch.no_grad():
        loss, nll, n = linear_cross_entropy(x3, w, b, t3, ignore_index=0, label_smoothing=0.1)
    ref = F.cross_entropy(F.linear(x3, w, b).reshape(24, -1), t, ignore_index=0, reduction="sum",
                          label_smoothing=0.1)
    torch.testing.assert_close(loss, ref.detach())
    assert not loss.requires_grad and n == int((t != 0).sum())


def test_bf16_autocast_matches_unfused_autocast():
    x, w, b, t = (a.detach().float() if a.is_floating_point() else a for a in _case(2, n=64, h=32, v=50))
    for p in (x, w, b):
        p.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what the unfused layer + loss do under autocast
        ref = F.cross_entropy(F.linear(x, w, b).float(), t, ignore_index=0, reduction="sum")
    ref_grads = torch.autograd.grad(ref, (x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = linear_cross_entropy(x, w, b, t, ignore_index=0)
    grads = torch.autograd.grad(loss, (x, w, b))
    torch.testing.assert_close(loss, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
