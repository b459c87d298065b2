"""Pretrained word vectors from a GloVe or word2vec *text* file, aligned to a vocabulary."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import torch

from seqlab.data.vocab import Vocab
from seqlab.errors import DataError
from seqlab.runtime import atomic_file

log = logging.getLogger(__name__)


def _vector_lines(path: str, key: str):
    """(line number, line) of a vectors file, without a word2vec header line (``count dim``)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{key}: no vectors file at {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if n == 1 and (head := line.split()) and len(head) == 2 and all(x.isdigit() for x in head):
                continue
            yield n, line.rstrip()


def vector_words(path: str, key: str = "task.embeddings.path") -> list[str]:
    """The words of a vectors file, in file order (a word2vec header line is skipped)."""
    return [line.split(" ", 1)[0] for _, line in _vector_lines(path, key)]


def load_vectors(path: str, vocab: Vocab, dim: int, key: str = "task.embeddings.path") -> tuple[torch.Tensor, list[int]]:
    """``len(vocab) x dim`` rows for the vocabulary words found in the file, and their ids.

    Lines are ``word v1 ... v_dim``; a word2vec header line (``count dim``) is skipped. Words
    are also looked up lower-cased when the exact form is missing (either side may be lower-cased)."""
    p = Path(path)
    rows: dict[int, torch.Tensor] = {}
    lower = {}
    for i, tok in enumerate(vocab.itos):
        lower.setdefault(tok.lower(), i)
    for n, line in _vector_lines(path, key):
        parts = line.split(" ")
        if len(parts) != dim + 1:
            raise DataError(
                f"{p}:{n}: {len(parts) - 1} numbers after the word, expected {dim} "
                f"(model.emb_size must equal the vectors' dimension) ({key})"
            )
        word = parts[0]
        idx = vocab.stoi.get(word)
        if idx is None:  # a lower-cased vocabulary (task.lowercase_words), or lower-cased vectors
            idx = lower.get(word) if word.lower() == word else vocab.stoi.get(word.lower())
        if idx is None or idx in rows and vocab.itos[idx] != word:
            continue
        try:
            rows[idx] = torch.tensor([float(x) for x in parts[1:]])
        except ValueError:
            raise DataError(f"{p}:{n}: not a number in the vector of {word!r} ({key})") from None
    weight = torch.zeros(len(vocab), dim)
    for i, v in rows.items():
        weight[i] = v
    log.info("pretrained vectors: %d of %d vocabulary words found in %s", len(rows), len(vocab), p)
    return weight, sorted(rows)


def write_vectors(path: Path, words: list[str], vectors: torch.Tensor) -> None:
    """GloVe text format: ``word v1 ... vD`` per line (what ``task.embeddings.path`` reads)."""
    with atomic_file(path) as f:
        for w, v in zip(words, vectors.tolist(), strict=True):
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")
