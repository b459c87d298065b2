"""Token tagging data: CoNLL-U files (UD English-EWT bundled) or a hub token-classification set.

CoNLL-U lines are read through Hugging Face ``datasets`` (the ``text`` builder, one row per line,
so that row i is line i+1 of the file) and parsed here: 10 tab-separated columns per word line,
``#`` comments, a blank line after each sentence. Multiword-token ranges (``3-4``) and empty
nodes (``8.1``) are skipped: tags belong to syntactic words. A malformed line is reported with its
file and line number.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import datasets

from seqlab.data.hub import label_names, open_hub
from seqlab.data.text import _file_digest, check_text_file, column
from seqlab.errors import DataError

log = logging.getLogger(__name__)

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


@dataclass
class TaggedSplit:
    tokens: list[list[str]]
    tags: list[list[str]]


@dataclass
class TaggedCorpus:
    splits: dict[str, TaggedSplit]
    tag_column: str
    tokenizer: str  # how predict splits raw input
    fingerprint: str


def parse_conllu(lines: list[str], path: str, tag_column: str = "upos") -> TaggedSplit:
    """Sentences of (form, tag) from CoNLL-U ``lines``; ``path`` is only used in messages."""
    col = CONLLU_COLUMNS.index(tag_column)
    out = TaggedSplit([], [])
    words: list[str] = []
    tags: list[str] = []
    for n, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if words:
                out.tokens.append(words)
                out.tags.append(tags)
                words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != 10:
            raise DataError(
                f"{path}:{n}: expected 10 tab-separated CoNLL-U columns, found {len(cells)}: {line[:80]!r}"
            )
        wid = cells[0]
        if "-" in wid or "." in wid:  # multiword token range or empty node
            continue
        if not wid.isdigit():
            raise DataError(f"{path}:{n}: word ID {wid!r} is not an integer, a range (3-4) or a decimal (8.1)")
        tag = cells[col]
        if tag == "_":
            raise DataError(
                f"{path}:{n}: no {tag_column.upper()} tag ('_') for {cells[1]!r}; "
                "choose another data.tag_column (upos or xpos)"
            )
        words.append(cells[1])
        tags.append(tag)
    if words:  # a file without the final blank line
        out.tokens.append(words)
        out.tags.append(tags)
    return out


def read_conllu(path: str, tag_column: str, key: str) -> TaggedSplit:
    check_text_file(path, key)
    ds = datasets.load_dataset("text", data_files={"split": str(path)}, split="split")
    split = parse_conllu(column(ds, "text"), str(path), tag_column)
    if not split.tokens:
        raise DataError(f"{path}: no sentences found ({key})")
    return split


def _from_hub(name: str, tokens_column: str, tag_column: str) -> dict[str, TaggedSplit]:
    hub = open_hub(name, "the bundled data (data=ud_ewt) or your own CoNLL-U files (data=conllu)")
    out = {}
    for split, ds in hub.items():
        for key, col in (("tokens_column", tokens_column), ("tag_column", tag_column)):
            if col not in ds.column_names:
                raise DataError(f"data.name={name!r}[{split}]: no column {col!r} ({ds.column_names}); set data.{key}")
        names = label_names(ds, tag_column)
        toks, tags = column(ds, tokens_column), column(ds, tag_column)
        keep = [i for i, t in enumerate(toks) if t]
        if len(keep) < len(toks):
            log.warning("%s[%s]: dropped %d empty sentence(s)", name, split, len(toks) - len(keep))
        for i in keep:
            if len(toks[i]) != len(tags[i]):
                raise DataError(f"data.name={name!r}[{split}] row {i}: {len(toks[i])} tokens but {len(tags[i])} tags")
        out[split] = TaggedSplit(
            [list(map(str, toks[i])) for i in keep],
            [[names[t] if names else str(t) for t in tags[i]] for i in keep],
        )
    return out


def load_tagging(
    format: str = "conllu",
    name: str | None = None,
    tag_column: str = "upos",
    tokens_column: str = "tokens",
    train: dict | None = None,
    val: dict | None = None,
    test: dict | None = None,
    tokenizer: str = "space",
) -> TaggedCorpus:
    """Read tagged sentences (train, val, optional test) into a ``TaggedCorpus``."""
    fmt = getattr(format, "value", format)
    tok = getattr(tokenizer, "value", tokenizer)
    if fmt == "hub":
        if not name:
            raise DataError("data.name: a hub dataset name is required with data.format=hub")
        splits = _from_hub(name, tokens_column, tag_column)
        origin = name
    elif fmt == "conllu":
        tag_column = tag_column.lower()
        if tag_column not in ("upos", "xpos"):
            raise DataError(f"data.tag_column={tag_column!r}: CoNLL-U tags are upos or xpos")
        splits, paths = {}, []
        for split, spec in {"train": train or {}, "val": val or {}, "test": test or {}}.items():
            if spec.get("path"):
                splits[split] = read_conllu(spec["path"], tag_column, f"data.{split}.path")
                paths.append(Path(spec["path"]))
        origin = _file_digest(paths)
    else:
        raise DataError(f"data.format={fmt!r}: tagged sentences are read from conllu or hub")
    for required in ("train", "val"):
        if required not in splits:
            raise DataError(f"data.{required}.path: no {required} split given")
    for split, s in splits.items():
        log.info("%s: %d sentences, %d tokens", split, len(s.tokens), sum(map(len, s.tokens)))
    key = f"{origin}|{tag_column}|{tokens_column}"
    return TaggedCorpus(splits, tag_column, tok, hashlib.sha1(key.encode()).hexdigest())
