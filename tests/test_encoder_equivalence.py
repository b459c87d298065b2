"""The CPU encoder recurrence (``masked_rnn``) computes what PyTorch's packed nn.RNN/GRU/LSTM
computes: the same states, final states and gradients, for every cell, direction and depth."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.models.encoders import RNNEncoder, make_rnn, masked_rnn

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("cell,bidirectional,layers", list(itertools.product(["rnn", "gru", "lstm"], [True, False], [1, 2])))
def test_masked_rnn_equals_packed(cell, bidirectional, layers):
    torch.manual_seed(0)
    rnn = make_rnn(cell, 6, 5, layers, bidirectional=bidirectional).double()
    lengths = torch.tensor([7, 3, 1, 5, 7, 2])
    x = torch.randn(len(lengths), 7, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(7)[None, :] < lengths[:, None]

    out_ref, fin_ref = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out_ref, _ = pad_packed_sequence(out_ref, batch_first=True, total_length=7)
    out, fin = masked_rnn(rnn, x, lengths, mask)

    torch.testing.assert_close(out, out_ref)
    fins, fins_ref = (fin, fin_ref) if cell == "lstm" else ((fin,), (fin_ref,))
    for a, b in zip(fins, fins_ref, strict=True):
        torch.testing.assert_close(a, b)

    def total(o, f):  # a loss touching every output and final state
        f = f if isinstance(f, tuple) else (f,)
        return (o * torch.linspace(-1, 1, o.size(-1), dtype=o.dtype)).sum() + sum((t ** 2).sum() for t in f)

    params = [x, *rnn.parameters()]
    g_ref = torch.autograd.grad(total(out_ref, fin_ref), params)
    g = torch.autograd.grad(total(out, fin), params)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b)


def test_encoder_fused_and_packed_paths_agree_under_bf16_autocast():
    torch.manual_seed(1)
    enc = RNNEncoder("lstm", 30, 16, 32, bidirectional=True).eval()
    src = torch.randint(4, 30, (5, 9))
    lengths = torch.tensor([9, 4, 6, 1, 9])
    src[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    fused = enc(src, lengths)
    enc.fused = False
    packed = enc(src, lengths)
    torch.testing.assert_close(fused.memory, packed.memory, rtol=1e-5, atol=1e-6)
    enc.fused = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = enc(src, lengths)
    assert low.memory.dtype == torch.float32  # state and outputs stay fp32; only the matmuls drop
    torch.testing.assert_close(low.memory, packed.memory, rtol=0.05, atol=0.02)


def test_lstm_layer_without_gradients_and_with_an_empty_row():
    """The no-grad path (decoding) gives what the autograd node gives, and a row without tokens
    has zero outputs and zero final states, as a state that never started."""
    from seqlab.models.fused_encoder import lstm_layer

    torch.manual_seed(2)
    S, D, B, H = 6, 2, 4, 3
    gi = torch.randn(S, D, B, 4 * H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(D, H, 4 * H, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 0, 2, 5])
    mask = torch.arange(S)[None, :] < lengths[:, None]
    out, h, c = lstm_layer(gi, w, lengths, mask)
    with torch.no_grad():
        out0, h0, c0 = lstm_layer(gi, w, lengths, mask)
    for a, b in ((out, out0), (h, h0), (c, c0)):
        torch.testing.assert_close(a.detach(), b)
    assert out[:, :, 1].abs().sum() == 0 and h[:, 1].abs().sum() == 0 and c[:, 1].abs().sum() == 0
    assert out[2:, :, 2].abs().sum() == 0  # padding after the second token
    assert h[:, 0].abs().sum() > 0
    # the empty row gets no gradient; the padded steps of the others get none either
    g_gi, _ = torch.autograd.grad(out.sum() + h.sum() + c.sum(), [gi, w])
    assert g_gi[:, :, 1].abs().sum() == 0 and g_gi[2:, :, 2].abs().sum() == 0
    assert g_gi[:2, :, 2].abs().sum() > 0
    torch.autograd.gradcheck(lambda g, ww: lstm_layer(g, ww, lengths, mask), (gi, w))
