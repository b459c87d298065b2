"""Weights prepared for decoding (``seqlab.models.packed``): packed bf16 ones give the same products
as plain matmuls, and bf16 decoding with them the same hypotheses; int8 ones (``decode.quantize=int8``)
give products within about 1% of fp32 ones, and decoding with them keeps search's invariants."""

from __future__ import annotations

import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.models import decoders
from seqlab.models.packed import Int8, Packed, Plain, packed
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


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("rows,inner,out", [(1, 96, 300), (64, 512, 777), (7, 13, 11), (3, 1, 5)])
def test_int8_products_are_within_about_one_percent_of_fp32(rows, inner, out):
    torch.manual_seed(0)
    w, b, x = torch.randn(out, inner) * 0.1, torch.randn(out), torch.randn(rows, inner)
    q = Int8(w, b)
    assert q.q_t.dtype == torch.int8 and q.q_t.shape == (inner, out)
    assert _rel_err(q.mm(x), x @ w.t()) < 0.02
    assert _rel_err(q.linear(x), torch.nn.functional.linear(x, w, b)) < 0.02
    assert q.mm(x).dtype == torch.float32 and q.mm(x.bfloat16()).dtype == torch.float32
    # a row of zeros (a padded or reset state) gives exactly zeros, not NaNs from a zero scale
    assert torch.equal(q.mm(torch.zeros(2, inner)), torch.zeros(2, out))


def test_int8_on_another_device_is_a_config_error():
    from seqlab.errors import ConfigError

    with pytest.raises(ConfigError, match="decode.quantize=int8 runs on a CPU only"):
        Int8(torch.randn(4, 4, device="meta"))


def test_int8_scales_each_row_on_its_own():
    """Per-row input scales: a row of tiny values keeps its precision beside a row of large ones."""
    torch.manual_seed(1)
    w = torch.randn(50, 64)
    x = torch.randn(2, 64) * torch.tensor([[1e3], [1e-3]])
    y, ref = Int8(w).mm(x), x @ w.t()
    for r in range(2):
        assert _rel_err(y[r], ref[r]) < 0.02


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_int8_decoding_is_close_to_fp32_and_beam_one_equals_greedy(cell):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, emb_size=16, hidden_size=32, attention="additive", attention_style="luong",
                      dropout=0.0, init_range=0.3, num_layers=2)
    net = Seq2Seq(cfg, 30, 40).eval()
    lengths = torch.tensor([9, 7, 5, 3, 2, 1])
    src = torch.randint(4, 30, (len(lengths), 9))
    src[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    with torch.inference_mode():
        enc = net.encode(src, lengths)
        full, int8 = net.decoder.decoding_weights(6), net.decoder.decoding_weights(6, int8=True)
        assert isinstance(int8.generator, Int8) and all(isinstance(w, Int8) for w in (int8.combine, int8.first or
                                                                                     int8.layers[0][1]))
        prev = torch.full((6,), 2)
        a, _, wa = net.decoder.step(prev, net.decoder.init_state(enc, full))
        b, _, wb = net.decoder.step(prev, net.decoder.init_state(enc, int8))
        assert _rel_err(b, a) < 0.03 and _rel_err(wb, wa) < 0.03
        g_full = greedy(net.decoder, enc, 2, 3, 12, weights=full)
        g = greedy(net.decoder, enc, 2, 3, 12, weights=int8)
        same = (g.tokens == g_full.tokens).all(1)  # a near tie may go the other way, and the rest with it
        assert same.float().mean() >= 0.5
        torch.testing.assert_close(g.scores[same], g_full.scores[same], rtol=0.05, atol=0.05)
        one = beam_search(net.decoder, enc, 2, 3, 12, beam_size=1, alpha=0.0, weights=int8)
        assert torch.equal(one.tokens, g.tokens)
        torch.testing.assert_close(one.scores, g.scores)
