"""Language-model pretraining of an encoder (``seqlab.models.bilm``, ``task.lm_pretrain``)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from test_sentiment import toy_corpus
from test_tagging import toy_corpus as toy_tagged
from textfixtures import tiny_model

from seqlab.errors import ConfigError, DataError
from seqlab.models.bilm import adaptive_nll, first_layer, frequency_ranks, lm_pairs, pretrain_bilm
from seqlab.models.encoders import make_rnn
from seqlab.models.heads import run_padded
from seqlab.tasks.sentiment import SentimentTask
from seqlab.tasks.tagging import FormInputs, TaggingTask


def cyclic_stream(n_tokens: int, vocab: int, seed: int = 0) -> list[int]:
    """Ids 4.. in runs of a fixed cycle (each token fixes the next) with a random start per run:
    a text a language model can learn to predict in both directions."""
    rng = random.Random(seed)
    cycle = list(range(4, vocab))
    rng.shuffle(cycle)
    out: list[int] = []
    while len(out) < n_tokens:
        start = rng.randrange(len(cycle))
        out += [cycle[(start + k) % len(cycle)] for k in range(rng.randint(5, 30))]
    return out[:n_tokens]


@pytest.mark.unit
@pytest.mark.parametrize("cell,bidirectional", [("lstm", True), ("gru", False)])
def test_pretraining_learns_a_predictable_text(cell, bidirectional):
    torch.manual_seed(0)
    V = 24
    embed = torch.nn.Embedding(V, 16)
    rnn = make_rnn(cell, 16, 32, 1, bidirectional=bidirectional)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    r = pretrain_bilm(rnn, embed, cyclic_stream(6000, V), V, (0, 1), minutes=0, steps=150, seq_len=16,
                      batch_size=16, lr=1e-2, cutoffs=[8], log_every=25)
    assert r.steps == 150 and r.tokens == 150 * 16 * 16
    uniform = math.log(V - 4)
    assert r.first_loss > 0.6 * uniform  # it starts near guessing ...
    assert r.last_loss < 0.25 * uniform  # ... and learns the cycle (the start of each run stays a guess)
    assert any(not torch.equal(before[k], v) for k, v in rnn.state_dict().items())
    assert rnn.training  # left in the mode it was found in


@pytest.mark.unit
def test_a_deeper_rnn_pretrains_its_first_layer_only():
    torch.manual_seed(0)
    rnn = make_rnn("lstm", 8, 6, 2, bidirectional=True)
    one = first_layer(rnn)
    assert one.num_layers == 1 and one.weight_hh_l0 is rnn.weight_hh_l0
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    pretrain_bilm(rnn, torch.nn.Embedding(20, 8), cyclic_stream(500, 20), 20, (0, 1), minutes=0, steps=3,
                  seq_len=8, batch_size=4)
    changed = {k for k, v in rnn.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all("_l0" in k for k in changed)


@pytest.mark.unit
def test_a_text_shorter_than_one_batch_still_trains():
    r = pretrain_bilm(make_rnn("gru", 8, 6, 1, bidirectional=True), torch.nn.Embedding(20, 8), cyclic_stream(40, 20),
                      20, (0, 1), minutes=0, steps=3, seq_len=8, batch_size=64)
    assert r.steps == 3 and r.tokens == 3 * 5 * 8  # five segments of 8 per batch


@pytest.mark.unit
@pytest.mark.parametrize("layers", [1, 2])
def test_no_direction_sees_the_token_it_predicts(layers):
    """Changing one token changes none of the states that predict it: the forward state before it
    and the backward state after it (an off-by-one here would let the LM copy its answer; so would
    a second bidirectional layer, which reads both directions: only the first is pretrained)."""
    torch.manual_seed(0)
    V, B, S = 30, 3, 9
    embed, rnn = torch.nn.Embedding(V, 8), first_layer(make_rnn("lstm", 8, 6, layers, bidirectional=True))
    x = torch.randint(4, V, (B, S))
    lengths = torch.full((B,), S)
    with torch.no_grad():
        for j in range(S):
            y = x.clone()
            y[:, j] = (y[:, j] - 3) % (V - 4) + 4  # another token at position j
            a = lm_pairs(run_padded(rnn, embed(x), lengths), x, 6)
            b = lm_pairs(run_padded(rnn, embed(y), lengths), y, 6)
            assert len(a) == 2
            for d, ((sa, ta), (sb, tb)) in enumerate(zip(a, b, strict=True)):
                cols = (ta != tb).all(0).nonzero().flatten().tolist()  # the states whose target is token j
                expected = ([j - 1] if j >= 1 else []) if d == 0 else ([j] if j <= S - 2 else [])
                assert cols == expected
                assert torch.equal(sa[:, cols], sb[:, cols])
                if (d == 0 and j < S - 1) or (d == 1 and j > 0):
                    assert not torch.equal(sa, sb)  # the states after it (before it, backward) do read token j


@pytest.mark.unit
def test_sentiment_task_pretrains_its_encoder_and_extends_the_vocabulary(tmp_path):
    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(["a good film and a great cast", "a bad film , a dull plot"] * 60), encoding="utf-8")
    spec = {"text": [str(text)], "minutes": 0, "steps": 4, "seq_len": 8, "batch_size": 4, "extend_vocab": True,
            "min_count": 2}
    torch.manual_seed(0)
    plain = SentimentTask(tiny_model("lstm"), data=toy_corpus(), packed=False)
    torch.manual_seed(0)
    pre = SentimentTask(tiny_model("lstm"), data=toy_corpus(), packed=False, lm_pretrain=spec)
    assert "dull" not in plain.vocab.stoi and "dull" in pre.vocab.stoi  # a word of the text only
    assert set(pre.network.state_dict()) == set(plain.network.state_dict())  # the LM heads are not kept
    w0, w1 = plain.network.encoder.rnn.weight_hh_l0, pre.network.encoder.rnn.weight_hh_l0
    assert not torch.equal(w0, w1)
    out = pre.training_step(pre.collate([0, 1, 2]))
    assert torch.isfinite(out.loss)


@pytest.mark.unit
def test_lm_pretrain_bad_settings_name_the_key(tmp_path):
    with pytest.raises(DataError, match=r"task\.lm_pretrain\.text: .*nowhere\.txt"):
        SentimentTask(tiny_model("lstm"), data=toy_corpus(), lm_pretrain={"text": [str(tmp_path / "nowhere.txt")]})
    with pytest.raises(ConfigError, match=r"task\.lm_pretrain: give a budget"):
        SentimentTask(tiny_model("lstm"), data=toy_corpus(), lm_pretrain={"text": ["sst2"], "minutes": 0})
    short = tmp_path / "short.txt"
    short.write_text("too short\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"task\.lm_pretrain: .*fewer than two segments"):
        SentimentTask(tiny_model("lstm"), data=toy_corpus(), lm_pretrain={"text": [str(short)], "steps": 1})


@pytest.mark.unit
def test_frequency_ranks():
    rank, n = frequency_ranks(torch.tensor([3, 3, 2, 5, 5, 5, 0, 1, 4]), (0, 1), 7)
    assert n == 4 and rank.tolist() == [-1, -1, 2, 1, 3, 0, -1]  # 5 x3, 3 x2, then 2 and 4 (ties by id)


@pytest.mark.unit
def test_adaptive_nll_is_the_modules_loss():
    """The LM loss computed outside ``nn.AdaptiveLogSoftmaxWithLoss.forward`` (cluster by cluster with
    the fused output layer and loss, its matrix products in bf16 if asked) is the module's own loss
    and gradients in fp32, and close to them in bf16."""
    torch.manual_seed(0)
    head = torch.nn.AdaptiveLogSoftmaxWithLoss(16, 300, [10, 60], div_value=2.0)
    x = torch.randn(200, 16, requires_grad=True)
    target = torch.cat([torch.randint(0, 300, (120,)), torch.randint(0, 10, (80,))])  # all three clusters
    ref, ours = head(x, target).loss, adaptive_nll(head, x, target)
    torch.testing.assert_close(ours, ref)
    params = [x, *head.parameters()]
    for u, v in zip(torch.autograd.grad(ours, params), torch.autograd.grad(ref, params), strict=True):
        torch.testing.assert_close(u, v)
    low = adaptive_nll(head, x, target, bf16=True)
    assert low.dtype == torch.float32 and abs(low.item() - ref.item()) < 0.02 * ref.item()
    for u, v in zip(torch.autograd.grad(low, params), torch.autograd.grad(head(x, target).loss, params), strict=True):
        assert u.dtype == v.dtype and torch.allclose(u, v, rtol=0.05, atol=0.02 * v.abs().max().item())
    # rows of one cluster only, and an empty tail: the others contribute nothing
    only_head = torch.randint(0, 10, (7,))
    torch.testing.assert_close(adaptive_nll(head, x[:7], only_head), head(x[:7], only_head).loss)


@pytest.mark.unit
def test_tagger_pretrains_its_words_characters_and_first_layer(tmp_path):
    """task.lm_pretrain for a tagger: the text is read with its case (the character features see
    it) and its lower-cased words extend the vocabulary; the language model's input for a form is
    exactly the tagger's own input for that word; the embedding, the character BiLSTM and the first
    RNN layer train, the second layer and the output do not, and no LM head is kept."""
    text = tmp_path / "web.txt"
    text.write_text("\n".join(["The cat sat on the mat .", "Paris is a big City ."] * 40), encoding="utf-8")
    spec = {"text": [str(text)], "minutes": 0, "steps": 3, "seq_len": 8, "batch_size": 4, "extend_vocab": True,
            "min_count": 2}
    kw = dict(char_features="lstm", char_emb_size=8, char_hidden_size=8, packed=False, lowercase_words=True)
    model = tiny_model("lstm", num_layers=2)
    torch.manual_seed(0)
    plain = TaggingTask(model, data=toy_tagged(), **kw)
    torch.manual_seed(0)  # the same vocabulary, so the same initial weights
    same_vocab = TaggingTask(model, data=toy_tagged(), lm_pretrain={**spec, "extend_vocab": False}, **kw)
    before, after = plain.network.state_dict(), same_vocab.network.state_dict()
    assert set(before) == set(after)  # no LM head is kept
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"embed.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0_reverse", "chars.rnn.weight_ih_l0"} <= changed
    assert not any("_l1" in k or k.startswith("out.") for k in changed)

    pre = TaggingTask(model, data=toy_tagged(), lm_pretrain=spec, **kw)
    assert "paris" in pre.vocab.stoi and "Paris" not in pre.vocab.stoi and "paris" not in plain.vocab.stoi

    forms = ["Paris", "is", "a", "City", "unseen"]
    words, chars = pre._encode_words(forms)
    chars_of_form = torch.zeros(len(forms), 24, dtype=torch.long)
    for r, c in enumerate(chars):
        chars_of_form[r, : len(c)] = torch.tensor(c)
    ids = torch.tensor([[0, 1, 2, 3, 0, 4]])  # "Paris is a City Paris unseen"
    pre.network.eval()
    lm_input = FormInputs(pre.network, torch.tensor(words), chars_of_form)(ids)
    batch = pre._batch([pre._encode_words([forms[i] for i in ids[0].tolist()]) + ([0] * 6, [])])
    own = pre.network.embed(batch.words)
    own = torch.cat([own, pre.network.chars(batch.chars)[batch.char_index]], -1)
    torch.testing.assert_close(lm_input, own)
    assert torch.isfinite(pre.training_step(pre.collate([0, 1, 2])).loss)


@pytest.mark.unit
def test_finetune_lr_scales_make_optimizer_groups(tmp_path):
    """task.lm_pretrain.finetune_lr_scale / embedding_lr_scale: the pretrained parameters get their
    own optimizer groups (0 freezes); train.py turns lr_scale into each group's learning rate."""
    from seqlab.tasks.base import scaled_groups

    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(["a good film and a great cast", "a bad film , a dull plot"] * 60), encoding="utf-8")
    spec = {"text": [str(text)], "minutes": 0, "steps": 2, "seq_len": 8, "batch_size": 4}
    task = SentimentTask(tiny_model("lstm"), data=toy_corpus(), lm_pretrain=spec)
    assert [len(g["params"]) for g in task.parameter_groups()] == [len(list(task.network.parameters()))]
    task = SentimentTask(tiny_model("lstm"), data=toy_corpus(),
                         lm_pretrain={**spec, "finetune_lr_scale": 0.25, "embedding_lr_scale": 0.0})
    enc = task.network.encoder
    groups = task.parameter_groups()
    assert [g.get("lr_scale") for g in groups] == [0.0, 0.25, None]
    assert groups[0]["params"] == list(enc.embed.parameters()) and not enc.embed.weight.requires_grad
    assert groups[1]["params"] == list(enc.rnn.parameters())
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in task.network.parameters()}
    with pytest.raises(ConfigError, match=r"task\.lm_pretrain\.finetune_lr_scale .*>= 0"):
        SentimentTask(tiny_model("lstm"), data=toy_corpus(), lm_pretrain={**spec, "finetune_lr_scale": -1.0}
                      ).parameter_groups()
    # the tagger: its input (embedding and characters) and its first RNN layer
    tagged = tmp_path / "tagged.txt"
    tagged.write_text("The cat sat . A dog sat down .\n" * 40, encoding="utf-8")
    tagger = TaggingTask(tiny_model("lstm", num_layers=2), data=toy_tagged(), char_features="cnn",
                         lm_pretrain={"text": [str(tagged)], "minutes": 0, "steps": 1, "seq_len": 8, "batch_size": 4,
                                      "finetune_lr_scale": 0.5})
    net = tagger.network
    first, inputs, rest = tagger.parameter_groups()
    assert first["lr_scale"] == inputs["lr_scale"] == 0.5 and "lr_scale" not in rest
    assert first["params"] == [*net.embed.parameters(), *net.chars.parameters()]
    assert inputs["params"] == [p for n, p in net.rnn.named_parameters() if "_l0" in n]
    assert scaled_groups(torch.nn.Linear(2, 2), [([], 0.5)])[0].keys() == {"params"}


@pytest.mark.slow
def test_train_gives_each_group_its_scaled_learning_rate(tmp_path):
    from conftest import compose_config

    from seqlab.train import train
    from seqlab.training import checkpoint as ckpt_io

    text = tmp_path / "reviews.txt"
    text.write_text("\n".join(["a good film and a great cast", "a bad film , a dull plot"] * 60), encoding="utf-8")
    over = ["task=sentiment", "model=lstm", "model.emb_size=16", "model.hidden_size=32", "trainer=debug",
            "trainer.max_steps=3", "trainer.limit_train=64", "trainer.limit_eval=16", "trainer.progress_bar=false",
            "logger.tensorboard=false", "task.num_samples=0", f"cache_dir={tmp_path / 'cache'}", "optimizer.lr=0.01",
            "scheduler=none", f"task.lm_pretrain.text=[{text}]", "task.lm_pretrain.minutes=0",
            "task.lm_pretrain.steps=2", "task.lm_pretrain.seq_len=8", "task.lm_pretrain.finetune_lr_scale=0.1",
            "task.lm_pretrain.embedding_lr_scale=0"]
    train(compose_config("train", over), tmp_path / "run")
    ckpt = ckpt_io.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == pytest.approx([0.0, 0.001, 0.01])
