"""In-budget word vectors: skip-gram with negative sampling, the pretraining script, loading them."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

from seqlab.data.raw_text import ptb_tokens
from seqlab.data.vectors import load_vectors, vector_words
from seqlab.data.vocab import Vocab
from seqlab.models.skipgram import context_pairs, train_skipgram

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import pretrain_word_vectors as pretrain  # noqa: E402


def two_topics(n: int = 600, seed: int = 0) -> list[list[str]]:
    """Sentences drawn from one of two disjoint word sets: words of a set share their contexts."""
    rng = random.Random(seed)
    topics = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    return [[rng.choice(topics[k % 2]) for _ in range(10)] for k in range(n)]


@pytest.mark.unit
def test_dynamic_window_pairs():
    import numpy as np

    c, o = context_pairs(np.arange(6), window=2, rng=np.random.default_rng(0))
    pairs = set(zip(c.tolist(), o.tolist(), strict=True))
    assert {(0, 1), (1, 0), (4, 5), (5, 4)} <= pairs  # distance 1 always kept, both directions
    assert all(abs(a - b) in (1, 2) for a, b in pairs)


@pytest.mark.unit
def test_skipgram_puts_words_of_shared_contexts_together():
    torch.set_num_threads(1)
    words, vec = train_skipgram(two_topics(), dim=16, window=3, min_count=1, epochs=3, batch_size=32, sample=0)
    assert sorted(words) == sorted([f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)])
    unit = torch.nn.functional.normalize(vec, dim=1)
    sim = unit @ unit.T
    group = torch.tensor([w.startswith("a") for w in words])
    same = sim[group[:, None] == group[None, :]].mean() - 1 / len(words)  # the diagonal's share
    other = sim[group[:, None] != group[None, :]].mean()
    assert same > other + 0.3


@pytest.mark.unit
def test_ptb_tokens_split_like_sst2():
    assert ptb_tokens("I didn't like it's ending,<br />\"really\" -- so-so...") == [
        "i", "did", "n't", "like", "it", "'s", "ending", ",", '"', "really", '"', "--", "so-so", "..."]


@pytest.mark.unit
def test_script_writes_vectors_that_embeddings_read(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(s) for s in two_topics(200)) + "\n", encoding="utf-8")
    out = tmp_path / "vec" / "v.txt"
    assert pretrain.main(["--text", str(text), "--dim", "8", "--epochs", "1", "--min-count", "1", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["words"] == 16 and summary["output"] == str(out)
    words = vector_words(str(out))
    assert len(words) == 16
    weight, found = load_vectors(str(out), Vocab(["<pad>", "<unk>", "<s>", "</s>", "a1", "zzz"]), 8)
    assert found == [4] and weight[4].abs().sum() > 0
    assert pretrain.main(["--text", str(tmp_path / "missing.txt"), "-o", str(out)]) == 2
    assert "missing.txt' is not imdb, sst2, ud_ewt or an existing text file" in capsys.readouterr().err


@pytest.mark.unit
def test_task_pretrains_vectors_at_start_up(tmp_path):
    """task.embeddings.pretrain: vectors trained when the task is built (inside the run's time) on
    the listed texts, then used as task.embeddings.path would be."""
    from textfixtures import tiny_model

    from seqlab.data.conllu import TaggedCorpus, TaggedSplit
    from seqlab.errors import ConfigError
    from seqlab.tasks.tagging import TaggingTask

    text = tmp_path / "unlabelled.txt"
    text.write_text("\n".join(" ".join(s) for s in two_topics(100)) + "\nthe cat sat\n", encoding="utf-8")
    s = TaggedSplit([["The", "cat", "sat"]], [["DET", "NOUN", "VERB"]])
    corpus = TaggedCorpus({"train": s, "val": s}, "upos", "space", "toy")
    spec = {"pretrain": [str(text)], "pretrain_epochs": 1, "pretrain_min_count": 1, "extend_vocab": True}
    task = TaggingTask(tiny_model("lstm", emb_size=8), data=corpus, char_features="none", lowercase_words=True,
                       embeddings=spec, cache_dir=str(tmp_path / "cache"))
    assert "a3" in task.vocab.stoi  # a word of the unlabelled text only
    [written] = (tmp_path / "cache" / "vectors").glob("skipgram_unlabelled_8d_*.txt")
    assert len(vector_words(str(written))) == 19
    with pytest.raises(ConfigError, match=r"task\.embeddings\.path and task\.embeddings\.pretrain"):
        TaggingTask(tiny_model("lstm", emb_size=8), data=corpus, embeddings={**spec, "path": str(written)})
