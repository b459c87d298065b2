"""Unlabelled text for pretraining word vectors: the bundled corpora (or a file) as token lists.

``imdb`` (the 25,000 bundled IMDB training reviews, text only: no label is read), ``sst2`` (the
6,920 SST-2 training sentences), ``ud_ewt`` (the words of the UD English-EWT training sentences), or
the path of a UTF-8 text file with one space-tokenised sentence per line. Everything is split the
way SST-2 is (Penn Treebank style: ``does n't``, ``it 's``) and lower-cased unless ``lowercase=False``
(a tagger's character features read the case; SST-2's own text comes lower-cased).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from seqlab.config import asset_path
from seqlab.data.conllu import parse_conllu
from seqlab.data.text import ptb_tokens  # noqa: F401  (where it lived; scripts import it from here)
from seqlab.errors import DataError

SOURCES = ("imdb", "sst2", "ud_ewt")

def _open(path: str | Path):
    return gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")


def read_tsv_column(path: str | Path, column: str) -> list[str]:
    csv.field_size_limit(1 << 30)
    with _open(path) as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        if column not in header:
            raise DataError(f"{path}: no column {column!r} (have {', '.join(header)})")
        k = header.index(column)
        return [r[k] for r in rows if len(r) > k]


def read_text(spec: str, key: str = "--text", lowercase: bool = True) -> list[list[str]]:
    """The sentences (token lists) of one source (see the module docstring)."""
    def low(x: str) -> str:
        return x.lower() if lowercase else x

    if spec == "imdb":
        return [ptb_tokens(t, lowercase) for t in read_tsv_column(asset_path("imdb/train.tsv.gz"), "text")]
    if spec == "sst2":
        return [low(s).split() for s in read_tsv_column(asset_path("sst2/train_sentences.tsv.gz"), "sentence")]
    if spec == "ud_ewt":
        with _open(asset_path("ud_ewt/en_ewt-ud-train.conllu.gz")) as f:
            return [[low(w) for w in s] for s in parse_conllu(f.read().splitlines(), "ud_ewt").tokens]
    if not Path(spec).is_file():
        raise DataError(f"{key}: {spec!r} is not imdb, sst2, ud_ewt or an existing text file")
    with _open(spec) as f:
        return [low(line).split() for line in f if line.strip()]
