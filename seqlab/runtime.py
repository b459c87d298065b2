"""Process-wide set-up shared by the verbs: seeds, threads, config location, error reporting."""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import torch

from seqlab.errors import SeqlabError

log = logging.getLogger("seqlab")

# conf/ sits beside the package in a source checkout (and an editable install).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional
        pass


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def offline_defaults() -> None:
    """Never hang on a hub request when the user has not said they are online."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def user_errors(fn: Callable) -> Callable:
    """Turn a ``SeqlabError`` into a one-line message and a non-zero exit, without a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SeqlabError as e:
            log.debug("error: %s", e)
            print(f"seqlab: error: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            print("seqlab: interrupted; checkpoints written so far are intact", file=sys.stderr)
            sys.exit(130)

    return wrapper
