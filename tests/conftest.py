"""Shared fixtures: composing the real config tree exactly as the CLI does, offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from seqlab.config import register_schemas  # noqa: E402
from seqlab.runtime import CONF_DIR  # noqa: E402

register_schemas()


def compose_config(config_name: str = "train", overrides: list[str] | None = None, tmp_path=None):
    """The composed config for ``seqlab <verb> <overrides>`` (no Hydra run directory)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        over = list(overrides or [])
        if tmp_path is not None and config_name == "train":
            over.append(f"cache_dir={tmp_path / 'cache'}")
        return compose(config_name=config_name, overrides=over)


@pytest.fixture
def compose_cfg(tmp_path):
    """``compose_cfg(["model=gru", "trainer=debug"])`` -> DictConfig, caching under tmp_path."""

    def _compose(overrides=None, config_name="train"):
        return compose_config(config_name, overrides, tmp_path)

    return _compose


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: on a small, shared machine a contended
    thread pool makes millisecond ops take a second (``usefixtures("one_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def cli_env(tmp_path):
    """Environment for CLI subprocess tests: offline, private caches, no progress bars."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", SEQLAB_CACHE=str(tmp_path / "cache"),
               HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
    return env
