"""Supervised pretraining on another labelled corpus before the task's own labels
(``task.label_pretrain``: intermediate-task transfer, e.g. IMDB's labels before SST-2's)."""

from __future__ import annotations

import logging
import random

import pytest
import torch
from textfixtures import TINY, slice_of, tiny_model

import seqlab.tasks.sentiment as sentiment
from seqlab.data.classification import LabelledCorpus, LabelledSplit, load_classification
from seqlab.data.text import tokenizer_fn
from seqlab.errors import ConfigError, DataError
from seqlab.evaluate import restore_task
from seqlab.tasks.sentiment import SentimentTask
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

GOOD = ["good", "great", "fine", "superb", "lovely"]
BAD = ["bad", "awful", "dull", "poor", "boring"]
FILLER = ["the", "film", "plot", "cast", "was", "and", "a", "story", "acting", "it"]


def review(rng: random.Random, positive: bool) -> str:
    """Filler words with one to three words of the label's polarity among them."""
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD if positive else BAD))
    return " ".join(words)


def labelled(n: int, seed: int, names: tuple[str, str] = ("0", "1")) -> LabelledSplit:
    rng = random.Random(seed)
    pos = [rng.random() < 0.5 for _ in range(n)]
    return LabelledSplit([review(rng, p).split() for p in pos], [names[p] for p in pos],
                         [f"mem:{i + 1}" for i in range(n)])


def corpus(train_n: int = 40, val_n: int = 200) -> LabelledCorpus:
    """The task's own small corpus: a few labelled texts, a larger seeded validation split."""
    return LabelledCorpus({"train": labelled(train_n, 1), "val": labelled(val_n, 2)}, "space", False, False, 0,
                          None, "mem")


def write_tsv(path, n: int, seed: int, names: tuple[str, str]) -> str:
    split = labelled(n, seed, names)
    rows = ["text\tlabel", *(f"{' '.join(t)}\t{y}" for t, y in zip(split.tokens, split.labels, strict=True))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def spec(path: str, **kw) -> dict:
    data = {"format": "tsv", "text_column": "text", "label_column": "label", "train": {"path": path},
            "val_fraction": 0.1, "tokenizer": "space"}
    return {"data": data, "minutes": 0, "steps": 150, "batch_size": 16, "lr": 1e-2, "eval_limit": 100, **kw}


def task(**kw) -> SentimentTask:
    torch.manual_seed(0)
    return SentimentTask(tiny_model("lstm", dropout=0.0), data=corpus(), pooling="max", packed=False, **kw)


@pytest.mark.unit
def test_ptb_tokenizer_splits_clitics_as_sst2_does():
    assert tokenizer_fn("ptb")("I didn't like it.<br />It's dull") == ["I", "did", "n't", "like", "it", ".", "It",
                                                                         "'s", "dull"]


@pytest.mark.unit
def test_same_label_names_carry_the_output_layer_over(tmp_path, caplog):
    """Pretrained on another corpus with the task's label names, the classifier already knows the
    task before it sees a single label of its own; without it, it is at chance."""
    other = write_tsv(tmp_path / "other.tsv", 600, 7, ("0", "1"))
    plain = task()
    with caplog.at_level(logging.INFO, logger="seqlab.tasks.sentiment"):
        pre = task(label_pretrain=spec(other))
    assert set(pre.network.state_dict()) == set(plain.network.state_dict())
    assert pre.evaluate("val")["val/acc"] > 95
    assert plain.evaluate("val")["val/acc"] < 75
    assert "the task's output layer" in caplog.text and "its val/acc" in caplog.text


@pytest.mark.unit
def test_other_label_names_train_a_layer_of_their_own(tmp_path):
    other = write_tsv(tmp_path / "other.tsv", 300, 7, ("neg", "pos"))
    plain = task()
    pre = task(label_pretrain=spec(other, steps=20))
    assert torch.equal(pre.network.out.weight, plain.network.out.weight)  # the task's layer is untouched
    assert not torch.equal(pre.network.encoder.rnn.weight_hh_l0, plain.network.encoder.rnn.weight_hh_l0)
    shared_off = task(label_pretrain=spec(write_tsv(tmp_path / "same.tsv", 300, 7, ("0", "1")), steps=20,
                                          share_head=False))
    assert torch.equal(shared_off.network.out.weight, plain.network.out.weight)


@pytest.mark.unit
def test_extend_vocab_adds_the_other_corpus_words(tmp_path):
    path = tmp_path / "other.tsv"
    path.write_text("text\tlabel\n" + "a riveting tale\t1\na tedious tale\t0\n" * 5, encoding="utf-8")
    assert "riveting" not in task().vocab.stoi
    pre = task(label_pretrain=spec(str(path), steps=2, extend_vocab=True, min_count=3))
    assert "riveting" in pre.vocab.stoi and "tedious" in pre.vocab.stoi


@pytest.mark.unit
def test_bad_settings_name_the_key_or_file(tmp_path):
    other = write_tsv(tmp_path / "other.tsv", 50, 7, ("0", "1"))
    with pytest.raises(ConfigError, match=r"task\.label_pretrain: give a budget"):
        task(label_pretrain=spec(other, steps=0))
    with pytest.raises(ConfigError, match=r"task\.label_pretrain\.precision='half'"):
        task(label_pretrain=spec(other, precision="half"))
    with pytest.raises(DataError, match=r"task\.label_pretrain\.data\.train\.path: .*nowhere\.tsv"):
        task(label_pretrain=spec(str(tmp_path / "nowhere.tsv")))
    broken = tmp_path / "broken.tsv"
    broken.write_text("review\tlabel\ngood\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"text"):
        task(label_pretrain=spec(str(broken)))
    with pytest.raises(ConfigError, match=r"task\.label_pretrain: batch_size \(16\) and lr \(nan\) must be positive"):
        task(label_pretrain=spec(other, lr=float("nan")))


@pytest.mark.unit
def test_data_errors_name_the_label_pretrain_node(tmp_path, monkeypatch):
    """The bundled loader is told its config node, so a file named ``data.tsv`` stays as it is;
    a loader of the user's own without ``node`` has ``data.`` in its messages rewritten."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"task\.label_pretrain\.data\.train\.path: file not found: data\.tsv$"):
        task(label_pretrain=spec("data.tsv"))

    def foreign(**kw):
        raise DataError("data.train.path: not read")

    monkeypatch.setattr(sentiment, "foreign_loader", foreign, raising=False)
    theirs = spec("data.tsv")
    theirs["data"]["_target_"] = "seqlab.tasks.sentiment.foreign_loader"
    assert sentiment._takes_node(load_classification) and not sentiment._takes_node(foreign)
    with pytest.raises(DataError, match=r"^task\.label_pretrain\.data\.train\.path: not read$"):
        task(label_pretrain=theirs)



@pytest.mark.unit
def test_a_nan_loss_stops_with_the_key_to_change(tmp_path, monkeypatch):
    def nan_embeddings(embedding, *args, **kwargs):
        with torch.no_grad():
            embedding.weight.fill_(float("nan"))

    monkeypatch.setattr(sentiment, "init_embeddings", nan_embeddings)
    with pytest.raises(ConfigError, match=r"the loss is nan at step 1; lower task\.label_pretrain\.lr"):
        task(label_pretrain=spec(write_tsv(tmp_path / "other.tsv", 50, 7, ("0", "1"))))


@pytest.mark.smoke
def test_a_run_composes_another_data_config_and_restores_without_it(compose_cfg, tmp_path, caplog):
    """``+data@task.label_pretrain.data=imdb`` on the command line (as an experiment's defaults list
    does) puts a whole data config there; eval and predict rebuild the task without reading it."""
    imdb = slice_of("imdb/train.tsv.gz", tmp_path / "imdb.tsv.gz", 120)
    sst = slice_of("sst2/train.tsv.gz", tmp_path / "sst.tsv.gz", 200)
    cfg = compose_cfg(["task=sentiment", *TINY, "trainer=debug", f"data.train.path={sst}",
                       "+data@task.label_pretrain.data=imdb", f"task.label_pretrain.data.train.path={imdb}",
                       "task.label_pretrain.data.tokenizer=ptb", "task.label_pretrain.data.max_len=64",
                       "task.label_pretrain.steps=3", "task.label_pretrain.minutes=0"])
    assert cfg.task.label_pretrain.data.val_fraction == 0.1  # imdb.yaml's, composed
    with caplog.at_level(logging.INFO):
        train(cfg, tmp_path / "run")
    assert "task.label_pretrain: 3 steps" in caplog.text
    imdb.unlink()  # the checkpoint does not need it
    ckpt = ckpt_io.load(str(tmp_path / "run" / "checkpoints" / "last.pt"))
    restored, _ = restore_task(ckpt, with_data=False, device="cpu")
    assert restored.classify_tokens([["a", "fine", "film"]])[0].label in ("0", "1")


@pytest.mark.unit
def test_the_sst2_imdb_preset_reads_imdb_as_sst2_is_tokenised(compose_cfg):
    cfg = compose_cfg(["experiment=sst2_imdb"])
    data = cfg.task.label_pretrain.data
    assert data.train.path.endswith("imdb/train.tsv.gz") and data.tokenizer == "ptb" and data.lowercase
    assert cfg.data.train.path.endswith("sst2/train.tsv.gz")  # the task's own data stays SST-2
    assert cfg.task.lm_pretrain.minutes + cfg.task.label_pretrain.minutes == 16  # sst2's language-model minutes
