"""Unit tests: parallel text read through ``seqlab.data.text.load_parallel`` (text, gz, TSV, CSV,
JSONL), empty-pair dropping with a count, file checks, tokenisers and the tokenised-data cache."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

import seqlab.tasks.translation as translation
from seqlab.data.text import load_parallel, tokenizer_fn
from seqlab.errors import DataError
from seqlab.tasks.translation import TokenCache

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

DE = ["ein hund läuft .", "zwei katzen schlafen .", "", "ein mann fährt fahrrad ."]
EN = ["a dog runs .", "two cats sleep .", "three birds", "a man rides a bike ."]
VAL_DE, VAL_EN = ["ein hund ."], ["a dog ."]


def _write(path, lines, gz=False):
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def _text_corpus(tmp_path, gz=False, **kw):
    sfx = ".gz" if gz else ""
    return load_parallel(
        format="text",
        train={"src": _write(tmp_path / f"train.de{sfx}", DE, gz), "tgt": _write(tmp_path / f"train.en{sfx}", EN, gz)},
        val={"src": _write(tmp_path / "val.de", VAL_DE), "tgt": _write(tmp_path / "val.en", VAL_EN)},
        **kw,
    )


@pytest.mark.parametrize("gz", [False, True])
def test_plain_text_files_and_empty_pairs_are_dropped_with_a_count(tmp_path, caplog, gz):
    with caplog.at_level(logging.WARNING, logger="seqlab.data.text"):
        corpus = _text_corpus(tmp_path, gz=gz)
    train = corpus.splits["train"]
    assert train.column_names == ["src", "tgt"]
    assert train["src"] == [DE[0], DE[1], DE[3]]
    assert train["tgt"] == [EN[0], EN[1], EN[3]]
    assert corpus.splits["val"]["tgt"] == VAL_EN
    assert "test" not in corpus.splits
    msg = caplog.text
    assert "dropped 1 pair(s)" in msg and "line 3" in msg and "train.de" in msg


def test_tsv_with_quotes_kept_as_text(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text('de\ten\nein "hund" .\ta "dog" .\nzwei\t\nkatze\tcat\n', encoding="utf-8")
    val = tmp_path / "val.tsv"
    val.write_text("de\ten\nhund\tdog\n", encoding="utf-8")
    corpus = load_parallel(format="tsv", train={"path": str(train)}, val={"path": str(val)}, tokenizer="word")
    ds = corpus.splits["train"]
    assert ds["src"] == ['ein "hund" .', "katze"]  # the pair with an empty side was dropped
    assert ds["tgt"] == ['a "dog" .', "cat"]


def test_csv(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('en,de\n"a dog, running",ein hund\ncat,katze\n', encoding="utf-8")
    corpus = load_parallel(format="csv", train={"path": str(train)}, val={"path": str(train)})
    assert corpus.splits["train"]["src"] == ["ein hund", "katze"]
    assert corpus.splits["train"]["tgt"] == ["a dog, running", "cat"]


def test_jsonl_with_named_columns(tmp_path):
    rows = [{"source": "ein hund", "target": "a dog", "id": 1}, {"source": "katze", "target": "cat", "id": 2}]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    corpus = load_parallel(format="jsonl", src_column="source", tgt_column="target",
                           train={"path": str(train)}, val={"path": str(train)})
    assert corpus.splits["train"]["src"] == ["ein hund", "katze"]
    assert corpus.splits["train"]["tgt"] == ["a dog", "cat"]


def test_auto_format_reads_each_table_by_its_name(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('en,de\n"a dog, running",ein hund\n', encoding="utf-8")
    val = tmp_path / "val.jsonl"
    val.write_text('{"de": "katze", "en": "cat"}\n', encoding="utf-8")
    corpus = load_parallel(format="auto", train={"path": str(train)}, val={"path": str(val)})
    assert corpus.splits["train"]["tgt"] == ["a dog, running"] and corpus.splits["val"]["src"] == ["katze"]


def test_missing_column_is_named(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"de": "hund", "english": "dog"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"no column 'en'.*english"):
        load_parallel(format="jsonl", train={"path": str(train)}, val={"path": str(train)})


def test_missing_val_split(tmp_path):
    src, tgt = _write(tmp_path / "a.de", ["x"]), _write(tmp_path / "a.en", ["y"])
    with pytest.raises(DataError, match=r"^data\.val\.src / tgt: no validation split given \(or set data\.val_fraction"):
        load_parallel(format="text", train={"src": src, "tgt": tgt})
    with pytest.raises(DataError, match=r"^data\.val\.path: no validation split given"):
        load_parallel(format="tsv", train={"path": _write(tmp_path / "a.tsv", ["de\ten", "x\ty"])})
    with pytest.raises(DataError, match="both src and tgt"):
        load_parallel(format="text", train={"src": src}, val={"src": src, "tgt": tgt})


def test_val_fraction_carves_seeded_pairs_from_train_files(tmp_path):
    de = [f"satz {i} ." for i in range(50)]
    en = [f"sentence {i} ." for i in range(50)]
    train = {"src": _write(tmp_path / "t.de", de), "tgt": _write(tmp_path / "t.en", en)}
    c = load_parallel(format="text", train=train, val_fraction=0.2)
    assert (len(c.splits["train"]), len(c.splits["val"])) == (40, 10)
    for split in ("train", "val"):  # each pair kept whole, and in file order
        ids = [int(s.split()[1]) for s in c.splits[split]["src"]]
        assert [int(t.split()[1]) for t in c.splits[split]["tgt"]] == ids == sorted(ids)
    assert sorted([*c.splits["train"]["src"], *c.splits["val"]["src"]]) == sorted(de)
    same = load_parallel(format="text", train=train, val_fraction=0.2)
    other = load_parallel(format="text", train=train, val_fraction=0.2, split_seed=7)
    assert list(same.splits["val"]["src"]) == list(c.splits["val"]["src"]) != list(other.splits["val"]["src"])
    assert same.fingerprint == c.fingerprint != other.fingerprint
    val = {"src": _write(tmp_path / "v.de", VAL_DE), "tgt": _write(tmp_path / "v.en", VAL_EN)}
    assert load_parallel(format="text", train=train, val=val).fingerprint != c.fingerprint
    with pytest.raises(DataError, match=r"^data\.val_fraction > 0 carves validation out of train, but "
                                        r"data\.val\.src / tgt is also set; use one$"):
        load_parallel(format="text", train=train, val=val, val_fraction=0.2)


def test_file_problems_name_file_and_line(tmp_path):
    ok_de, ok_en = _write(tmp_path / "ok.de", ["a", "b"]), _write(tmp_path / "ok.en", ["a", "b"])
    val = {"src": ok_de, "tgt": ok_en}
    short = _write(tmp_path / "short.en", ["a"])
    with pytest.raises(DataError, match=r"different lengths.*ok\.de has 2 lines.*short\.en has 1"):
        load_parallel(train={"src": ok_de, "tgt": short}, val=val)
    empty = tmp_path / "empty.en"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.en: the file is empty"):
        load_parallel(train={"src": ok_de, "tgt": str(empty)}, val=val)
    latin = tmp_path / "latin1.en"
    latin.write_bytes("fine\nfährt\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.en:2: not UTF-8"):
        load_parallel(train={"src": ok_de, "tgt": str(latin)}, val=val)
    with pytest.raises(DataError, match="file not found"):
        load_parallel(train={"src": ok_de, "tgt": str(tmp_path / "nope.en")}, val=val)


def test_fingerprint_follows_content_and_reading(tmp_path):
    a = _text_corpus(tmp_path)
    b = load_parallel(format="text", train={"src": str(tmp_path / "train.de"), "tgt": str(tmp_path / "train.en")},
                      val={"src": str(tmp_path / "val.de"), "tgt": str(tmp_path / "val.en")})
    assert a.fingerprint == b.fingerprint
    lower = load_parallel(format="text", lowercase=True,
                          train={"src": str(tmp_path / "train.de"), "tgt": str(tmp_path / "train.en")},
                          val={"src": str(tmp_path / "val.de"), "tgt": str(tmp_path / "val.en")})
    assert lower.fingerprint != a.fingerprint
    _write(tmp_path / "train.en", [*EN[:3], "a man rides a bicycle ."])
    changed = load_parallel(format="text",
                            train={"src": str(tmp_path / "train.de"), "tgt": str(tmp_path / "train.en")},
                            val={"src": str(tmp_path / "val.de"), "tgt": str(tmp_path / "val.en")})
    assert changed.fingerprint != a.fingerprint


def test_tokenizers():
    assert tokenizer_fn("space")("Hallo,  Welt !") == ["Hallo,", "Welt", "!"]
    assert tokenizer_fn("word")("Hallo, Welt! Straße") == ["Hallo", ",", "Welt", "!", "Straße"]
    assert tokenizer_fn("char")("ab c") == ["a", "b", " ", "c"]
    with pytest.raises(ValueError):
        tokenizer_fn("bpe")


def test_token_cache_second_load_does_not_tokenise(tmp_path, monkeypatch):
    corpus = _text_corpus(tmp_path, tokenizer="word", lowercase=True)
    first = TokenCache(tmp_path / "cache").load_or_build(corpus)
    assert first["train"][1][0] == ["a", "dog", "runs", "."]
    assert list((tmp_path / "cache" / "tokenized").glob("*.json"))

    def boom(kind):
        raise AssertionError("tokenised again despite the cache")

    monkeypatch.setattr(translation, "tokenizer_fn", boom)
    again = TokenCache(tmp_path / "cache").load_or_build(corpus)
    assert {k: (list(v[0]), list(v[1])) for k, v in again.items()} == first
