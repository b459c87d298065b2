"""Unit tests: masked attention (additive/dot/general) and greedy / batched beam search."""

from __future__ import annotations

import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.models.attention import (
    AdditiveAttention,
    DotAttention,
    GeneralAttention,
    build_attention,
)
from seqlab.models.search import (
    beam_search,
    greedy,
    greedy_stream,
    length_penalty,
    max_rows,
    topk_rows,
)
from seqlab.models.seq2seq import Seq2Seq

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

B, S, H = 4, 7, 12
LENGTHS = torch.tensor([7, 5, 2, 1])
ATTENTIONS = ["additive", "dot", "general"]


def _inputs(seed=0, steps=None):
    g = torch.Generator().manual_seed(seed)
    shape = (B, H) if steps is None else (B, steps, H)
    query = torch.randn(*shape, generator=g)
    memory = torch.randn(B, S, H, generator=g)
    mask = torch.arange(S)[None, :] < LENGTHS[:, None]
    return query, memory, mask


def _attention(kind):
    torch.manual_seed(0)
    return build_attention(kind, H, H)


# ------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("kind", ATTENTIONS)
@pytest.mark.parametrize("steps", [None, 3])
def test_padding_gets_exactly_zero_weight_and_rows_sum_to_one(kind, steps):
    att = _attention(kind)
    query, memory, mask = _inputs(steps=steps)
    context, weights = att(query, att.project_keys(memory), memory, mask)
    if steps is None:
        assert weights.shape == (B, S) and context.shape == (B, H)
        w = weights.unsqueeze(1)
    else:
        assert weights.shape == (B, steps, S) and context.shape == (B, steps, H)
        w = weights
    pad = ~mask[:, None, :].expand_as(w)
    assert torch.all(w[pad] == 0.0)  # exactly zero, not just small
    assert torch.all(w[~pad] > 0.0)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]))
    # the context is the weighted sum of the values
    expected = torch.einsum("bts,bsh->bth", w, memory)
    torch.testing.assert_close(context if steps else context.unsqueeze(1), expected)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_padded_positions_do_not_influence_the_result(kind):
    att = _attention(kind)
    query, memory, mask = _inputs()
    ctx1, w1 = att(query, att.project_keys(memory), memory, mask)
    garbage = memory.clone()
    garbage[~mask] = 1e3  # huge values where the source is padding
    ctx2, w2 = att(query, att.project_keys(garbage), garbage, mask)
    assert torch.equal(w1, w2)
    torch.testing.assert_close(ctx1, ctx2)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_attention_is_differentiable_without_nans(kind):
    att = _attention(kind)
    query, memory, mask = _inputs()
    query.requires_grad_(True)
    memory.requires_grad_(True)
    context, _ = att(query, att.project_keys(memory), memory, mask)
    context.sum().backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(memory.grad).all()
    assert torch.all(memory.grad[~mask] == 0)  # no gradient flows into padding
    for p in att.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("chunk", [1, B * S * H, 3 * B * S * H])
def test_additive_scores_without_gradient_come_a_few_queries_at_a_time_and_equal(monkeypatch, chunk):
    from seqlab.models import attention as attention_module

    torch.manual_seed(0)
    att = AdditiveAttention(H, H)
    query, memory, mask = _inputs(steps=5)
    whole = att(query, att.project_keys(memory), memory, mask)  # gradient mode: all 5 queries at once
    monkeypatch.setattr(attention_module, "SCORE_CHUNK", chunk)  # 1, 1 or 3 queries per piece
    with torch.no_grad():
        pieces = att(query, att.project_keys(memory), memory, mask)
    for a, b in zip(whole, pieces, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=0, atol=1e-6)


def test_attention_registry():
    assert build_attention("none", H, H) is None
    assert isinstance(build_attention("additive", H, 6), AdditiveAttention)
    assert isinstance(build_attention("dot", H, H), DotAttention)
    assert isinstance(build_attention("general", H, 6), GeneralAttention)
    with pytest.raises(ValueError, match="general"):
        DotAttention(H, H + 1)  # dot needs equal sizes; the message points to the alternative


def test_general_and_additive_handle_different_query_and_key_sizes():
    for kind in ("additive", "general"):
        att = build_attention(kind, 5, 9)
        q, mem = torch.randn(2, 5), torch.randn(2, 3, 9)
        ctx, w = att(q, att.project_keys(mem), mem, torch.ones(2, 3, dtype=torch.bool))
        assert ctx.shape == (2, 9) and w.shape == (2, 3)


# ---------------------------------------------------------------------------------------- search
MAX_LEN = 15
SEARCH_MODELS = [
    ("gru", "none", "luong"),
    ("lstm", "additive", "luong"),
    ("rnn", "dot", "bahdanau"),
    ("lstm", "general", "luong"),
    ("gru", "additive", "bahdanau"),
]


def _first_eos(row: list[int], eos: int) -> int:
    return row.index(eos) + 1 if eos in row else len(row)


def _toy(cell, attention, style, seed=0):
    """A small random seeded model and a source batch; ``eos`` is chosen among the tokens the model
    actually produces so that the hypotheses end at different steps (the interesting case)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, emb_size=16, hidden_size=32, attention=attention, attention_style=style,
                      dropout=0.0, init_range=0.3)
    net = Seq2Seq(cfg, 30, 20).eval()
    with torch.no_grad():
        net.decoder.generator.weight.mul_(10)  # peaky distributions: varied, decisive tokens
    lengths = torch.tensor([9, 7, 5, 3, 2, 1, 9, 4])
    src = torch.randint(4, 30, (len(lengths), 9))
    src[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    enc = net.encode(src, lengths)
    free = greedy(net.decoder, enc, 2, -1, MAX_LEN).tokens.tolist()  # eos=-1: never stops
    candidates = range(4, 20)
    eos = max(candidates, key=lambda t: (len({_first_eos(r, t) for r in free}), -t))
    return net, src, lengths, enc, eos


@pytest.mark.parametrize("cell,attention,style", SEARCH_MODELS)
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_beam_size_one_equals_greedy(cell, attention, style, alpha):
    net, _, _, enc, eos = _toy(cell, attention, style)
    g = greedy(net.decoder, enc, 2, eos, MAX_LEN)
    ends = {_first_eos(r, eos) for r in g.tokens.tolist()}
    assert len(ends) >= 2, "toy model should give hypotheses of different lengths"
    b = beam_search(net.decoder, enc, 2, eos, MAX_LEN, beam_size=1, alpha=alpha)
    assert torch.equal(b.tokens, g.tokens)
    if alpha == 0.0:
        torch.testing.assert_close(b.scores, g.scores)
    if attention != "none":
        T = g.tokens.size(1)
        for row in range(g.tokens.size(0)):
            n = _first_eos(g.tokens[row].tolist(), eos)
            torch.testing.assert_close(b.attention[row, :n], g.attention[row, :n])
        assert T == b.attention.size(1)
    else:
        assert b.attention is None and g.attention is None


@pytest.mark.parametrize("cell,attention,style", SEARCH_MODELS)
@pytest.mark.parametrize("never_ends", [False, True])
def test_greedy_stream_equals_greedy_batch_by_batch(cell, attention, style, never_ends):
    """Streaming batches (finished sentences' rows taken by the next batch's, sources of other
    lengths padded in) decodes every sentence as greedy decoding of its own batch does."""
    net, src, lengths, _, eos = _toy(cell, attention, style)
    eos = -1 if never_ends else eos  # -1: every sentence runs on to MAX_LEN
    groups = [[0, 1, 2], [3, 4, 5], [6, 7]]  # sources of 9, 3 and 9 positions

    def enc_of(rows):
        S = int(lengths[rows].max())
        return net.encode(src[rows, :S], lengths[rows])

    sizes = [(len(g), int(lengths[g].max())) for g in groups]
    streamed = greedy_stream(net.decoder, [lambda g=g: enc_of(g) for g in groups], sizes, 2, eos, MAX_LEN)
    for g, hyp in zip(groups, streamed, strict=True):
        alone = greedy(net.decoder, enc_of(g), 2, eos, MAX_LEN)
        assert torch.equal(hyp.tokens, alone.tokens)
        torch.testing.assert_close(hyp.scores, alone.scores)
        if attention == "none":
            assert hyp.attention is None and alone.attention is None
        else:
            assert hyp.attention.shape == alone.attention.shape
            torch.testing.assert_close(hyp.attention, alone.attention)


def _sequence_logprob(net, enc, tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Sum of log p(y_t | y_<t, x) of each row up to and including its first </s>."""
    bos = torch.full((tokens.size(0), 1), 2, dtype=torch.long)
    with torch.no_grad():
        logits, _ = net.decoder(torch.cat([bos, tokens[:, :-1]], 1), enc)
    logp = torch.log_softmax(logits.float(), -1).gather(2, tokens.unsqueeze(-1)).squeeze(-1)
    out = []
    for row in range(tokens.size(0)):
        n = _first_eos(tokens[row].tolist(), eos)
        out.append(logp[row, :n].sum())
    return torch.stack(out)


@pytest.mark.parametrize("cell,attention,style", SEARCH_MODELS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_five_shapes_and_scores(cell, attention, style, alpha):
    net, src, lengths, enc, eos = _toy(cell, attention, style)
    K = 5
    hyp = beam_search(net.decoder, enc, 2, eos, MAX_LEN, beam_size=K, alpha=alpha)
    Bn = src.size(0)
    assert hyp.tokens.dim() == 2 and hyp.tokens.size(0) == Bn and 1 <= hyp.tokens.size(1) <= MAX_LEN
    assert hyp.tokens.dtype == torch.long
    assert hyp.scores.shape == (Bn,) and torch.isfinite(hyp.scores).all()
    assert hyp.tokens.min() >= 0 and hyp.tokens.max() < 20
    # the reported score is the model's (length-normalised) log-probability of the tokens returned
    lp = _sequence_logprob(net, enc, hyp.tokens, eos)
    n = torch.tensor([_first_eos(r, eos) for r in hyp.tokens.tolist()])
    torch.testing.assert_close(hyp.scores, lp / length_penalty(n, alpha), atol=1e-4, rtol=1e-4)
    assert torch.all(hyp.scores <= 0)  # log-probabilities
    if attention == "none":
        assert hyp.attention is None
    else:
        T = hyp.tokens.size(1)
        assert hyp.attention.shape == (Bn, T, src.size(1))
        for row in range(Bn):
            steps = int(n[row])
            w = hyp.attention[row, :steps]
            torch.testing.assert_close(w.sum(-1), torch.ones(steps))
            assert torch.all(w[:, int(lengths[row]):] == 0)


@pytest.mark.parametrize("cell,attention,style", SEARCH_MODELS[:3])
def test_batched_beam_search_equals_one_sentence_at_a_time(cell, attention, style):
    net, src, lengths, enc, eos = _toy(cell, attention, style)
    batched = beam_search(net.decoder, enc, 2, eos, MAX_LEN, beam_size=4, alpha=0.6)
    for row in (0, 3, 5, 7):  # lengths 9, 3, 1, 4 decoded alone vs. inside the batch
        n = int(lengths[row])
        single_enc = net.encode(src[row : row + 1, :n], lengths[row : row + 1])
        single = beam_search(net.decoder, single_enc, 2, eos, MAX_LEN, beam_size=4, alpha=0.6)
        k = _first_eos(single.tokens[0].tolist(), eos)
        assert batched.tokens[row, :k].tolist() == single.tokens[0, :k].tolist()
        torch.testing.assert_close(batched.scores[row], single.scores[0], atol=1e-4, rtol=1e-4)


def test_length_penalty_values():
    assert float(length_penalty(torch.tensor(1), 0.0)) == 1.0
    assert float(length_penalty(torch.tensor(7), 1.0)) == pytest.approx(2.0)
    assert float(length_penalty(torch.tensor(13), 0.5)) == pytest.approx(3.0**0.5)


@pytest.mark.parametrize("V", [7859, 3200, 100])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_topk_rows_equals_topk(V, k):
    g = torch.Generator().manual_seed(V + k)
    x = torch.randn(13, V, generator=g)
    x[0, -k:] = 10.0 + torch.arange(k, dtype=x.dtype)  # the best ones in the partial last block
    x[1, 64 : 64 + k] = 10.0 + torch.arange(k, dtype=x.dtype)  # all in one block
    values, idx = topk_rows(x, k)
    ref_values, ref_idx = x.topk(k, dim=-1)
    assert torch.equal(values, ref_values)
    assert torch.equal(idx, ref_idx)  # no ties in continuous random data


@pytest.mark.parametrize("V", [7859, 7808, 300, 100])
def test_max_rows_equals_max_with_ties_and_a_partial_last_block(V):
    torch.manual_seed(V)
    x = torch.randn(64, V)
    x[0, :] = 1.0  # all equal: the first index
    x[1, 3] = x[1, V - 1] = 9.0  # equal maxima in the first and the last (partial) block
    x[2, V - 1] = 9.0  # the maximum alone in the last block
    x[3, 70] = x[3, 200 % V] = 9.0  # equal maxima in two blocks
    v, i = max_rows(x)
    m, j = x.max(-1)
    assert torch.equal(v, m) and torch.equal(i, j)


def test_beam_state_keeps_one_copy_of_each_source():
    """Beam search's K hypotheses per sentence share that sentence's memory, keys and mask."""
    net, src, lengths, enc, _ = _toy("lstm", "additive", "luong")
    state = net.decoder.init_state(enc).expand(4)
    B = src.size(0)
    assert state.h.size(1) == state.c.size(1) == state.feed.size(0) == B * 4
    assert state.memory.size(0) == state.keys.size(0) == state.mask.size(0) == B
    rows, sources = torch.tensor([0, 1, 2, 3, 8, 9, 10, 11]), torch.tensor([0, 2])
    picked = state.select(rows, sources)
    assert picked.h.size(1) == 8 and picked.memory.size(0) == 2 and picked.beams == 4
    with pytest.raises(ValueError, match="source rows"):
        state.select(rows)


@pytest.mark.unit
def test_attention_tanh_is_torch_tanh_in_place_and_through_autograd():
    """``tanh_`` (2 sigmoid(2x) - 1, for speed) matches torch.tanh in value and gradient, and works in place."""
    from seqlab.models.attention import tanh_

    torch.manual_seed(0)
    x = torch.randn(3, 7, 16) * 4
    y = x.clone()
    assert tanh_(y) is y
    torch.testing.assert_close(y, torch.tanh(x), atol=3e-7, rtol=0)
    leaf = x.clone().requires_grad_()
    out = tanh_(leaf * 1.0)
    (out * torch.arange(16.0)).sum().backward()
    expect = (1 - torch.tanh(x) ** 2) * torch.arange(16.0)
    torch.testing.assert_close(leaf.grad, expect, atol=16 * 3e-7, rtol=1e-5)  # the weights go up to 15
    assert torch.equal(tanh_(torch.zeros(4)), torch.zeros(4))
