"""Token tagging data: CoNLL-U files (UD English-EWT bundled) or a hub token-classification set.

CoNLL-U lines are read through Hugging Face ``datasets`` (the ``text`` builder, one row per line,
so that row i is line i+1 of the file) and parsed here: 10 tab-separated columns per word line,
``#`` comments, a blank line after each sentence. Multiword-token ranges (``3-4``) and empty
nodes (``8.1``) are skipped: tags belong to syntactic words. A malformed line is reported with its
file and line number.

``aux_columns`` reads more tag columns beside ``tag_column`` (``xpos``, ``feats``, ...), which the
tagger learns as extra outputs (multi-task training, as UDPipe 2 predicts UPOS, XPOS and FEATS).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from seqlab.data.hub import hub_origin, label_names, open_hub
from seqlab.data.text import _file_digest, check_text_file, column, require_train_and_val
from seqlab.errors import DataError

log = logging.getLogger(__name__)

CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


AUX_COLUMNS = ("upos", "xpos", "feats", "deprel")  # the ones that label every syntactic word


@dataclass
class TaggedSplit:
    tokens: list[list[str]]
    tags: list[list[str]]
    aux: dict[str, list[list[str]]] = field(default_factory=dict)  # column -> tags per sentence

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TaggedCorpus:
    splits: dict[str, TaggedSplit]
    tag_column: str
    tokenizer: str  # how predict splits raw input
    fingerprint: str
    aux_columns: list[str] = field(default_factory=list)  # more tag columns each split carries (TaggedSplit.aux)


def parse_conllu(lines: list[str], path: str, tag_column: str = "upos",
                 aux_columns: Sequence[str] = ()) -> TaggedSplit:
    """Sentences of (form, tag) from CoNLL-U ``lines`` (and the ``aux_columns`` tags of each word,
    where ``_`` is a tag like any other: no features); ``path`` is only used in messages."""
    col = CONLLU_COLUMNS.index(tag_column)
    aux_cols = [CONLLU_COLUMNS.index(c) for c in aux_columns]
    out = TaggedSplit([], [], {c: [] for c in aux_columns})
    words: list[str] = []
    tags: list[str] = []
    aux: list[list[str]] = [[] for _ in aux_cols]

    def flush() -> None:
        out.tokens.append(words)
        out.tags.append(tags)
        for c, a in zip(aux_columns, aux, strict=True):
            out.aux[c].append(a)

    for n, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if words:
                flush()
                words, tags, aux = [], [], [[] for _ in aux_cols]
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
        for a, c in zip(aux, aux_cols, strict=True):
            a.append(cells[c])
    if words:  # a file without the final blank line
        flush()
    return out


def read_conllu(path: str, tag_column: str, key: str, aux_columns: Sequence[str] = ()) -> TaggedSplit:
    check_text_file(path, key)
    ds = datasets.load_dataset("text", data_files={"split": str(path)}, split="split")
    split = parse_conllu(column(ds, "text"), str(path), tag_column, aux_columns)
    if not split.tokens:
        raise DataError(f"{path}: no sentences found ({key})")
    return split


def _hub_tags(ds, where: str, col: str, toks: list, keep: list[int]) -> list[list[str]]:
    """Column ``col`` of hub split ``ds`` as tag names, for the sentences ``keep``."""
    names, tags = label_names(ds, col), column(ds, col)
    for i in keep:
        if len(toks[i]) != len(tags[i]):
            raise DataError(f"{where} row {i}: {len(toks[i])} tokens but {len(tags[i])} {col} tags")
    return [[names[t] if names else str(t) for t in tags[i]] for i in keep]


def _from_hub(name: str, tokens_column: str, tag_column: str, aux_columns: Sequence[str], subset: str | None,
              revision: str | None, val_fraction: float) -> dict[str, TaggedSplit]:
    hub = open_hub(name, "the bundled data (data=ud_ewt) or your own CoNLL-U files (data=conllu)", subset=subset,
                   revision=revision, val_hint=None if val_fraction > 0 else "set data.val_fraction to carve one from train")
    out = {}
    for split, ds in hub.items():
        keys = [("tokens_column", tokens_column), ("tag_column", tag_column), *(("aux_columns", c) for c in aux_columns)]
        for key, col in keys:
            if col not in ds.column_names:
                raise DataError(f"data.name={name!r}[{split}]: no column {col!r} ({ds.column_names}); set data.{key}")
        toks = column(ds, tokens_column)
        keep = [i for i, t in enumerate(toks) if t]
        if len(keep) < len(toks):
            log.warning("%s[%s]: dropped %d empty sentence(s)", name, split, len(toks) - len(keep))
        where = f"data.name={name!r}[{split}]"
        out[split] = TaggedSplit([list(map(str, toks[i])) for i in keep], _hub_tags(ds, where, tag_column, toks, keep),
                                 {c: _hub_tags(ds, where, c, toks, keep) for c in aux_columns})
    return out


def _subset(split: TaggedSplit, ids: list[int]) -> TaggedSplit:
    return TaggedSplit([split.tokens[i] for i in ids], [split.tags[i] for i in ids],
                       {c: [tags[i] for i in ids] for c, tags in split.aux.items()})


def load_tagging(
    format: str = "conllu",
    name: str | None = None,
    tag_column: str = "upos",
    tokens_column: str = "tokens",
    train: dict | None = None,
    val: dict | None = None,
    test: dict | None = None,
    tokenizer: str = "space",
    aux_columns: Sequence[str] = (),
    val_fraction: float = 0.0,
    split_seed: int = 1234,
    subset: str | None = None,
    revision: str | None = None,
) -> TaggedCorpus:
    """Read tagged sentences (train, val, optional test) into a ``TaggedCorpus``."""
    fmt = getattr(format, "value", format)
    tok = getattr(tokenizer, "value", tokenizer)
    aux_columns = list(aux_columns or [])
    if tag_column in aux_columns or len(set(aux_columns)) < len(aux_columns):
        raise DataError(f"data.aux_columns={aux_columns}: each column once, and not data.tag_column={tag_column!r}")
    if fmt == "hub":
        if not name:
            raise DataError("data.name: a hub dataset name is required with data.format=hub")
        splits = _from_hub(name, tokens_column, tag_column, aux_columns, subset, revision, val_fraction)
        origin = hub_origin(name, subset, revision)
    elif fmt == "conllu":
        tag_column, aux_columns = tag_column.lower(), [c.lower() for c in aux_columns]
        if tag_column not in ("upos", "xpos"):
            raise DataError(f"data.tag_column={tag_column!r}: CoNLL-U tags are upos or xpos")
        if bad := [c for c in aux_columns if c not in AUX_COLUMNS]:
            raise DataError(f"data.aux_columns: {', '.join(map(repr, bad))} is not a CoNLL-U tag column "
                            f"({', '.join(AUX_COLUMNS)})")
        splits, paths = {}, []
        for split, spec in {"train": train or {}, "val": val or {}, "test": test or {}}.items():
            if spec.get("path"):
                splits[split] = read_conllu(spec["path"], tag_column, f"data.{split}.path", aux_columns)
                paths.append(Path(spec["path"]))
        origin = _file_digest(paths)
    else:
        raise DataError(f"data.format={fmt!r}: tagged sentences are read from conllu or hub")
    require_train_and_val(splits, val_fraction, split_seed, _subset, "sentences", hub=name if fmt == "hub" else None)
    if val_fraction > 0:
        origin += f"|val_fraction={val_fraction}|{split_seed}"
    for split, s in splits.items():
        log.info("%s: %d sentences, %d tokens", split, len(s.tokens), sum(map(len, s.tokens)))
    key = f"{origin}|{tag_column}|{tokens_column}" + "".join(f"|{c}" for c in aux_columns)
    return TaggedCorpus(splits, tag_column, tok, hashlib.sha1(key.encode()).hexdigest(), aux_columns)
