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


def open_hub(name: str, fallback: str, *, node: str = "data") -> dict[str, datasets.Dataset]:
    """``{"train": ..., "val": ..., "test": ...}`` (the splits the dataset has) of hub dataset
    ``name`` (``<node>.name``); offline or unreachable raises a ``DataError`` that suggests ``fallback``."""
    try:
        dd = hf_datasets().load_dataset(name)
    except Exception as e:  # network, offline mode, unknown name, scripts: all end here
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = "offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if offline else "is the hub reachable?"
        raise DataError(
            f"{node}.name={name!r}: cannot load the hub dataset ({type(e).__name__}: {str(e)[:300]}); "
            f"{hint}. Without a network use {fallback}."
        ) from None
    splits = {}
    for ours, theirs in HUB_SPLIT_NAMES.items():
        found = next((s for s in theirs if s in dd), None)
        if found is not None:
            splits[ours] = dd[found]
    if "train" not in splits:
        raise DataError(f"{node}.name={name!r}: the dataset has no train split (splits: {', '.join(dd)})")
    return splits


def label_names(ds: datasets.Dataset, column: str) -> list[str] | None:
    """Names of a ``ClassLabel`` column (or of a sequence of them), else None."""
    feat = ds.features.get(column)
    feat = getattr(feat, "feature", feat)  # Sequence(ClassLabel) -> ClassLabel
    return list(feat.names) if hasattr(feat, "names") else None
