"""Labelled texts (sentence/document classification) through Hugging Face ``datasets``.

Sources: a TSV/CSV/JSONL table per split (the bundled SST-2 and IMDB files take this path too)
or a hub dataset. Every source ends as a ``LabelledCorpus``: token lists and string labels per
split. Problems name the file and line: a missing column, an empty label, a file that does not
parse. Empty texts are dropped and counted; texts longer than ``max_len`` tokens are truncated
(``truncation``: keep the head, the tail, or half of each) and counted, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from seqlab.data.hub import hub_origin, label_names, open_hub
from seqlab.data.text import (
    TABLE_FORMATS,
    _file_digest,
    column,
    read_table,
    require_train_and_val,
    tokenizer_fn,
)
from seqlab.errors import DataError

log = logging.getLogger(__name__)

_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


@dataclass
class LabelledSplit:
    tokens: list[list[str]]
    labels: list[str]
    where: list[str]  # "file:line" of each example, for messages

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class LabelledCorpus:
    """``splits[name]``: tokenised texts and their labels (as strings)."""

    splits: dict[str, LabelledSplit]
    tokenizer: str
    lowercase: bool
    strip_html: bool
    max_len: int
    label_order: list[str] | None  # the hub's ClassLabel names, if it has them
    fingerprint: str
    truncation: str = "head"

    def tokenize(self, text: str) -> list[str]:
        return tokenize_text(text, self.tokenizer, self.lowercase, self.strip_html)


def tokenize_text(text: str, tokenizer: str, lowercase: bool, strip_html: bool) -> list[str]:
    if strip_html:
        text = _HTML_BREAK.sub(" ", text)
    return tokenizer_fn(tokenizer)(text.lower() if lowercase else text)


def truncate(tokens: list[str], max_len: int, truncation: str = "head", *, node: str = "data") -> list[str]:
    """At most ``max_len`` tokens (0: all): the first ones (``head``), the last ones (``tail``), or
    the first ``max_len // 2`` and the last ``max_len - max_len // 2`` (``head_tail``: a review's
    opening and its verdict)."""
    if not max_len or len(tokens) <= max_len:
        return tokens
    if truncation == "head":
        return tokens[:max_len]
    if truncation == "tail":
        return tokens[-max_len:]
    if truncation == "head_tail":
        head = max_len // 2
        return tokens[:head] + tokens[len(tokens) - (max_len - head):]
    raise DataError(f"{node}.truncation={truncation!r}: must be head, tail or head_tail")


def _read_table(split: str, path: str, fmt: str, text_col: str, label_col: str, *, node: str = "data"):
    ds, fmt = read_table(split, path, fmt, node=node)
    for key, col in (("text_column", text_col), ("label_column", label_col)):
        if col not in ds.column_names:
            raise DataError(
                f"{path}: no column {col!r} (columns: {', '.join(ds.column_names)}); set {node}.{key}"
            )
    first_line = 2 if fmt in ("tsv", "csv") else 1  # header line
    where = [f"{path}:{i + first_line}" for i in range(len(ds))]
    return column(ds, text_col), column(ds, label_col), where


def _to_split(texts, labels, where, names, corpus_args, origin: str, *, node: str = "data") -> LabelledSplit:
    tok_kind, lower, strip_html, max_len, truncation = corpus_args
    out = LabelledSplit([], [], [])
    empty, truncated = [], 0
    for text, label, w in zip(texts, labels, where, strict=True):
        if label is None or str(label).strip() == "":
            raise DataError(f"{w}: empty label (every row needs a label in the label column)")
        if names is not None and not 0 <= int(label) < len(names):  # -1: the hub's "no label"
            raise DataError(f"{w}: label {label} is not a class id of {node}.label_column (0 to {len(names) - 1}: "
                            f"{', '.join(names)}); -1 marks an unlabelled row")
        toks = tokenize_text(str(text or ""), tok_kind, lower, strip_html)
        if not toks:
            empty.append(w)
            continue
        if max_len and len(toks) > max_len:
            toks, truncated = truncate(toks, max_len, truncation, node=node), truncated + 1
        out.tokens.append(toks)
        out.labels.append(names[int(label)] if names is not None else str(label).strip())
        out.where.append(w)
    if empty:
        log.warning("%s: dropped %d empty text(s) (first at %s)", origin, len(empty), empty[0])
    if truncated:
        log.info("%s: truncated %d of %d texts to %s.max_len=%d tokens (%s)", origin, truncated, len(out.tokens), node,
                 max_len, truncation)
    if not out.tokens:
        raise DataError(f"{origin}: no non-empty texts")
    return out


def _subset(split: LabelledSplit, ids: list[int]) -> LabelledSplit:
    return LabelledSplit([split.tokens[i] for i in ids], [split.labels[i] for i in ids], [split.where[i] for i in ids])


def load_classification(
    format: str = "tsv",
    name: str | None = None,
    text_column: str = "sentence",
    label_column: str = "label",
    train: dict | None = None,
    val: dict | None = None,
    test: dict | None = None,
    val_fraction: float = 0.0,
    split_seed: int = 1234,
    tokenizer: str = "space",
    lowercase: bool = False,
    strip_html: bool = False,
    max_len: int = 0,
    truncation: str = "head",
    subset: str | None = None,
    revision: str | None = None,
    *,
    node: str = "data",
) -> LabelledCorpus:
    """Read labelled texts (train, val, optional test) into a ``LabelledCorpus``; messages name the
    config keys under ``node``, the config node these arguments came from."""
    fmt = getattr(format, "value", format)
    tok = getattr(tokenizer, "value", tokenizer)
    truncation = getattr(truncation, "value", truncation)
    args = (tok, lowercase, strip_html, max_len, truncation)
    files = {"train": train or {}, "val": val or {}, "test": test or {}}
    splits: dict[str, LabelledSplit] = {}
    order = None
    if fmt == "hub":
        if not name:
            raise DataError(f"{node}.name: a hub dataset name is required with {node}.format=hub")
        hub = open_hub(name, "the bundled data (data=sst2, data=imdb) or your own files (data=table_classification)",
                       subset=subset, revision=revision, node=node,
                       val_hint=None if val_fraction > 0 else f"set {node}.val_fraction to carve one from train")
        for split, ds in hub.items():
            for key, col in (("text_column", text_column), ("label_column", label_column)):
                if col not in ds.column_names:
                    raise DataError(f"{node}.name={name!r}[{split}]: no column {col!r} ({ds.column_names}); "
                                    f"set {node}.{key}")
            names = label_names(ds, label_column)
            order = order or names
            labels = column(ds, label_column)
            if split != "train" and labels and all(lab == -1 for lab in labels):
                log.info("%s[%s]: unlabelled (label -1), left out", name, split)
                continue
            where = [f"{name}[{split}] row {i}" for i in range(len(ds))]
            splits[split] = _to_split(column(ds, text_column), labels, where, names, args, f"{name}[{split}]",
                                      node=node)
        origin = hub_origin(name, subset, revision)
    elif fmt in TABLE_FORMATS:
        paths = []
        for split, spec in files.items():
            if spec.get("path"):
                texts, labels, where = _read_table(split, spec["path"], fmt, text_column, label_column, node=node)
                splits[split] = _to_split(texts, labels, where, None, args, f"{node}.{split} ({spec['path']})",
                                          node=node)
                paths.append(Path(spec["path"]))
        origin = _file_digest(paths)
    else:
        raise DataError(f"{node}.format={fmt!r}: labelled texts are read from tsv, csv, jsonl (auto: by file name) "
                        "or hub")
    require_train_and_val(splits, val_fraction, split_seed, _subset, node=node, hub=name if fmt == "hub" else None)
    key = f"{origin}|{text_column}|{label_column}|{args[:4]}|{val_fraction}|{split_seed}"
    if truncation != "head":  # the key of a head-truncated corpus stays what it was before this knob
        key += f"|{truncation}"
    return LabelledCorpus(splits, tok, lowercase, strip_html, max_len, order, hashlib.sha1(key.encode()).hexdigest(),
                          truncation)
