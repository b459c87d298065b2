#!/usr/bin/env python
"""Pretrain word vectors (skip-gram, negative sampling) on bundled unlabelled text, for task.embeddings.path.

    python scripts/pretrain_word_vectors.py --text imdb --text sst2 --dim 256 --minutes 4 \\
        -o outputs/vectors/imdb_sst2_256.txt
    seqlab train experiment=sst2 task.embeddings.path=outputs/vectors/imdb_sst2_256.txt

``--text`` (repeatable): ``imdb`` (the 25,000 bundled IMDB training reviews, text only: no label is
read), ``sst2`` (the 6,920 SST-2 training sentences), ``ud_ewt`` (the words of the UD English-EWT
training sentences), or the path of a UTF-8 text file, one space-tokenised sentence per line.
Everything is lower-cased and split the way SST-2 is (Penn Treebank style: ``does n't``, ``it 's``).
The minutes this takes belong to the training budget of the run that uses the vectors. The last line
printed is a JSON summary (words, tokens, minutes, file).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import re
import sys
import time
from pathlib import Path

import torch

from seqlab.config import asset_path
from seqlab.data.conllu import parse_conllu
from seqlab.errors import DataError
from seqlab.models.skipgram import train_skipgram

_CLITIC = re.compile(r"(\w)(n't|'s|'ve|'re|'ll|'d|'m)\b")
_TOKEN = re.compile(r"n't|'(?:s|ve|re|ll|d|m)\b|\w+(?:[-']\w+)*|\.\.\.|--|[^\w\s]")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def ptb_tokens(text: str) -> list[str]:
    """Lower-cased Penn-Treebank-like tokens, as in SST-2: ``didn't`` -> ``did n't``."""
    text = _CLITIC.sub(r"\1 \2", _HTML_BREAK.sub(" ", text).lower())
    return _TOKEN.findall(text)


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


def read_text(spec: str) -> list[list[str]]:
    """The sentences (token lists) of one ``--text`` source."""
    if spec == "imdb":
        return [ptb_tokens(t) for t in read_tsv_column(asset_path("imdb/train.tsv.gz"), "text")]
    if spec == "sst2":
        return [s.lower().split() for s in read_tsv_column(asset_path("sst2/train_sentences.tsv.gz"), "sentence")]
    if spec == "ud_ewt":
        with _open(asset_path("ud_ewt/en_ewt-ud-train.conllu.gz")) as f:
            return [[w.lower() for w in s] for s in parse_conllu(f.read().splitlines(), "ud_ewt").tokens]
    if not Path(spec).is_file():
        raise DataError(f"--text {spec}: not imdb, sst2, ud_ewt or an existing text file")
    with _open(spec) as f:
        return [line.lower().split() for line in f if line.strip()]


def write_vectors(path: Path, words: list[str], vectors: torch.Tensor) -> None:
    """GloVe text format: ``word v1 ... vD`` per line (what ``task.embeddings.path`` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for w, v in zip(words, vectors.tolist(), strict=True):
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", action="append", required=True, help="imdb | sst2 | ud_ewt | a text file")
    ap.add_argument("-o", "--output", required=True, help="the vectors file to write (GloVe text format)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--negatives", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.025)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop training after this long (0: no limit)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        sentences = [s for spec in args.text for s in read_text(spec)]
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    budget = max(0.0, args.minutes - (time.perf_counter() - t0) / 60) if args.minutes else 0.0
    words, vectors = train_skipgram(sentences, args.dim, args.window, args.negatives, args.min_count,
                                    epochs=args.epochs, lr=args.lr, max_minutes=budget, seed=args.seed)
    write_vectors(Path(args.output), words, vectors)
    print(json.dumps({"output": args.output, "text": args.text, "words": len(words), "dim": args.dim,
                      "tokens": sum(map(len, sentences)), "minutes": round((time.perf_counter() - t0) / 60, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
