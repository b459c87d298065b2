"""Contract tests: every seq2seq model preset and the main knob variants produce logits of the
right shape, no NaNs, and a finite non-zero gradient for every parameter (timm-style)."""

from __future__ import annotations

import random

import datasets
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config

from seqlab.config import to_spec
from seqlab.data.text import TextCorpus
from seqlab.models.seq2seq import Seq2Seq
from seqlab.tasks.translation import TranslationTask

pytestmark = [pytest.mark.contract, pytest.mark.usefixtures("one_thread")]

PRESETS = ["rnn", "gru", "lstm", "rnn_attn", "gru_attn", "lstm_attn"]
SMALL = ["model.emb_size=16", "model.hidden_size=32"]
SRC_V, TGT_V, PAD = 23, 29, 0

# (preset, extra overrides, teacher forcing)
VARIANTS = [
    *[(p, [], 1.0) for p in PRESETS],
    ("lstm_attn", ["model.attention=dot"], 1.0),
    ("gru_attn", ["model.attention=general"], 1.0),
    ("rnn_attn", ["model.attention=general", "model.bidirectional=false"], 1.0),
    ("lstm_attn", ["model.attention_style=bahdanau"], 1.0),
    ("gru_attn", ["model.attention_style=bahdanau", "model.attention=dot"], 1.0),
    ("lstm_attn", ["model.input_feeding=false"], 1.0),
    ("gru_attn", ["model.input_feeding=false"], 0.5),
    ("lstm", ["model.decoder_init=copy"], 1.0),
    ("gru_attn", ["model.decoder_init=copy", "model.num_layers=2"], 1.0),
    ("lstm_attn", ["model.decoder_init=zeros"], 1.0),
    ("rnn_attn", ["model.decoder_init=zeros", "model.attention_style=bahdanau"], 1.0),
    ("gru", ["model.fixed_context=true"], 1.0),
    ("rnn", ["model.fixed_context=true"], 0.5),
    ("lstm", ["model.fixed_context=true"], 1.0),
    ("lstm_attn", ["model.num_layers=2"], 1.0),
    ("rnn", ["model.num_layers=2", "model.bidirectional=false"], 1.0),
    ("lstm", ["model.bidirectional=false"], 1.0),
    ("lstm_attn", ["model.bidirectional=false", "model.decoder_init=copy"], 1.0),
    ("lstm_attn", [], 0.5),
    ("gru", [], 0.0),
    ("lstm_attn", ["model.tie_embeddings=true", "model.emb_size=32"], 1.0),
]


def _ids(v):
    preset, extra, tf = v
    return "-".join([preset, *(o.split(".", 1)[1] for o in extra), f"tf{tf:g}"])


def _batch(seed=0):
    """B=5 source/target pairs of varied lengths (one source of length 1), padded with 0."""
    g = torch.Generator().manual_seed(seed)
    src_len = torch.tensor([6, 4, 1, 5, 3])
    tgt_len = torch.tensor([5, 7, 2, 3, 4])
    src = torch.randint(4, SRC_V, (5, 6), generator=g)
    src[torch.arange(6)[None, :] >= src_len[:, None]] = PAD
    tgt_out = torch.randint(4, TGT_V, (5, 7), generator=g)
    tgt_out[torch.arange(7)[None, :] >= tgt_len[:, None]] = PAD
    tgt_out[torch.arange(5), tgt_len - 1] = 3  # </s>
    tgt_in = torch.cat([torch.full((5, 1), 2), tgt_out[:, :-1]], 1)
    tgt_in[tgt_in == 3] = PAD
    return src, src_len, tgt_in, tgt_out


def _model(preset, extra, dropout=0.1):
    cfg = compose_config("train", [f"model={preset}", *SMALL, f"model.dropout={dropout}", *extra])
    torch.manual_seed(0)
    return Seq2Seq(to_spec(cfg.model), SRC_V, TGT_V, PAD)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_shapes_gradients_no_nans(variant):
    preset, extra, tf = variant
    net = _model(preset, extra)
    net.train()
    src, src_len, tgt_in, tgt_out = _batch()
    logits, attn = net(src, src_len, tgt_in, teacher_forcing=tf)
    B, T = tgt_in.shape
    assert logits.shape == (B, T, TGT_V)
    assert torch.isfinite(logits).all()
    has_attention = net.decoder.attention is not None
    if has_attention:
        assert attn.shape == (B, T, src.size(1))
        assert torch.all(attn[~(torch.arange(src.size(1))[None, :] < src_len[:, None])[:, None, :]
                              .expand_as(attn)] == 0)
        torch.testing.assert_close(attn.sum(-1), torch.ones(B, T))
    else:
        assert attn is None
    loss = F.cross_entropy(logits.reshape(-1, TGT_V), tgt_out.reshape(-1), ignore_index=PAD)
    assert torch.isfinite(loss)
    loss.backward()
    bad = []
    for name, p in net.named_parameters():
        if p.grad is None:
            bad.append(f"{name}: no gradient")
        elif not torch.isfinite(p.grad).all():
            bad.append(f"{name}: non-finite gradient")
        elif p.grad.abs().sum() == 0:
            bad.append(f"{name}: zero gradient")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("preset", PRESETS)
def test_padding_in_the_batch_does_not_change_a_sentence(preset):
    """A sentence's logits do not depend on how much padding its batch adds (packing + masks)."""
    net = _model(preset, [], dropout=0.0).eval()
    src, src_len, tgt_in, _ = _batch()
    with torch.no_grad():
        full, _ = net(src, src_len, tgt_in)
        for row in range(src.size(0)):
            n = int(src_len[row])
            alone, _ = net(src[row : row + 1, :n], src_len[row : row + 1], tgt_in[row : row + 1])
            torch.testing.assert_close(full[row], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("overrides,match", [
    (["model=lstm", "model.fixed_context=true", "model.attention=additive"], "fixed_context"),
    (["model=lstm_attn", "model.hidden_size=33"], "even"),
    (["model=lstm_attn", "model.tie_embeddings=true", "model.emb_size=16", "model.hidden_size=32"],
     "tie_embeddings"),
])
def test_impossible_combinations_say_why(overrides, match):
    cfg = compose_config("train", overrides)
    with pytest.raises(ValueError, match=match):
        Seq2Seq(to_spec(cfg.model), SRC_V, TGT_V, PAD)


# ------------------------------------------------------------------- the task around the network
def _toy_corpus(n=24, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(12)]

    def sent():
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))

    src = [sent() for _ in range(n)]
    tgt = [" ".join(reversed(s.split())).upper() for s in src]
    ds = datasets.Dataset.from_dict({"src": src, "tgt": tgt})
    return TextCorpus({"train": ds, "val": ds.select(range(6))}, "xx", "yy", "space", False, f"toy{seed}")


@pytest.mark.parametrize("preset", PRESETS)
def test_translation_task_contract(preset):
    cfg = compose_config("train", [f"model={preset}", *SMALL])
    torch.manual_seed(0)
    task = TranslationTask(model=to_spec(cfg.model), data=_toy_corpus(), vocab={"min_freq": 1},
                           val_decode={"max_len": 8, "batch_size": 4}, num_samples=2)
    lengths = task.train_lengths()
    assert len(lengths) == 24 and all(n >= 2 for n in lengths)
    batch = task.collate([0, 1, 2, 3])
    assert batch.src.size(0) == 4 and batch.tgt_in.shape == batch.tgt_out.shape
    assert torch.all(batch.tgt_in[:, 0] == task.tgt_vocab.bos_id)
    task.network.train()
    out = task.training_step(batch)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.n_tokens == int((batch.tgt_out != task.tgt_vocab.pad_id).sum())
    out.loss.backward()
    metrics = task.evaluate("val")
    assert set(metrics) == {"val/loss", "val/ppl", "val/bleu", "val/chrf"}
    assert all(isinstance(v, float) and v == v for v in metrics.values())  # no NaNs
    assert len(task.last_hypotheses) == 6
    (t,) = task.translate(["w1 w2 w3"], {"max_len": 5})
    assert len(t.tokens) <= 5
    if task.network.decoder.attention is not None:
        # one row per output step: the tokens, plus </s> unless max_len cut the hypothesis
        assert t.attention.shape[1] == 3 and t.attention.shape[0] in (len(t.tokens), len(t.tokens) + 1)
    else:
        assert t.attention is None
    (b,) = task.translate(["w1 w2 w3"], {"strategy": "beam", "beam_size": 3, "max_len": 5})
    assert len(b.tokens) <= 5 and b.score <= 0
    assert task.translate([], {"max_len": 5}) == [] == task.translate([], {"strategy": "beam", "max_len": 5})
    state = task.state()
    restored = TranslationTask(model=to_spec(cfg.model), state=state)
    assert restored.src_vocab == task.src_vocab and restored.tgt_vocab == task.tgt_vocab
