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
import json
import logging
import sys
import time
from pathlib import Path

import torch

from seqlab.data.raw_text import read_text
from seqlab.data.vectors import write_vectors
from seqlab.errors import DataError
from seqlab.models.skipgram import train_skipgram


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
