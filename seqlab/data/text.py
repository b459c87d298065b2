"""Text corpora through Hugging Face ``datasets``: bundled files, the user's files, or the hub.

Every source ends as a ``TextCorpus``: one ``datasets.Dataset`` per split with ``src``/``tgt``
string columns. Files are checked before they are handed to ``datasets`` so that a problem is
reported with its file and line (non-UTF-8 bytes, an empty file, sides of different lengths).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqlab.data.hub import hf_datasets, hub_origin, open_hub
from seqlab.errors import DataError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

EVAL_SPLITS = ("val", "test")

_WORD_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


_CLITIC = re.compile(r"(\w)(n't|'s|'ve|'re|'ll|'d|'m)\b", re.IGNORECASE)
_TOKEN = re.compile(r"n't|'(?:s|ve|re|ll|d|m)\b|\w+(?:[-']\w+)*|\.\.\.|--|[^\w\s]", re.IGNORECASE)
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def ptb_tokens(text: str, lowercase: bool = True) -> list[str]:
    """Penn-Treebank-like tokens, as in SST-2: ``didn't`` -> ``did n't`` (lower-cased by default)."""
    text = _HTML_BREAK.sub(" ", text)
    text = _CLITIC.sub(r"\1 \2", text.lower() if lowercase else text)
    return _TOKEN.findall(text)


def tokenizer_fn(kind: str) -> Callable[[str], list[str]]:
    """``space``: split on whitespace; ``word``: words and punctuation marks; ``ptb``: Penn-Treebank-
    like words, as SST-2's (``did n't``); ``char``: characters."""
    kind = getattr(kind, "value", kind)
    if kind == "space":
        return str.split
    if kind == "word":
        return _WORD_RE.findall
    if kind == "ptb":
        return partial(ptb_tokens, lowercase=False)
    if kind == "char":
        return list
    raise ValueError(f"unknown tokenizer {kind!r} (space, word, ptb, char)")


def detokenize(tokens: list[str], kind: str) -> str:
    """Inverse of the tokenizer, as far as it goes (used for BLEU on the text a person reads)."""
    kind = getattr(kind, "value", kind)
    return "".join(tokens) if kind == "char" else " ".join(tokens)


@dataclass
class TextCorpus:
    """Raw parallel text: ``splits[name]`` has ``src`` and ``tgt`` columns of strings."""

    splits: dict[str, datasets.Dataset]
    src_lang: str
    tgt_lang: str
    tokenizer: str
    lowercase: bool
    fingerprint: str  # changes whenever the content or its reading changes (tokenised cache key)

    def tokenize(self, text: str) -> list[str]:
        return tokenizer_fn(self.tokenizer)(text.lower() if self.lowercase else text)


def carve_indices(n: int, fraction: float, seed: int, *, node: str = "data") -> tuple[list[int], list[int]]:
    """``<node>.val_fraction``: a seeded random ``fraction`` of ``n`` training examples becomes the
    validation split; returns (train indices, validation indices), each in file order."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise DataError(f"{node}.val_fraction={fraction}: leaves no training examples (of {n})")
    return sorted(idx[n_val:]), sorted(idx[:n_val])


def require_train_and_val(splits: dict[str, Any], val_fraction: float, seed: int,
                          pick: Callable[[Any, list[int]], Any], unit: str = "examples", *, node: str = "data",
                          hub: str | None = None, files: str = "path") -> None:
    """``splits`` must hold ``train``, and ``val`` either given or carved out of train by
    ``<node>.val_fraction`` (``pick(split, indices)``: the split's subset; ``len(split)``: its size);
    raises naming the keys (``hub``: the name of the hub dataset the splits came from, else they came
    from files, given as ``<node>.<split>.<files>``)."""
    if "train" not in splits:
        raise DataError(f"{node}.train.{files}: no training split given")
    if val_fraction > 0:
        if "val" in splits:
            if hub is not None:
                raise DataError(f"{node}.val_fraction > 0 carves validation out of train, but {node}.name={hub!r} "
                                f"has a validation split; set {node}.val_fraction=0 to use it")
            raise DataError(f"{node}.val_fraction > 0 carves validation out of train, but {node}.val.{files} is also "
                            "set; use one")
        train = splits["train"]
        train_idx, val_idx = carve_indices(len(train), val_fraction, seed, node=node)
        splits["train"], splits["val"] = pick(train, train_idx), pick(train, val_idx)
        log.info("validation split: %d %s carved from train (seed %d)", len(val_idx), unit, seed)
    if "val" not in splits:
        if hub is not None:  # its validation split unlabelled (open_hub(val_hint=...) reports a missing one)
            raise DataError(f"{node}.name={hub!r}: no labelled validation split; "
                            f"set {node}.val_fraction to carve one from train")
        raise DataError(f"{node}.val.{files}: no validation split given "
                        f"(or set {node}.val_fraction to carve one from train)")


def column(ds: datasets.Dataset, name: str) -> list:
    """A whole column as a Python list, in one Arrow read (iterating ``ds[name]`` reads row by row)."""
    return ds.data.column(name).to_pylist()


# ------------------------------------------------------------------------------- file checking
def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def check_text_file(path: str | os.PathLike, key: str) -> int:
    """Count the lines of a UTF-8 text file (``.gz`` allowed), or raise naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{key}: file not found: {path}")
    n = 0
    try:
        with _open_binary(path) as f:
            for n, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start} of the line); "
                        f"re-encode the file as UTF-8 ({key})"
                    ) from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({e}) ({key})") from None
    if n == 0:
        raise DataError(f"{path}: the file is empty ({key})")
    return n


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _drop_empty(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """Drop pairs with an empty side, saying how many (nothing disappears silently)."""
    empty = [i for i, (s, t) in enumerate(zip(column(ds, "src"), column(ds, "tgt"), strict=True)) if not (s.strip() and t.strip())]
    if empty:
        log.warning(
            "%s: dropped %d pair(s) with an empty side (first at line %d)", where, len(empty), empty[0] + 1
        )
        gone = set(empty)
        ds = ds.select([i for i in range(len(ds)) if i not in gone])
    if len(ds) == 0:
        raise DataError(f"{where}: no non-empty sentence pairs")
    return ds


# ------------------------------------------------------------------------------------- loaders
def _load_text_pair(split: str, src: str, tgt: str) -> tuple[datasets.Dataset, list[Path]]:
    n_src = check_text_file(src, f"data.{split}.src")
    n_tgt = check_text_file(tgt, f"data.{split}.tgt")
    if n_src != n_tgt:
        raise DataError(
            f"data.{split}: parallel files have different lengths: {src} has {n_src} lines, "
            f"{tgt} has {n_tgt}; line i of each must be a translation of the other"
        )
    sides = {}
    for col, path in (("src", src), ("tgt", tgt)):
        ds = hf_datasets().load_dataset("text", data_files={split: str(path)}, split=split)
        sides[col] = column(ds, "text")
    if len(sides["src"]) != len(sides["tgt"]):  # e.g. a lone carriage return splitting a line
        raise DataError(
            f"data.{split}: {src} and {tgt} read as {len(sides['src'])} and {len(sides['tgt'])} "
            "lines; check for stray carriage returns"
        )
    ds = hf_datasets().Dataset.from_dict(sides)
    return _drop_empty(ds, f"data.{split} ({src})"), [Path(src), Path(tgt)]


_TABLE_READERS = {  # format -> (datasets builder, its options)
    "tsv": ("csv", {"delimiter": "\t", "quoting": 3}),  # csv.QUOTE_NONE: quotes are text in TSV
    "csv": ("csv", {}),
    "jsonl": ("json", {}),
}
TABLE_FORMATS = ("tsv", "csv", "jsonl", "auto")  # auto: by the file's name
_TABLE_SUFFIXES = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def table_format(fmt: str, path: str | os.PathLike, key: str = "data.format") -> str:
    """``fmt``, or for ``auto`` the format the file name says (``.tsv``, ``.csv``, ``.jsonl``/``.json``,
    each optionally ``.gz``)."""
    fmt = getattr(fmt, "value", fmt)
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _TABLE_SUFFIXES:
        return _TABLE_SUFFIXES[suffixes[-1]]
    raise DataError(f"{path}: cannot tell a table's format from its name (.tsv, .csv or .jsonl); "
                    f"set {key}=tsv, csv or jsonl")


def read_table(split: str, path: str, fmt: str, *, node: str = "data") -> tuple[datasets.Dataset, str]:
    """One split's TSV/CSV/JSONL table (``fmt`` may be ``auto``) and the format it was read as; a file
    that cannot be read or parsed is a ``DataError`` naming it and the config key (under ``node``)."""
    check_text_file(path, f"{node}.{split}.path")
    fmt = table_format(fmt, path, f"{node}.format")
    builder, kwargs = _TABLE_READERS[fmt]
    try:
        ds = hf_datasets().load_dataset(builder, data_files={split: str(path)}, split=split, **kwargs)
    except Exception as e:  # pyarrow / pandas / json errors carry the row in their message
        raise DataError(f"{path}: cannot parse as {fmt} ({type(e).__name__}: {str(e)[:300]}) "
                        f"({node}.{split}.path)") from None
    return ds, fmt


def _load_table(split: str, path: str, fmt: str, src_col: str, tgt_col: str):
    ds, _ = read_table(split, path, fmt)
    missing = [c for c in (src_col, tgt_col) if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{path}: no column {missing[0]!r} (columns: {', '.join(ds.column_names)}); "
            "set data.src_column / data.tgt_column"
        )
    ds = ds.select_columns([src_col, tgt_col])
    ds = hf_datasets().Dataset.from_dict(
        {"src": [str(x or "") for x in column(ds, src_col)], "tgt": [str(x or "") for x in column(ds, tgt_col)]}
    )
    return _drop_empty(ds, f"data.{split} ({path})"), [Path(path)]


def _hub_side(ds: datasets.Dataset, where: str, col: str, lang: str, key: str, explicit: bool) -> list[str]:
    """One side of hub split ``ds``: column ``col`` (``data.<key>``; of ``{lang: text}`` dicts, the
    ``lang`` entry), or, with ``col`` defaulted to the language, the ``translation`` column's."""
    if col not in ds.column_names and not explicit and "translation" in ds.column_names:
        col = "translation"  # wmt16, opus_books, iwslt2017: {"de": ..., "en": ...} per row
    if col not in ds.column_names:
        raise DataError(f"{where} has no column {col!r} ({ds.column_names}); "
                        f"set data.{key} (it defaults to data.{key[:3]}_lang)")
    values = column(ds, col)
    if values and isinstance(values[0], dict):
        if lang not in values[0]:
            raise DataError(f"{where}: column {col!r} holds no {lang!r} text (languages: {', '.join(values[0])}); "
                            f"set data.{key[:3]}_lang")
        values = [(v or {}).get(lang) for v in values]
    return [str(v or "") for v in values]


def _load_hub(name: str, src_col: str | None, tgt_col: str | None, src_lang: str, tgt_lang: str,
              subset: str | None = None, revision: str | None = None,
              val_fraction: float = 0.0) -> dict[str, datasets.Dataset]:
    splits = {}
    fallback = "the bundled data (data=multi30k) or your own files (data=parallel_files or data=table_files)"
    hub = open_hub(name, fallback, subset=subset, revision=revision,
                   val_hint=None if val_fraction > 0 else "set data.val_fraction to carve one from train")
    for ours, ds in hub.items():
        where = f"data.name={name!r}: split {ours!r}"
        sides = {side: _hub_side(ds, where, col or lang, lang, f"{side}_column", col is not None)
                 for side, col, lang in (("src", src_col, src_lang), ("tgt", tgt_col, tgt_lang))}
        splits[ours] = _drop_empty(hf_datasets().Dataset.from_dict(sides), f"{name}[{ours}]")
    return splits


def load_parallel(
    format: str = "text",
    name: str | None = None,
    src_lang: str = "de",
    tgt_lang: str = "en",
    src_column: str | None = None,
    tgt_column: str | None = None,
    train: dict | None = None,
    val: dict | None = None,
    test: dict | None = None,
    tokenizer: str = "space",
    lowercase: bool = False,
    subset: str | None = None,
    revision: str | None = None,
    val_fraction: float = 0.0,
    split_seed: int = 1234,
) -> TextCorpus:
    """Read a parallel corpus (train, val and optionally test) into a ``TextCorpus``; without a
    validation split, ``val_fraction`` > 0 carves a seeded one out of train."""
    fmt = getattr(format, "value", format)
    tok = getattr(tokenizer, "value", tokenizer)
    src_col, tgt_col = src_column or src_lang, tgt_column or tgt_lang
    files: dict[str, dict] = {"train": train or {}, "val": val or {}, "test": test or {}}
    splits: dict[str, datasets.Dataset] = {}
    paths: list[Path] = []
    if fmt == "hub":
        if not name:
            raise DataError("data.name: a hub dataset name is required with data.format=hub")
        splits = _load_hub(name, src_column, tgt_column, src_lang, tgt_lang, subset, revision, val_fraction)
        origin = hub_origin(name, subset, revision)
    else:
        for split, spec in files.items():
            if fmt == "text" and spec.get("path"):
                raise DataError(f"data.{split}.path={spec['path']}: a table needs data.format=tsv, csv, "
                                f"jsonl or auto; plain text files are data.{split}.src and data.{split}.tgt")
            if fmt == "text" or (fmt == "auto" and not spec.get("path")):
                if not spec.get("src") and not spec.get("tgt"):
                    continue
                if not (spec.get("src") and spec.get("tgt")):
                    raise DataError(f"data.{split}: give both src and tgt files")
                splits[split], p = _load_text_pair(split, spec["src"], spec["tgt"])
            else:
                if not spec.get("path"):
                    continue
                splits[split], p = _load_table(split, spec["path"], fmt, src_col, tgt_col)
            paths += p
        origin = _file_digest(paths)
    files_key = "src / tgt" if fmt == "text" else "path"
    require_train_and_val(splits, val_fraction, split_seed, lambda ds, ids: ds.select(ids), "sentence pairs",
                          hub=name if fmt == "hub" else None, files=files_key)
    if val_fraction > 0:  # the key of a corpus with a val split given stays what it was before this knob
        origin += f"|val_fraction={val_fraction}|{split_seed}"
    fingerprint = hashlib.sha1(f"{origin}|{src_col}|{tgt_col}|{tok}|{lowercase}".encode()).hexdigest()
    return TextCorpus(splits, src_lang, tgt_lang, tok, lowercase, fingerprint)
