"""Sentiment (many-to-one): readers, bad input, every model preset, a debug run, predict output."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from textfixtures import PRESETS, TINY, slice_of, tiny_model

from seqlab.data.classification import LabelledCorpus, LabelledSplit, load_classification
from seqlab.errors import ConfigError, DataError, SeqlabError
from seqlab.evaluate import restore_task
from seqlab.tasks.sentiment import SentimentTask
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io


def toy_corpus() -> LabelledCorpus:
    pos = [["a", "good", "film"], ["great", "fun"], ["good", "good", "acting", "here"]]
    neg = [["a", "bad", "film"], ["awful"], ["bad", "boring", "plot", "here", "too"]]
    train = LabelledSplit(pos + neg, ["1"] * 3 + ["0"] * 3, [f"toy:{i}" for i in range(6)])
    return LabelledCorpus({"train": train, "val": train}, "space", False, False, 0, None, "toy")


# ------------------------------------------------------------------------------------ readers
@pytest.mark.unit
def test_reads_a_slice_of_bundled_sst2(tmp_path):
    train = slice_of("sst2/train.tsv.gz", tmp_path / "train.tsv.gz", 51)  # header + 50 rows
    dev = slice_of("sst2/dev.tsv.gz", tmp_path / "dev.tsv.gz", 11)
    c = load_classification(train={"path": str(train)}, val={"path": str(dev)})
    assert len(c.splits["train"].tokens) == 50 and len(c.splits["val"].tokens) == 10
    assert set(c.splits["train"].labels) <= {"0", "1"}
    assert c.splits["train"].tokens[0] == "hide new secretions from the parental units".split()
    assert c.splits["train"].where[0].endswith("train.tsv.gz:2")


@pytest.mark.unit
def test_imdb_slice_carves_seeded_val_and_counts_truncations(tmp_path, caplog):
    train = slice_of("imdb/train.tsv.gz", tmp_path / "imdb.tsv.gz", 41)
    kw = dict(text_column="text", train={"path": str(train)}, val_fraction=0.25, tokenizer="word",
              lowercase=True, strip_html=True, max_len=50)
    with caplog.at_level(logging.INFO):
        a = load_classification(**kw)
    b = load_classification(**kw)
    assert len(a.splits["val"].tokens) == 10 and len(a.splits["train"].tokens) == 30
    assert a.splits["val"].where == b.splits["val"].where  # same seed, same split
    assert max(map(len, a.splits["train"].tokens)) == 50
    assert "truncated" in caplog.text and "data.max_len=50" in caplog.text
    assert all("<" not in t for toks in a.splits["train"].tokens for t in toks if t == "br")


@pytest.mark.unit
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_user_tables(tmp_path, fmt):
    p = tmp_path / f"reviews.{fmt}"
    if fmt == "csv":
        p.write_text('review,stars\n"Loved it, really",pos\nMeh.,neg\n', encoding="utf-8")
    else:
        p.write_text('{"review": "Loved it", "stars": "pos"}\n{"review": "Meh.", "stars": "neg"}\n')
    c = load_classification(format=fmt, text_column="review", label_column="stars", train={"path": str(p)},
                            val={"path": str(p)}, tokenizer="word")
    assert c.splits["train"].labels == ["pos", "neg"]
    assert c.splits["train"].tokens[0][:2] == ["Loved", "it"]
    auto = load_classification(format="auto", text_column="review", label_column="stars", train={"path": str(p)},
                               val={"path": str(p)}, tokenizer="word")  # the format from the file name
    assert auto.splits["train"].tokens == c.splits["train"].tokens and auto.splits["train"].labels == ["pos", "neg"]


@pytest.mark.unit
def test_auto_format_needs_a_telling_file_name(tmp_path):
    p = tmp_path / "reviews.dat"
    p.write_text("sentence\tlabel\ngood\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"reviews\.dat: cannot tell a table's format.*data\.format=tsv"):
        load_classification(format="auto", train={"path": str(p)}, val={"path": str(p)})


@pytest.mark.smoke
def test_table_files_follows_the_task(compose_cfg, tmp_path, caplog):
    """USER-JOURNEYS 4: ``task=sentiment data=table_files data.train.path=reviews.csv
    data.text_column=review`` reads the user's labelled CSV; under translation the same data preset
    reads parallel columns."""
    csv = tmp_path / "reviews.csv"
    csv.write_text("review,label\n" + "".join(f"{w} film,{i % 2}\n" for i, w in enumerate(["good", "bad"] * 10)))
    cfg = compose_cfg(["task=sentiment", "data=table_files", f"data.train.path={csv}", "data.text_column=review",
                       "data.val_fraction=0.2", "trainer=debug"])
    assert cfg.data._target_.endswith("load_classification") and cfg.data.format == "auto"
    with caplog.at_level(logging.INFO):
        metrics = train(cfg, tmp_path / "run")
    assert "val/acc" in metrics
    assert "16 training examples" in caplog.text  # not trainer=debug's limit_train of 320
    assert f"(val/acc {metrics['best/val/acc']:.4g})" in caplog.text  # a best of 0 is not "nan"
    cfg = compose_cfg(["data=table_files", "data.train.path=a.tsv", "data.val.path=b.tsv"])
    assert cfg.data._target_.endswith("load_parallel") and cfg.data.format == "auto"


@pytest.mark.unit
def test_bad_tables_name_file_line_and_key(tmp_path, caplog):
    p = tmp_path / "t.tsv"
    p.write_text("sentence\tlabel\ngood\t1\n\t0\nbad\t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.tsv:4: empty label"):
        load_classification(train={"path": str(p)}, val={"path": str(p)})
    p.write_text("sentence\tlabel\ngood\t1\n\t0\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        c = load_classification(train={"path": str(p)}, val={"path": str(p)})
    assert len(c.splits["train"].tokens) == 1 and "dropped 1 empty text" in caplog.text
    with pytest.raises(DataError, match=r"no column 'polarity'.*data\.label_column"):
        load_classification(label_column="polarity", train={"path": str(p)}, val={"path": str(p)})
    with pytest.raises(DataError, match=r"data\.val\.path"):
        load_classification(train={"path": str(p)})
    with pytest.raises(DataError, match="file not found"):
        load_classification(train={"path": str(tmp_path / "nope.tsv")}, val={"path": str(p)})


@pytest.mark.unit
def test_unseen_label_at_eval_is_an_error(tmp_path):
    tr, dv = tmp_path / "tr.tsv", tmp_path / "dv.tsv"
    tr.write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    dv.write_text("sentence\tlabel\nok\t1\nhmm\t2\n")
    corpus = load_classification(train={"path": str(tr)}, val={"path": str(dv)})
    with pytest.raises(DataError, match=r"dv\.tsv:3: label '2' in the val split never occurs in training"):
        SentimentTask(tiny_model("gru"), data=corpus)


@pytest.mark.unit
def test_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"data\.name='someone/reviews'.*offline.*data=sst2"):
        load_classification(format="hub", name="someone/reviews")


@pytest.mark.unit
def test_pretrained_vectors_initialise_embeddings(tmp_path):
    vec = tmp_path / "glove.txt"
    vec.write_text("good " + " ".join(["0.5"] * 12) + "\nzzz " + " ".join(["1"] * 12) + "\n")
    task = SentimentTask(tiny_model("lstm"), data=toy_corpus(), embeddings={"path": str(vec), "freeze": False})
    row = task.network.encoder.embed.weight[task.vocab.stoi["good"]]
    assert torch.allclose(row, torch.full((12,), 0.5))
    assert "zzz" not in task.vocab.stoi
    extended = SentimentTask(tiny_model("lstm"), data=toy_corpus(), embeddings={"path": str(vec), "extend_vocab": True})
    assert extended.vocab.itos[: len(task.vocab)] == task.vocab.itos  # training words keep their ids
    row = extended.network.encoder.embed.weight[extended.vocab.stoi["zzz"]]
    assert torch.allclose(row, torch.ones(12))  # a word never seen in training keeps its vector
    bad = tmp_path / "bad.txt"
    bad.write_text("good 0.1 0.2\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: 2 numbers.*model\.emb_size"):
        SentimentTask(tiny_model("lstm"), data=toy_corpus(), embeddings={"path": str(bad)})


# ------------------------------------------------------------------------------- contracts
@pytest.mark.contract
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_contract_every_preset(preset, num_layers):
    torch.manual_seed(0)
    task = SentimentTask(tiny_model(preset, num_layers=num_layers), data=toy_corpus())
    assert task.pooling == ("attention" if preset.endswith("_attn") else "final")
    batch = task.collate([0, 1, 2, 3, 4, 5])
    logits, weights = task.network(batch.src, batch.lengths)
    assert logits.shape == (6, 2)
    if preset.endswith("_attn"):
        assert weights.shape == batch.src.shape
        assert torch.allclose(weights.sum(-1), torch.ones(6))
        assert (weights[batch.src == task.vocab.pad_id] == 0).all()
    out = task.training_step(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in task.network.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    m = task.evaluate("val")
    assert set(m) == {"val/loss", "val/acc", "val/f1"} and 0 <= m["val/acc"] <= 100


@pytest.mark.unit
def test_impossible_model_settings_are_user_errors():
    with pytest.raises(SeqlabError, match="task.pooling=attention needs a model with attention"):
        SentimentTask(tiny_model("gru"), data=toy_corpus(), pooling="attention")
    with pytest.raises(SeqlabError, match="model.hidden_size=15 must be even"):
        SentimentTask(tiny_model("gru", hidden_size=15), data=toy_corpus())


@pytest.mark.contract
@pytest.mark.parametrize("pooling", ["max", "mean", "concat"])
def test_other_poolings(pooling):
    task = SentimentTask(tiny_model("gru"), data=toy_corpus(), pooling=pooling)
    out = task.training_step(task.collate([0, 4]))
    out.loss.backward()
    assert torch.isfinite(out.loss)


# ------------------------------------------------------------------------- smoke and predict
@pytest.mark.smoke
def test_debug_run_and_predict(compose_cfg, tmp_path):
    cfg = compose_cfg(["task=sentiment", "model=gru_attn", "trainer=debug", "trainer.progress_bar=false", *TINY])
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert "val/acc" in metrics and "best/val/acc" in metrics
    assert (run / "checkpoints" / "best.pt").is_file() and list((run / "tb").glob("events.*"))
    assert list((run / "attention").glob("val_attention_0.png"))  # the TensorBoard image, as a PNG
    assert json.loads((run / "metrics.json").read_text())["monitor"] == "val/acc"
    task, _ = restore_task(ckpt_io.load(run / "checkpoints" / "best.pt"), with_data=False)
    lines = task.predict(["a gripping , funny film", "dull"], {"batch_size": 8}, str(tmp_path / "attn"))
    label, prob, words = lines[0].split("\t")
    assert label in ("0", "1") and 0.5 <= float(prob) <= 1.0
    weights = [float(w.rsplit("(", 1)[1].rstrip(")")) for w in words.split()]
    assert [w.rsplit("(", 1)[0] for w in words.split()] == "a gripping , funny film".split()
    assert abs(sum(weights) - 1.0) < 0.02
    assert sorted(p.name for p in (tmp_path / "attn").iterdir()) == ["attention_000.png", "attention_001.png"]
    with pytest.raises(DataError, match="empty text"):
        task.predict(["  "])


@pytest.mark.contract
@pytest.mark.parametrize("preset,pooling", [("lstm", "final"), ("gru", "max"), ("lstm_attn", "attention"),
                                            ("lstm", "concat")])
def test_padded_classifier_equals_packed(preset, pooling):
    """task.packed=false runs the encoder over the padded batch: same logits, same state dict."""
    torch.manual_seed(0)
    packed = SentimentTask(tiny_model(preset, num_layers=2), data=toy_corpus(), pooling=pooling)
    padded = SentimentTask(tiny_model(preset, num_layers=2), data=toy_corpus(), pooling=pooling, packed=False)
    padded.network.load_state_dict(packed.network.state_dict())
    batch = packed.collate(list(range(6)))
    packed.network.eval(), padded.network.eval()
    (a, wa), (b, wb) = (t.network(batch.src, batch.lengths) for t in (packed, padded))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    if wa is not None:
        torch.testing.assert_close(wa, wb, atol=1e-5, rtol=1e-4)
    padded.network.train()
    padded.training_step(padded.collate(list(range(6)))).loss.backward()
    assert all(p.grad is not None for p in padded.network.parameters())


@pytest.mark.unit
def test_truncation_keeps_head_tail_or_both(tmp_path):
    from seqlab.data.classification import truncate

    toks = [str(i) for i in range(10)]
    assert truncate(toks, 4) == ["0", "1", "2", "3"] and truncate(toks, 0) == toks
    assert truncate(toks, 4, "tail") == ["6", "7", "8", "9"]
    assert truncate(toks, 5, "head_tail") == ["0", "1", "7", "8", "9"]
    assert truncate(toks[:3], 4, "head_tail") == toks[:3]
    train = slice_of("imdb/train.tsv.gz", tmp_path / "imdb.tsv.gz", 21)
    kw = dict(text_column="text", train={"path": str(train)}, val_fraction=0.25, tokenizer="word",
              lowercase=True, strip_html=True, max_len=20)
    full = load_classification(**{**kw, "max_len": 0})
    both = load_classification(**kw, truncation="head_tail")
    assert both.truncation == "head_tail" and both.fingerprint != load_classification(**kw).fingerprint
    for f, b in zip(full.splits["train"].tokens, both.splits["train"].tokens, strict=True):
        assert b == (f if len(f) <= 20 else f[:10] + f[-10:])
    task = SentimentTask(tiny_model("gru"), data=both)
    assert task.tokenize(" ".join(str(i) for i in range(30))) == [str(i) for i in (*range(10), *range(20, 30))]


@pytest.mark.unit
def test_word_dropout_replaces_training_words_only():
    torch.manual_seed(0)
    task = SentimentTask(tiny_model("gru"), data=toy_corpus(), word_dropout=0.5)
    batch = task.collate(list(range(6)))
    real = batch.src != task.vocab.pad_id
    assert (batch.src[real] == task.vocab.unk_id).any()
    assert (batch.src[~real] == task.vocab.pad_id).all()  # padding stays padding
    seqs, _ = task._encode("val")
    assert task.vocab.unk_id not in {i for s in seqs for i in s}  # evaluation reads the words as they are


@pytest.mark.smoke
def test_ensemble_eval_and_predict_average_probabilities(compose_cfg, tmp_path):
    """``seqlab eval ckpt_path=[a,b]`` (a seed sweep's checkpoints): the class probabilities of the
    members averaged, in eval and predict; a checkpoint of another task is refused by name."""
    from seqlab.errors import CheckpointError
    from seqlab.evaluate import evaluate, restore
    from seqlab.predict import predict

    paths = []
    for seed in (1, 2):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        train(compose_cfg(["task=sentiment", "model=gru", "trainer=debug", "trainer.progress_bar=false",
                           f"seed={seed}", *TINY]), run)
        paths.append(str(run / "checkpoints" / "best.pt"))
    members = [restore(p, with_data=False)[0] for p in paths]
    ensemble, _, _ = restore(paths, with_data=False)
    text = [["a", "gripping", ",", "funny", "film"]]
    probs = [m.classify_tokens(text)[0] for m in members]
    p1 = [p.prob if p.label == "1" else 1 - p.prob for p in probs]
    e = ensemble.classify_tokens(text)[0]
    assert (e.prob if e.label == "1" else 1 - e.prob) == pytest.approx(sum(p1) / 2, abs=1e-5)
    listed = "[" + ",".join(paths) + "]"
    metrics = evaluate(compose_cfg([f"ckpt_path={listed}"], config_name="eval"), tmp_path / "eval")
    assert 0 <= metrics["val/acc"] <= 100
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["checkpoint"] == paths and len(saved["step"]) == 2
    [line] = predict(compose_cfg([f"ckpt_path={listed}", "input='a gripping , funny film'"], config_name="predict"))
    assert float(line.split("\t")[1]) == pytest.approx(e.prob, abs=1e-3)
    tagger = tmp_path / "tagger"
    tagger.mkdir()
    train(compose_cfg(["task=tagging", "model=gru", "trainer=debug", "trainer.progress_bar=false",
                       "task.char_features=none", *TINY]), tagger)
    with pytest.raises(CheckpointError, match=r"tagger/checkpoints/best\.pt: a tagging checkpoint, but .*seed1/"
                                              r"checkpoints/best\.pt is a sentiment checkpoint"):
        restore([paths[0], str(tagger / "checkpoints" / "best.pt")], with_data=False)


def concat_pooled(net, batch) -> torch.Tensor:
    """The final, max and mean states side by side, computed by hand from the encoder."""
    enc = net.encoder(batch.src, batch.lengths)
    mask = enc.mask.unsqueeze(-1)
    return torch.cat([enc.summary, enc.memory.masked_fill(~mask, float("-inf")).max(1).values,
                      enc.memory.sum(1) / mask.sum(1)], -1)


@pytest.mark.contract
def test_concat_pooling_is_final_max_and_mean_side_by_side():
    torch.manual_seed(0)
    task = SentimentTask(tiny_model("lstm"), data=toy_corpus(), pooling="concat")
    net = task.network.eval()
    batch = task.collate(list(range(6)))
    vec = concat_pooled(net, batch)
    assert net.out.in_features == 3 * 16
    torch.testing.assert_close(net(batch.src, batch.lengths)[0], net.out(vec))


@pytest.mark.contract
def test_classifier_hidden_layer(compose_cfg, tmp_path):
    """task.classifier_hidden: pooled vector -> ReLU layer -> logits (dropout before each layer);
    trains, is saved and restored with its checkpoint; a negative size is refused by name."""
    torch.manual_seed(0)
    task = SentimentTask(tiny_model("lstm"), data=toy_corpus(), pooling="concat", classifier_hidden=8)
    net = task.network.eval()
    batch = task.collate(list(range(6)))
    vec = concat_pooled(net, batch)
    assert (net.hidden.in_features, net.hidden.out_features, net.out.in_features) == (3 * 16, 8, 8)
    torch.testing.assert_close(net(batch.src, batch.lengths)[0], net.out(torch.relu(net.hidden(vec))))
    net.train()
    task.training_step(batch).loss.backward()
    assert net.hidden.weight.grad is not None and net.hidden.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match=r"task\.classifier_hidden=-1"):
        SentimentTask(tiny_model("lstm"), data=toy_corpus(), classifier_hidden=-1)
    run = tmp_path / "run"
    run.mkdir()
    train(compose_cfg(["task=sentiment", "model=gru", "trainer=debug", "trainer.progress_bar=false",
                       "task.classifier_hidden=8", *TINY]), run)
    restored, _ = restore_task(ckpt_io.load(run / "checkpoints" / "best.pt"), with_data=False)
    assert restored.network.hidden.out_features == 8
    assert restored.predict(["a gripping , funny film"])[0].split("\t")[0] in ("0", "1")
