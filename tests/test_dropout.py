"""``models.dropout.Dropout`` (and the functional ``dropout``) is dropout: the right share kept, kept
values scaled by 1/(1-p), the gradient through the same mask, identity in eval mode."""

from __future__ import annotations

import pytest
import torch

from seqlab.models.dropout import Dropout, dropout

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keeps_one_minus_p_scaled(p):
    torch.manual_seed(0)
    x = torch.ones(400, 500, requires_grad=True)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 200k draws: sd ~0.001
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x * mask)/dx = mask


def test_eval_zero_and_one():
    x = torch.randn(8, 16)
    assert torch.equal(Dropout(0.3).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.count_nonzero(Dropout(1.0).train()(x)) == 0


def test_seeded_runs_repeat():
    x = torch.randn(64, 512)
    torch.manual_seed(3)
    a = Dropout(0.3).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.3).train()(x)
    assert torch.equal(a, b)


def test_functional_is_the_module():
    x = torch.randn(64, 512)
    torch.manual_seed(5)
    a = Dropout(0.4).train()(x)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.4), a)
    assert dropout(x, 0.4, training=False) is x


def test_bf16_activations_keep_their_dtype_and_rate():
    torch.manual_seed(0)
    y = dropout(torch.ones(400, 500, dtype=torch.bfloat16), 0.33)
    assert y.dtype == torch.bfloat16 and abs((y != 0).float().mean().item() - 0.67) < 0.006
