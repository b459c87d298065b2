"""The optimised decoder (fused recurrence, precomputed projections, output layer over all steps)
computes the same function, and the same gradients, as a plain step-by-step reference."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from seqlab.config import ModelConfig
from seqlab.models.decoders import RNNDecoder
from seqlab.models.output_loss import linear_cross_entropy
from seqlab.models.seq2seq import Seq2Seq

pytestmark = pytest.mark.unit


def reference_decode(dec: RNNDecoder, tgt_in, enc):
    """Textbook loop: nn.RNN/GRU/LSTM called once per step on [emb; extra], attention, output."""
    state = dec.init_state(enc)
    hx = state.hx
    feed, logits, attn = state.feed, [], []
    for t in range(tgt_in.size(1)):
        emb = dec.dropout(dec.embed(tgt_in[:, t]))
        h_prev = hx[0][-1] if isinstance(hx, tuple) else hx[-1]
        w = None
        if dec.attention is not None and dec.style == "bahdanau":
            ctx, w = dec.attention(h_prev, state.keys, state.memory, state.mask)
            x = torch.cat([emb, ctx], -1)
        elif dec.input_feeding:
            x = torch.cat([emb, feed], -1)
        elif dec.fixed_context:
            x = torch.cat([emb, state.context], -1)
        else:
            x = emb
        out, hx = dec.rnn(x.unsqueeze(1), hx)
        h = out[:, 0]
        if dec.attention is not None and dec.style == "luong":
            ctx, w = dec.attention(h, state.keys, state.memory, state.mask)
        elif dec.fixed_context:
            ctx = state.context
        o = torch.tanh(dec.combine(torch.cat([h, ctx], -1))) if dec.combine is not None else h
        o = dec.dropout(o)
        feed = o
        logits.append(dec.generator(o))
        attn.append(w)
    return torch.stack(logits, 1), (torch.stack(attn, 1) if attn[0] is not None else None)


VARIANTS = [
    dict(cell=c, attention=a, attention_style=s, input_feeding=f, num_layers=n)
    for c, (a, s, f), n in itertools.product(
        ["rnn", "gru", "lstm"],
        [("additive", "luong", True), ("general", "luong", True), ("dot", "bahdanau", False),
         ("additive", "luong", False), ("none", "luong", False)],
        [1, 2],
    )
] + [dict(cell=c, attention="none", fixed_context=True) for c in ("rnn", "gru", "lstm")]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
def test_fused_decoder_matches_reference(variant):
    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=12, hidden_size=16, dropout=0.0, **variant)
    model = Seq2Seq(cfg, src_vocab_size=23, tgt_vocab_size=19).double()
    src = torch.randint(4, 23, (5, 7))
    src_len = torch.tensor([7, 5, 3, 6, 1])
    tgt_in = torch.randint(4, 19, (5, 6))
    enc = model.encode(src, src_len)
    fast, fast_attn = model.decoder(tgt_in, enc)
    ref, ref_attn = reference_decode(model.decoder, tgt_in, enc)
    torch.testing.assert_close(fast, ref)
    if ref_attn is not None:
        torch.testing.assert_close(fast_attn, ref_attn)
    g_fast = torch.autograd.grad(fast.pow(2).sum(), list(model.parameters()), allow_unused=True)
    enc = model.encode(src, src_len)
    g_ref = torch.autograd.grad(reference_decode(model.decoder, tgt_in, enc)[0].pow(2).sum(),
                                list(model.parameters()), allow_unused=True)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_ref, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, msg=name)


STEP_VARIANTS = [
    dict(cell="lstm"), dict(cell="rnn"), dict(cell="gru"), dict(cell="lstm", num_layers=2),
    dict(cell="lstm", attention="dot", attention_style="bahdanau", input_feeding=False),
    dict(cell="lstm", attention="none", fixed_context=True),
]


@pytest.mark.parametrize("variant", STEP_VARIANTS, ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()))
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_step_matches_teacher_forced_forward(variant, grad):
    """Decoding step by step with gold inputs gives the teacher-forced logits; without gradients
    (decoding) the step runs layer 0's input projection and recurrence as one matmul."""
    torch.manual_seed(1)
    model = Seq2Seq(ModelConfig(emb_size=12, hidden_size=16, dropout=0.0, **variant), 23, 19).double().eval()
    src, src_len = torch.randint(4, 23, (3, 5)), torch.tensor([5, 2, 4])
    tgt_in = torch.randint(4, 19, (3, 4))
    with torch.set_grad_enabled(grad):
        enc = model.encode(src, src_len)
        full, _ = model.decoder(tgt_in, enc)
        state = model.decoder.init_state(enc)
        for t in range(4):
            logits, state, _ = model.decoder.step(tgt_in[:, t], state)
            torch.testing.assert_close(logits, full[:, t])
        assert (state.weights.first is not None) == (not grad and variant["cell"] != "gru")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_loss_and_gradients_match_plain_reference(cell):
    """The whole optimised training step (masked CPU encoder, fused decoder, fused output layer and
    label-smoothed loss) against a plain one: packed nn.LSTM encoder, the textbook decoder loop,
    nn.Linear logits and F.cross_entropy. Same loss, same gradient for every parameter."""
    torch.manual_seed(2)
    cfg = ModelConfig(cell=cell, emb_size=12, hidden_size=16, dropout=0.0)
    model = Seq2Seq(cfg, src_vocab_size=23, tgt_vocab_size=19).double()
    src_len = torch.tensor([7, 5, 3, 6, 1])
    src = torch.randint(4, 23, (5, 7))
    src[torch.arange(7)[None, :] >= src_len[:, None]] = 0
    tgt_in = torch.randint(4, 19, (5, 6))
    tgt_out = torch.randint(4, 19, (5, 6))
    tgt_out[:, 4:] = 0  # padding, ignored
    params = list(model.parameters())

    feats, _ = model(src, src_len, tgt_in, features_only=True)
    gen = model.decoder.generator
    loss, _, _ = linear_cross_entropy(feats, gen.weight, gen.bias, tgt_out, ignore_index=0, label_smoothing=0.1)
    g_fast = torch.autograd.grad(loss, params, allow_unused=True)

    model.encoder.fused = False  # PyTorch's packed kernels
    logits, _ = reference_decode(model.decoder, tgt_in, model.encode(src, src_len))
    ref = F.cross_entropy(logits.reshape(-1, 19), tgt_out.reshape(-1), ignore_index=0, reduction="sum",
                          label_smoothing=0.1)
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    torch.testing.assert_close(loss, ref)
    for (name, _), a, b in zip(model.named_parameters(), g_fast, g_ref, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, msg=name)


def test_decoder_that_cannot_see_the_source_is_rejected():
    with pytest.raises(ValueError, match="never sees the source"):
        Seq2Seq(ModelConfig(attention="none", decoder_init="zeros"), 10, 10)


def test_fixed_context_lstm_starts_both_states_from_the_context():
    model = Seq2Seq(ModelConfig(cell="lstm", attention="none", fixed_context=True, emb_size=8, hidden_size=12), 10, 10)
    enc = model.encode(torch.randint(4, 10, (2, 3)), torch.tensor([3, 2]))
    state = model.decoder.init_state(enc)
    assert state.c.abs().sum() > 0


@pytest.mark.parametrize("attention", ["additive", "general", "dot"])
def test_hand_written_loop_equals_autograd_steps(attention):
    """The one-layer LSTM with input feeding trains through ``models.fused_decoder`` (forward and
    backward by hand); the step-by-step path under autograd is the same function with the same
    gradients, dropout included (the masks are drawn in the same order from the same stream)."""
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(cell="lstm", emb_size=12, hidden_size=16, dropout=0.3, attention=attention),
                    23, 19).double().train()
    assert model.decoder.fused_loop
    src, src_len = torch.randint(4, 23, (5, 7)), torch.tensor([7, 5, 3, 6, 1])
    tgt_in = torch.randint(4, 19, (5, 6))
    runs = []
    for fused in (True, False):
        model.decoder.fused_loop = fused
        torch.manual_seed(5)
        out, attn = model(src, src_len, tgt_in)
        runs.append((out, attn, torch.autograd.grad(out.pow(2).sum(), list(model.parameters()), allow_unused=True)))
    (out, attn, grads), (ref_out, ref_attn, ref_grads) = runs
    # the autograd path's attention softmax runs in fp32 (Attention.forward): agreement to ~1e-8
    torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(attn, ref_attn, rtol=1e-6, atol=1e-7)
    for (name, _), a, b in zip(model.named_parameters(), grads, ref_grads, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_hand_written_loop_under_bf16_autocast():
    """Under bf16 autocast both paths run their matrix products in bf16 and keep the state in fp32:
    close outputs and gradients, fp32 gradients for fp32 parameters."""
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(cell="lstm", emb_size=32, hidden_size=64, dropout=0.0), 50, 40).train()
    src, src_len = torch.randint(4, 50, (8, 9)), torch.tensor([9, 8, 7, 6, 5, 4, 3, 2])
    tgt_in = torch.randint(4, 40, (8, 7))
    runs = []
    for fused in (True, False):
        model.decoder.fused_loop = fused
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = model(src, src_len, tgt_in, features_only=True)
        runs.append((out.float(), torch.autograd.grad(out.float().sum(), list(model.parameters()), allow_unused=True)))
    (out, grads), (ref_out, ref_grads) = runs
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref_out, rtol=0.05, atol=0.02)
    for (name, p), a, b in zip(model.named_parameters(), grads, ref_grads, strict=True):
        if a is not None:
            assert a.dtype == p.dtype, name
            assert (a - b).norm() <= 0.05 * b.norm() + 1e-6, name


@pytest.mark.parametrize("variant,fused", [
    (dict(cell="lstm"), True), (dict(cell="lstm", attention="dot"), True), (dict(cell="gru"), False),
    (dict(cell="lstm", num_layers=2), False), (dict(cell="lstm", input_feeding=False), False),
    (dict(cell="lstm", attention="additive", attention_style="bahdanau", input_feeding=False), False),
])
def test_which_decoders_take_the_hand_written_loop(variant, fused):
    assert Seq2Seq(ModelConfig(emb_size=8, hidden_size=8, **variant), 10, 10).decoder.fused_loop is fused
