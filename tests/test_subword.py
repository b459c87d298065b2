"""Subword units (task.subword): the SentencePiece model, and a translation task built on it."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_config

from seqlab.data.subword import SubwordModel
from seqlab.evaluate import restore_task
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

WORDS = ("ein mann fährt mit dem fahrrad . zwei hunde spielen im schnee . eine frau liest ein buch "
         "im park . kinder spielen fußball auf der straße . ein hund rennt durch das wasser .").split()


def sentences(n: int = 400, seed: int = 0) -> list[list[str]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 12, (n,), generator=g).tolist()
    picks = torch.randint(0, len(WORDS), (sum(lengths),), generator=g).tolist()
    out, k = [], 0
    for n_words in lengths:
        out.append([WORDS[i] for i in picks[k:k + n_words]])
        k += n_words
    return out


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_pieces_spell_the_words_back(kind):
    text = sentences()
    model = SubwordModel.train(text, kind, vocab_size=60)
    assert 8 <= len(model) <= 60
    for words in text[:50] + [["unseenword", "fahrrads", "."]]:
        pieces = model.encode(words)
        assert pieces[0].startswith("\u2581") and len(pieces) >= len(words)
        assert model.decode(pieces) == words
    assert model.encode([]) == [] and model.decode([]) == []
    # a vocabulary's <unk> stays a word of its own
    assert model.decode(["\u2581hund", "<unk>", "\u2581rennt"]) == ["hund", "<unk>", "rennt"]


@pytest.mark.unit
def test_state_round_trip_is_json_and_encodes_the_same():
    text = sentences()
    model = SubwordModel.train(text, "bpe", vocab_size=50)
    state = json.loads(json.dumps(model.state()))  # task.json and the checkpoint hold it as text
    again = SubwordModel.from_state(state)
    assert again.kind == "bpe" and len(again) == len(model)
    assert [again.encode(s) for s in text[:30]] == [model.encode(s) for s in text[:30]]
    assert SubwordModel.from_state(None) is None


@pytest.mark.unit
def test_small_text_gives_fewer_pieces_not_an_error_and_bad_settings_are_named():
    model = SubwordModel.train([["ab", "ba"], ["abc"]], "bpe", vocab_size=8000)
    assert len(model) < 100
    with pytest.raises(ValueError, match=r"task\.subword\.kind='wordpiece'"):
        SubwordModel.train(sentences(), "wordpiece")
    with pytest.raises(ValueError, match=r"task\.subword\.vocab_size=2"):
        SubwordModel.train(sentences(), "bpe", vocab_size=2)
    with pytest.raises(ValueError, match="no text"):
        SubwordModel.train([[], []], "bpe")


CHEAP = ["trainer=debug", "trainer.max_steps=3", "trainer.limit_eval=8", "trainer.progress_bar=false",
         "model.emb_size=32", "model.hidden_size=64", "task.val_decode.max_len=12", "task.num_samples=2",
         "task.subword.kind=bpe", "task.subword.vocab_size=2000"]


@pytest.mark.smoke
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("shared", [True, False])
def test_translation_on_subwords_trains_saves_and_restores(tmp_path, shared):
    cfg = compose_config("train", [*CHEAP, f"task.subword.shared={shared}", f"cache_dir={tmp_path / 'cache'}"])
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert {"val/bleu", "val/chrf", "val/loss"} <= set(metrics)
    raw = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    saved = raw["task"]["subword"]
    assert saved["shared"] is shared and saved["src"]["kind"] == "bpe"
    assert (saved["src"] == saved["tgt"]) is shared
    # every vocabulary entry past the specials is a piece of the subword model
    assert any(p.startswith("\u2581") for p in raw["task"]["tgt_vocab"][4:])
    assert json.loads((run / "task.json").read_text())["subword"] == saved

    task, _ = restore_task(ckpt_io.load(run / "checkpoints" / "best.pt"), with_data=False)
    assert task.src_subword is not None and (task.tgt_subword is task.src_subword) is shared
    out = task.translate(["zwei hunde spielen im schnee ."], {"max_len": 8})[0]
    assert out.src_tokens[0] == "\u2581zwei"  # the source as pieces: the attention map's columns
    assert "\u2581" not in out.text  # the output as words
    assert out.attention is None or out.attention.shape[1] == len(out.src_tokens)


@pytest.mark.unit
def test_a_learnt_model_is_read_back_from_the_cache(tmp_path, monkeypatch):
    from seqlab.config import SubwordConfig
    from seqlab.tasks.translation import _learn_subwords

    train = (sentences(200, seed=1), sentences(200, seed=2))
    cfg = SubwordConfig(kind="bpe", vocab_size=40, shared=False)
    src, tgt = _learn_subwords(train, cfg, tmp_path / "subword" / "corpus")
    assert src is not tgt and sorted(p.name for p in (tmp_path / "subword").iterdir()) == [
        "corpus-bpe-40-src.model", "corpus-bpe-40-tgt.model"]

    def fail(*a, **k):
        raise AssertionError("learnt again")

    monkeypatch.setattr(SubwordModel, "train", fail)
    src2, tgt2 = _learn_subwords(train, cfg, tmp_path / "subword" / "corpus")
    assert src2.proto == src.proto and tgt2.proto == tgt.proto
    assert _learn_subwords(train, SubwordConfig(), tmp_path / "subword" / "corpus") == (None, None)
