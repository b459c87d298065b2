"""Self-describing checkpoints: written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import torch

from seqlab.errors import CheckpointError
from seqlab.runtime import atomic_file

FORMAT = "seqlab-checkpoint"
VERSION = 1


def model_checkpoint(task: Any, config: dict[str, Any], step: int | None,
                     weights: dict[str, torch.Tensor] | None = None, **extra: Any) -> dict[str, Any]:
    """A checkpoint's entries that reading it back needs (``evaluate.restore_task``): format,
    version, the network's weights (``weights``, default its current ones), the task's state
    (vocabularies and the like) and the run's config; ``extra`` adds training state (optimizer,
    sampler, ...)."""
    return {"format": FORMAT, "version": VERSION, "torch_version": str(torch.__version__),
            "model": task.network.state_dict() if weights is None else weights, "task": task.state(),
            "config": config, "step": step, **extra}


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same directory, then rename: never a half-written file."""
    with atomic_file(path, "wb", sync=True) as f:
        torch.save(obj, f)


def load(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """Load a seqlab checkpoint safely; every failure is a ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}: no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "Unsupported" in ln), "")
        raise CheckpointError(
            f"{path}: refused: the file holds pickled Python objects other than tensors and plain "
            f"data, which could run code when loaded; nothing from it was executed. {detail}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated?): {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seqlab checkpoint (no 'format: {FORMAT}' entry)")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this seqlab ({VERSION})")
    for k in ("model", "config", "task"):
        if k not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks its {k!r} entry")
    return ckpt


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` with a message that says what does not match."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}")
        if shapes:
            parts.append(f"shape (checkpoint vs model) {'; '.join(shapes[:4])}")
        raise CheckpointError(f"{path}: weights do not match the model ({' / '.join(parts)})")
    module.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, key + ".")
        elif va != vb:
            out.append(f"{key}: {va!r} (checkpoint) vs {vb!r} (now)")
    return out


def average(paths: list[str | Path]) -> dict[str, Any]:
    """A checkpoint whose weights are the mean of ``paths``' weights (the newest one's metadata).

    Averaging the last few validation checkpoints of a run usually adds a little BLEU for free.
    The optimizer state is dropped: the result is for eval/predict, not for resuming."""
    if not paths:
        raise CheckpointError("nothing to average")
    ckpts = [load(p, key=str(p)) for p in paths]
    ref = ckpts[-1]
    keys = set(ref["model"])
    for p, c in zip(paths, ckpts, strict=True):
        if set(c["model"]) != keys or any(c["model"][k].shape != ref["model"][k].shape for k in keys):
            raise CheckpointError(f"{p}: its weights do not match {paths[-1]}; average checkpoints of one run")
    avg = {}
    for k, v in ref["model"].items():
        if v.is_floating_point():
            avg[k] = sum(c["model"][k].double() for c in ckpts).div(len(ckpts)).to(v.dtype)
        else:
            avg[k] = v
    out = {k: v for k, v in ref.items() if k not in ("optimizer", "scheduler", "train_model")}
    out.update(model=avg, averaged_from=[str(p) for p in paths], optimizer=None, scheduler=None)
    return out
