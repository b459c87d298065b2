"""Opening a Hugging Face hub dataset with a message that says what to do when it cannot load."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from seqlab.errors import DataError

if TYPE_CHECKING:
    import datasets

# our split name -> the names hub datasets use for it
HUB_SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "dev", "val"), "test": ("test",)}


def hf_datasets():
    """The ``datasets`` module, imported on first use: it and pyarrow/pandas take ~100 MiB, which
    a process that only translates or predicts does not need."""
    import datasets

    if not getattr(datasets, "_seqlab_quiet", False):
        datasets.disable_progress_bars()  # seqlab logs what it reads; no per-split bars
        datasets.logging.set_verbosity_error()
        datasets._seqlab_quiet = True
    return datasets


def hub_origin(name: str, subset: str | None = None, revision: str | None = None) -> str:
    """What a hub corpus's fingerprint (its cache key) starts from: the name, plus the subset and
    revision when set (unset, the key stays what it was before these options)."""
    return name + "".join(f"|{k}={v}" for k, v in (("subset", subset), ("revision", revision)) if v is not None)


def _load_hint(e: Exception, node: str, subset: str | None, revision: str | None) -> str:
    """What to do about a ``load_dataset`` failure that names a config key, else ""."""
    msg = str(e)
    if "Config name is missing" in msg:
        return f"; set {node}.subset to one of the dataset's subsets (configs)"
    if "BuilderConfig" in msg and "not found" in msg:
        return f"; {node}.subset={subset!r} is not one of the dataset's subsets (configs)"
    if revision is not None and "Revision" in msg:
        return f"; check {node}.revision (a branch, tag or commit of the dataset's repository)"
    return ""


def open_hub(name: str, fallback: str, *, subset: str | None = None, revision: str | None = None,
             node: str = "data", val_hint: str | None = None) -> dict[str, datasets.Dataset]:
    """``{"train": ..., "val": ..., "test": ...}`` (the splits the dataset has) of hub dataset
    ``name`` (``<node>.name``), its ``subset`` (config name) at ``revision`` when set; offline or
    unreachable raises a ``DataError`` that suggests ``fallback``. ``val_hint``: when given, a dataset
    without a validation split is an error that ends with it (what to do instead)."""
    args = (name,) if subset is None else (name, subset)
    kwargs = {} if revision is None else {"revision": revision}
    what = f"{node}.name={name!r}" + "".join(f" {node}.{k}={v!r}" for k, v in (("subset", subset), ("revision", revision))
                                              if v is not None)
    try:
        dd = hf_datasets().load_dataset(*args, **kwargs)
    except Exception as e:  # network, offline mode, unknown name, scripts: all end here
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"  # one line (datasets' own run over several)
        hint = _load_hint(e, node, subset, revision)
        if hint:
            raise DataError(f"{what}: cannot load the hub dataset ({why}){hint}") from None
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = "offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if offline else "is the hub reachable?"
        raise DataError(
            f"{what}: cannot load the hub dataset ({why}); "
            f"{hint}. Without a network use {fallback}."
        ) from None
    splits = {}
    for ours, theirs in HUB_SPLIT_NAMES.items():
        found = next((s for s in theirs if s in dd), None)
        if found is not None:
            splits[ours] = dd[found]
    if "train" not in splits:
        raise DataError(f"{node}.name={name!r}: the dataset has no train split (splits: {', '.join(dd)})")
    if "val" not in splits and val_hint is not None:
        raise DataError(f"{node}.name={name!r}: the dataset has no validation split (splits: {', '.join(dd)}; "
                        f"read as validation: {', '.join(HUB_SPLIT_NAMES['val'])}); {val_hint}")
    return splits


def label_names(ds: datasets.Dataset, column: str) -> list[str] | None:
    """Names of a ``ClassLabel`` column (or of a sequence of them), else None."""
    feat = ds.features.get(column)
    feat = getattr(feat, "feature", feat)  # Sequence(ClassLabel) -> ClassLabel
    return list(feat.names) if hasattr(feat, "names") else None
