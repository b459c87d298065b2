"""Tagging (many-to-many): CoNLL-U reader, bad input, every preset x char features, debug run, word/TAG."""

from __future__ import annotations

import json

import pytest
import torch
from textfixtures import PRESETS, TINY, slice_of, tiny_model

from seqlab.data.conllu import TaggedCorpus, TaggedSplit, load_tagging, parse_conllu
from seqlab.errors import DataError
from seqlab.evaluate import restore_task
from seqlab.tasks.tagging import TaggingTask
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"}

CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tknows\tknow\tVERB\tVBZ\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def toy_corpus() -> TaggedCorpus:
    s = TaggedSplit([["The", "cat", "sat", "."], ["Dogs", "bark"], ["A", "dog", "sat", "down", "."]],
                    [["DET", "NOUN", "VERB", "PUNCT"], ["NOUN", "VERB"], ["DET", "NOUN", "VERB", "ADV", "PUNCT"]])
    return TaggedCorpus({"train": s, "val": s}, "upos", "space", "toy")


@pytest.mark.unit
def test_parse_conllu_skips_ranges_and_empty_nodes():
    s = parse_conllu(CONLLU.splitlines(), "toy.conllu")
    assert s.tokens == [["I", "do", "n't", "know", "."], ["Hi"]]
    assert s.tags == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert parse_conllu(CONLLU.splitlines(), "toy", "xpos").tags[0] == ["PRP", "VBP", "RB", "VB", "."]


@pytest.mark.unit
def test_reads_a_slice_of_bundled_ud_ewt(tmp_path):
    dev = slice_of("ud_ewt/en_ewt-ud-dev.conllu.gz", tmp_path / "dev.conllu.gz", 300)
    c = load_tagging(train={"path": str(dev)}, val={"path": str(dev)})
    sents = c.splits["train"]
    assert sents.tokens[0] == ["From", "the", "AP", "comes", "this", "story", ":"]
    assert {t for s in sents.tags for t in s} <= UPOS
    x = load_tagging(tag_column="xpos", train={"path": str(dev)}, val={"path": str(dev)})
    assert x.splits["train"].tags[0] == ["IN", "DT", "NNP", "VBZ", "DT", "NN", ":"]


@pytest.mark.unit
def test_val_fraction_carves_seeded_sentences(tmp_path):
    dev = slice_of("ud_ewt/en_ewt-ud-dev.conllu.gz", tmp_path / "dev.conllu.gz", 300)
    whole = load_tagging(train={"path": str(dev)}, val={"path": str(dev)}).splits["train"]
    a = load_tagging(train={"path": str(dev)}, val_fraction=0.25)
    b = load_tagging(train={"path": str(dev)}, val_fraction=0.25)
    n = len(whole.tokens)
    assert len(a.splits["val"].tokens) == round(0.25 * n) and len(a.splits["train"].tokens) == n - round(0.25 * n)
    assert a.splits["val"].tokens == b.splits["val"].tokens  # same seed, same split
    assert sorted(map(tuple, a.splits["train"].tokens + a.splits["val"].tokens)) == sorted(map(tuple, whole.tokens))
    assert load_tagging(train={"path": str(dev)}, val_fraction=0.25, split_seed=7).splits["val"].tokens \
        != a.splits["val"].tokens
    assert a.fingerprint != load_tagging(train={"path": str(dev)}, val={"path": str(dev)}).fingerprint
    with pytest.raises(DataError, match=r"data\.val\.path: no validation split.*data\.val_fraction"):
        load_tagging(train={"path": str(dev)})
    with pytest.raises(DataError, match=r"data\.val_fraction > 0 .* use one"):
        load_tagging(train={"path": str(dev)}, val={"path": str(dev)}, val_fraction=0.1)


@pytest.mark.unit
def test_bad_conllu_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.conllu"
    lines = CONLLU.splitlines()
    lines[4] = "2\tdo\tdo\tAUX\tVBP\t_\t4\taux"  # 8 columns on line 5
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conllu:5: expected 10 tab-separated CoNLL-U columns, found 8"):
        load_tagging(train={"path": str(bad)}, val={"path": str(bad)})
    lines[4] = "2\tdo\tdo\t_\tVBP\t_\t4\taux\t_\t_"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conllu:5: no UPOS tag"):
        load_tagging(train={"path": str(bad)}, val={"path": str(bad)})
    with pytest.raises(DataError, match=r"data\.tag_column='deprel'"):
        load_tagging(tag_column="deprel", train={"path": str(bad)}, val={"path": str(bad)})
    with pytest.raises(DataError, match=r"data\.name='someone/pos'.*offline"):
        load_tagging(format="hub", name="someone/pos")


@pytest.mark.unit
def test_unseen_tag_in_val_is_an_error():
    c = toy_corpus()
    c.splits["val"] = TaggedSplit([["Wow"]], [["INTJ"]])
    with pytest.raises(DataError, match=r"data\.val: tag\(s\) INTJ never occur in training"):
        TaggingTask(tiny_model("lstm"), data=c)


@pytest.mark.contract
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("chars", ["none", "cnn", "lstm"])
def test_contract_every_preset(preset, chars):
    torch.manual_seed(0)
    task = TaggingTask(tiny_model(preset, num_layers=2), data=toy_corpus(), char_features=chars,
                       char_emb_size=8, char_hidden_size=8, word_dropout=0.2, lowercase_words=chars == "cnn")
    batch = task.collate([0, 1, 2])
    logits, weights = task.network(batch.words, batch.lengths, batch.chars, batch.char_index)
    assert logits.shape == (3, 5, len(task.tags))
    if preset.endswith("_attn"):
        assert weights.shape == (3, 5, 5)
        assert (weights[1, :2, 2:] == 0).all()  # padding of the 2-word sentence gets no weight
    out = task.training_step(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.n_tokens == 11
    for name, p in task.network.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    m = task.evaluate("val")
    assert set(m) == {"val/loss", "val/acc", "val/f1"}


@pytest.mark.smoke
def test_debug_run_and_predict_word_slash_tag(compose_cfg, tmp_path):
    cfg = compose_cfg(["task=tagging", "model=lstm_attn", "trainer=debug", "trainer.progress_bar=false",
                       "task.char_hidden_size=8", "task.char_emb_size=8", *TINY])
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert 0 <= metrics["val/acc"] <= 100 and "val/f1" in metrics
    assert (run / "checkpoints" / "best.pt").is_file() and list((run / "tb").glob("events.*"))
    task, _ = restore_task(ckpt_io.load(run / "checkpoints" / "best.pt"), with_data=False)
    [line] = task.predict(["The zorblax sat ."], {"batch_size": 4}, str(tmp_path / "attn"))
    pairs = [w.rsplit("/", 1) for w in line.split(" ")]
    assert [w for w, _ in pairs] == ["The", "zorblax", "sat", "."]
    assert all(t in UPOS for _, t in pairs)
    assert (tmp_path / "attn" / "attention_000.png").is_file()
    # seqlab eval on your own CoNLL-U test file: data.test.path over the checkpoint's data config
    from seqlab.evaluate import evaluate

    mine = slice_of("ud_ewt/en_ewt-ud-dev.conllu.gz", tmp_path / "mine.conllu.gz", 60)
    ev = compose_cfg([f"ckpt_path={run / 'checkpoints' / 'best.pt'}", "split=test", f"data.test.path={mine}"],
                     config_name="eval")
    result = evaluate(ev, tmp_path / "eval")
    assert 0 <= result["test/acc"] <= 100
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["split"] == "test"


@pytest.mark.slow
def test_cli_bad_conllu_exits_cleanly(tmp_path, cli_env):
    import subprocess
    import sys

    bad = tmp_path / "bad.conllu"
    bad.write_text("1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n\n1\tOops\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "seqlab", "train", "task=tagging", "data=conllu",
                        f"data.train.path={bad}", f"data.val.path={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode != 0
    assert f"{bad}:3: expected 10 tab-separated CoNLL-U columns, found 2" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.unit
@pytest.mark.parametrize("preset,task,monitor", [("sst2", "sentiment", "val/acc"), ("sst2_imdb", "sentiment", "val/acc"),
                                                 ("imdb", "sentiment", "val/acc"),
                                                 ("ud_ewt_upos", "tagging", "val/acc"),
                                                 ("tinyshakespeare", "charlm", "val/loss")])
def test_text_presets_compose(compose_cfg, preset, task, monitor):
    cfg = compose_cfg([f"experiment={preset}"])
    assert cfg.task.name == task and cfg.task.monitor == monitor and cfg.trainer.max_minutes > 0


@pytest.mark.contract
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_run_padded_equals_run_packed(cell, bidirectional):
    """task.packed=false: the same outputs (zeros at padding) and the same gradients as packing."""
    from seqlab.models.encoders import make_rnn
    from seqlab.models.heads import run_packed, run_padded

    torch.manual_seed(0)
    rnn = make_rnn(cell, 5, 6, 2, bidirectional=bidirectional, dropout=0.5).eval()  # eval: no dropout
    x = torch.randn(3, 7, 5, requires_grad=True)
    lengths = torch.tensor([7, 2, 4])
    a = run_packed(rnn, x, lengths)
    b = run_padded(rnn, x, lengths)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert (b[1, 2:] == 0).all()
    ga = torch.autograd.grad(a.pow(2).sum(), [x, *rnn.parameters()])
    gb = torch.autograd.grad(b.pow(2).sum(), [x, *rnn.parameters()])
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-4)


@pytest.mark.contract
@pytest.mark.parametrize("preset", ["lstm", "gru_attn"])
def test_padded_tagger_equals_packed(preset):
    """The knob changes how the RNNs run, not the parameters: one state dict serves both."""
    torch.manual_seed(0)
    kw = dict(data=toy_corpus(), char_features="lstm", char_emb_size=8, char_hidden_size=8)
    packed = TaggingTask(tiny_model(preset, num_layers=2), **kw)
    padded = TaggingTask(tiny_model(preset, num_layers=2), packed=False, **kw)
    padded.network.load_state_dict(packed.network.state_dict())
    batch = packed.collate([0, 1, 2])
    packed.network.eval(), padded.network.eval()
    (a, wa), (b, wb) = (t.network(batch.words, batch.lengths, batch.chars, batch.char_index) for t in (packed, padded))
    mask = batch.tags != TaggingTask.IGNORE
    torch.testing.assert_close(a[mask], b[mask], atol=1e-5, rtol=1e-4)
    if wa is not None:
        torch.testing.assert_close(wa, wb, atol=1e-5, rtol=1e-4)
    assert padded.evaluate("val") == pytest.approx(packed.evaluate("val"), abs=1e-4)


@pytest.mark.contract
@pytest.mark.parametrize("chars,packed", [("cnn", True), ("lstm", True), ("lstm", False)])
def test_distinct_word_char_features_equal_per_position(chars, packed):
    """Character features computed once per distinct word of the batch (gathered back with
    ``char_index``), and the padded char BiLSTM run in length-sorted slices, give the outputs and
    gradients of one B x S x L character tensor."""
    torch.manual_seed(0)
    task = TaggingTask(tiny_model("lstm"), data=toy_corpus(), char_features=chars, char_emb_size=8,
                       char_hidden_size=8, packed=packed)
    task.network.eval()
    batch = task.collate([0, 1, 2])
    U = batch.chars.size(0)
    assert U < int(batch.lengths.sum()) and (batch.chars != 0).sum(1).tolist() == sorted(
        (batch.chars != 0).sum(1).tolist(), reverse=True)  # 'sat' and '.' twice; longest first
    per_pos = batch.chars[batch.char_index]  # B x S x L
    a, _ = task.network(batch.words, batch.lengths, batch.chars, batch.char_index)
    b, _ = task.network(batch.words, batch.lengths, per_pos)
    mask = batch.tags != TaggingTask.IGNORE
    torch.testing.assert_close(a[mask], b[mask], atol=1e-5, rtol=1e-4)
    params = list(task.network.chars.parameters())
    ga = torch.autograd.grad(a[mask].pow(2).sum(), params)
    gb = torch.autograd.grad(b[mask].pow(2).sum(), params)
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, atol=1e-5, rtol=1e-4)


@pytest.mark.unit
def test_frequency_word_dropout():
    """task.word_dropout_alpha: a training word seen c times becomes <unk> with chance alpha/(alpha+c)
    (plus task.word_dropout); never padding, never at evaluation."""
    task = TaggingTask(tiny_model("lstm"), data=toy_corpus(), char_features="none", word_dropout_alpha=0.25)
    p = task._drop_p
    v = task.vocab
    assert p[v.stoi["sat"]] == pytest.approx(0.25 / 2.25) and p[v.stoi["Dogs"]] == pytest.approx(0.2)
    assert p[v.pad_id] == 0 and p[v.unk_id] == 0
    both = TaggingTask(tiny_model("lstm"), data=toy_corpus(), char_features="none", word_dropout=0.1,
                       word_dropout_alpha=0.25)
    assert both._drop_p[v.stoi["sat"]] == pytest.approx(0.1 + 0.25 / 2.25)
    torch.manual_seed(0)
    always = TaggingTask(tiny_model("lstm"), data=toy_corpus(), char_features="lstm", char_emb_size=8,
                         char_hidden_size=8, word_dropout_alpha=1e9)
    batch = always.collate([0, 1, 2])
    assert ((batch.words == v.unk_id) == (batch.tags != TaggingTask.IGNORE)).all()  # every word, no padding
    assert (batch.chars != 0).any()  # the characters still see the word
    evaluated = always._batch([always._train[i] for i in (0, 1, 2)])
    assert not (evaluated.words == v.unk_id).any()
    from seqlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"task\.word_dropout_alpha=-1"):
        TaggingTask(tiny_model("lstm"), data=toy_corpus(), word_dropout_alpha=-1)


def _saved(task: TaggingTask, path, seed: int):
    """A checkpoint of ``task`` with its weights re-drawn from ``seed`` (what a seed sweep leaves)."""
    from omegaconf import OmegaConf

    from seqlab.config import TaggingTaskConfig

    torch.manual_seed(seed)
    for p in task.network.parameters():
        torch.nn.init.uniform_(p, -0.3, 0.3)
    plain = lambda c: OmegaConf.to_container(OmegaConf.structured(c), enum_to_str=True)  # noqa: E731
    cfg = {"model": plain(task.model_cfg),
           "task": plain(TaggingTaskConfig(char_features="lstm", char_emb_size=8, char_hidden_size=8)),
           "data": {"_target_": "seqlab.data.conllu.TaggedCorpus"}}
    ckpt_io.atomic_save(ckpt_io.model_checkpoint(task, cfg, None), path)
    return str(path)


@pytest.mark.unit
def test_ensemble_averages_tag_probabilities(tmp_path):
    """ckpt_path=[a,b]: the per-token tag probabilities of the members, averaged; members that do not
    share the vocabulary are refused with the file named."""
    from seqlab.errors import CheckpointError
    from seqlab.evaluate import make_ensemble, restore

    kw = dict(char_features="lstm", char_emb_size=8, char_hidden_size=8)
    paths = [_saved(TaggingTask(tiny_model("lstm"), data=toy_corpus(), **kw), tmp_path / f"m{s}.pt", s)
             for s in (1, 2)]
    members = [restore(p, with_data=False)[0] for p in paths]
    ensemble, got_paths, _ = restore(paths, with_data=False)
    assert got_paths == paths
    items = [members[0]._encode_words(s) + ([0] * len(s), []) for s in (["The", "dog", "sat"], ["Dogs", "bark"])]
    batch = members[0]._batch(items)
    probs = [m.network(batch.words, batch.lengths, batch.chars, batch.char_index)[0].softmax(-1) for m in members]
    logp, _ = ensemble.network(batch.words, batch.lengths, batch.chars, batch.char_index)
    torch.testing.assert_close(logp.exp(), (probs[0] + probs[1]) / 2, atol=1e-6, rtol=1e-5)
    assert ensemble.predict(["The dog sat"])[0].count("/") == 3
    other = toy_corpus()
    other.splits["train"] = TaggedSplit([["Birds", "sing"]], [["NOUN", "VERB"]])
    other.splits["val"] = other.splits["train"]
    odd = _saved(TaggingTask(tiny_model("lstm"), data=other, **kw), tmp_path / "odd.pt", 3)
    with pytest.raises(CheckpointError, match=r"odd\.pt: its vocabulary, character vocabulary, tags differ from "
                                              r"those of .*m1\.pt"):
        restore([paths[0], odd], with_data=False)
    with pytest.raises(CheckpointError, match="odd.pt: a sentiment checkpoint"):
        make_ensemble([members[0], type("T", (), {"name": "sentiment"})()], [paths[0], "odd.pt"])


@pytest.mark.unit
def test_extended_vocab_and_residual_pretrained_vectors(tmp_path):
    """task.embeddings.extend_vocab gives words of the vectors file rows (lower-cased with
    task.lowercase_words); .residual keeps the vectors frozen and adds a trainable embedding that
    starts at zero for the words they cover."""
    vec = tmp_path / "v.txt"
    vec.write_text("the " + " ".join(["0.5"] * 12) + "\nZorblax " + " ".join(["2"] * 12) + "\n")
    spec = {"path": str(vec), "extend_vocab": True, "residual": True}
    task = TaggingTask(tiny_model("lstm"), data=toy_corpus(), char_features="none", lowercase_words=True,
                       embeddings=spec)
    v, net = task.vocab, task.network
    assert "zorblax" in v.stoi and "Zorblax" not in v.stoi
    assert not net.fixed_embed.weight.requires_grad and net.embed.weight.requires_grad
    assert torch.allclose(net.fixed_embed.weight[v.stoi["zorblax"]], torch.full((12,), 2.0))
    assert (net.embed.weight[v.stoi["the"]] == 0).all() and (net.embed.weight[v.stoi["cat"]] != 0).any()
    batch = task.collate([0, 1, 2])
    logits, _ = net(batch.words, batch.lengths, batch.chars, batch.char_index)
    logits.sum().backward()
    assert net.fixed_embed.weight.grad is None and net.embed.weight.grad is not None
    restored = TaggingTask(tiny_model("lstm"), state=task.state(), char_features="none", lowercase_words=True,
                           embeddings=spec)
    restored.network.load_state_dict(net.state_dict())  # the same modules, so checkpoints load


# ------------------------------------------------------------------ auxiliary tag sets (multi-task)
@pytest.mark.unit
def test_conllu_reads_auxiliary_tag_columns(tmp_path):
    s = parse_conllu(CONLLU.splitlines(), "toy.conllu", "upos", ["xpos", "feats"])
    assert s.tags[0] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert s.aux["xpos"] == [["PRP", "VBP", "RB", "VB", "."], ["UH"]]
    assert s.aux["feats"] == [["_"] * 5, ["_"]]  # no features is a tag like any other
    dev = slice_of("ud_ewt/en_ewt-ud-dev.conllu.gz", tmp_path / "dev.conllu.gz", 300)
    c = load_tagging(train={"path": str(dev)}, val={"path": str(dev)}, aux_columns=["XPOS", "feats"])
    assert c.aux_columns == ["xpos", "feats"]
    assert c.splits["val"].aux["xpos"][0] == ["IN", "DT", "NNP", "VBZ", "DT", "NN", ":"]
    assert c.splits["val"].aux["feats"][0][1] == "Definite=Def|PronType=Art"
    assert c.fingerprint != load_tagging(train={"path": str(dev)}, val={"path": str(dev)}).fingerprint
    with pytest.raises(DataError, match=r"data\.aux_columns: 'lemma' is not a CoNLL-U tag column"):
        load_tagging(train={"path": str(dev)}, val={"path": str(dev)}, aux_columns=["lemma"])
    with pytest.raises(DataError, match=r"data\.aux_columns=\['upos'\]: each column once, and not data\.tag_column"):
        load_tagging(train={"path": str(dev)}, val={"path": str(dev)}, aux_columns=["upos"])


def aux_corpus() -> TaggedCorpus:
    c = toy_corpus()
    train = c.splits["train"]
    xpos = [["DT", "NN", "VBD", "."], ["NNS", "VBP"], ["DT", "NN", "VBD", "RP", "."]]
    c.splits["train"] = TaggedSplit(train.tokens, train.tags, {"xpos": xpos})
    # dev: an XPOS tag never seen in training is not scored (and not an error: it is not the task's tag set)
    c.splits["val"] = TaggedSplit(train.tokens, train.tags, {"xpos": [xpos[0], ["NNS", "VBZ"], xpos[2]]})
    c.aux_columns = ["xpos"]
    return c


@pytest.mark.unit
def test_auxiliary_tags_add_their_loss_and_their_accuracy(tmp_path):
    torch.manual_seed(0)
    task = TaggingTask(tiny_model("lstm"), data=aux_corpus(), char_features="cnn", aux_weight=0.5)
    assert task.aux_tags == {"xpos": [".", "DT", "NN", "NNS", "RP", "VBD", "VBP"]}
    batch = task._batch(task._encode("train"))
    assert [a.shape for a in batch.aux] == [batch.tags.shape]
    out = task.training_step(batch)
    logits, _, (xpos_logits,) = task.network(batch.words, batch.lengths, batch.chars, batch.char_index, with_aux=True)
    main = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tags.flatten(), ignore_index=-100)
    aux = torch.nn.functional.cross_entropy(xpos_logits.flatten(0, 1), batch.aux[0].flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss, main + 0.5 * aux)
    assert out.logs["tag_loss"] == pytest.approx(main.item())
    out.loss.backward()
    assert task.network.aux_out[0].weight.grad.abs().sum() > 0
    metrics = task.evaluate("val")
    val_aux = task._encode("val")[1][3][0]
    assert val_aux[1] == -100 and "val/acc_xpos" in metrics and 0 <= metrics["val/acc_xpos"] <= 100
    # scored over the 10 dev tokens whose XPOS was seen in training; the main metrics are untouched
    preds = task.network(batch.words, batch.lengths, batch.chars, batch.char_index, with_aux=True)[2][0].argmax(-1)
    gold = task._batch(task._encode("val")).aux[0]
    hits = int((preds == gold)[gold != -100].sum())
    assert metrics["val/acc_xpos"] == pytest.approx(100 * hits / 10)
    # a restored checkpoint keeps the auxiliary outputs (and predict still prints the main tags)
    back = TaggingTask(tiny_model("lstm"), state=task.state(), char_features="cnn")
    back.network.load_state_dict(task.network.state_dict())
    assert back.aux_tags == task.aux_tags and back.predict(["The cat sat"])[0].count("/") == 3


@pytest.mark.unit
def test_hub_token_classification_with_an_auxiliary_column(monkeypatch):
    """A hub dataset shaped like conll2003 (class-label ids per token), served from memory."""
    import datasets

    import seqlab.data.conllu as conllu

    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "pos_tags": datasets.Sequence(datasets.ClassLabel(names=["DT", "NN", "VBZ"])),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER"]))})
    rows = {"tokens": [["The", "cat", "sleeps"], [], ["Ann", "sleeps"]], "pos_tags": [[0, 1, 2], [], [1, 2]],
            "ner_tags": [[0, 0, 0], [], [1, 0]]}
    ds = datasets.Dataset.from_dict(rows, features=feats)
    monkeypatch.setattr(conllu, "open_hub", lambda name, fallback, **kw: {"train": ds, "val": ds})
    c = load_tagging(format="hub", name="someone/pos", tag_column="ner_tags", aux_columns=["pos_tags"])
    assert c.splits["train"].tags == [["O", "O", "O"], ["B-PER", "O"]]  # the empty sentence dropped
    assert c.splits["train"].aux == {"pos_tags": [["DT", "NN", "VBZ"], ["NN", "VBZ"]]}
    with pytest.raises(DataError, match=r"no column 'chunk_tags'.*set data\.aux_columns"):
        load_tagging(format="hub", name="someone/pos", tag_column="ner_tags", aux_columns=["chunk_tags"])
