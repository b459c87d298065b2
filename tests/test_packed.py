"""Packed bf16 weights for decoding (``seqlab.models.packed``): the same products as plain matmuls,
and bf16 decoding with them gives the same hypotheses."""

from __future__ import annotations

import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.models import decoders
from seqlab.models.packed import Packed, Plain, packed
from seqlab.models.search import beam_search, greedy
from seqlab.models.seq2seq import Seq2Seq


def _bf16_supported() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


@pytest.mark.parametrize("rows", [1, 5, 64, 70])
def test_packed_products_equal_plain_ones(rows):
    torch.manual_seed(0)
    w = (torch.randn(300, 96) * 0.1).bfloat16()
    b = torch.randn(300).bfloat16()
    x = torch.randn(rows, 96).bfloat16()
    p = packed(w, b, rows=64)
    if _bf16_supported():
        assert isinstance(p, Packed)  # on a CPU with oneDNN bf16 kernels the weight is packed
    torch.testing.assert_close(p.mm(x).float(), (x @ w.t()).float(), rtol=0, atol=0)
    torch.testing.assert_close(p.linear(x).float(), torch.nn.functional.linear(x, w, b).float(), rtol=1e-2, atol=1e-2)


def test_fp32_weights_stay_plain_and_parameters_are_detached():
    w = torch.randn(8, 4)
    assert type(packed(w)) is Plain
    if _bf16_supported():
        assert isinstance(packed(w.bfloat16().requires_grad_()), Packed)  # a parameter is detached first
    torch.testing.assert_close(packed(w).mm(torch.ones(2, 4)), torch.ones(2, 4) @ w.t())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bf16_decoding_with_packed_weights_equals_plain(monkeypatch, cell):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, emb_size=16, hidden_size=32, attention="additive", attention_style="luong",
                      dropout=0.0, init_range=0.3, num_layers=2)
    net = Seq2Seq(cfg, 30, 40).eval().to(torch.bfloat16)
    lengths = torch.tensor([9, 7, 5, 3, 2, 1])
    src = torch.randint(4, 30, (len(lengths), 9))
    src[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        enc = net.encode(src, lengths)
        runs = {}
        for name in ("plain", "packed"):
            if name == "plain":
                monkeypatch.setattr(decoders, "packed", lambda w, b=None, rows=64: Plain(w.detach(), b))
            else:
                monkeypatch.undo()
            runs[name] = (greedy(net.decoder, enc, 2, 3, 12), beam_search(net.decoder, enc, 2, 3, 12, beam_size=3))
    for a, b in zip(runs["plain"], runs["packed"], strict=True):
        assert torch.equal(a.tokens, b.tokens)
        torch.testing.assert_close(a.scores, b.scores)
