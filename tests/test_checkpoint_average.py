"""Checkpoint averaging: the mean of the weights, refusing checkpoints of different models."""

from __future__ import annotations

import pytest
import torch

from seqlab.errors import CheckpointError
from seqlab.training import checkpoint as ckpt_io

pytestmark = pytest.mark.unit


def _ckpt(path, weights):
    ckpt_io.atomic_save({"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, "model": weights,
                         "optimizer": {}, "config": {"seed": 1}, "task": {}, "step": 3}, path)
    return path


def test_average_is_the_mean(tmp_path):
    a = _ckpt(tmp_path / "step_1.pt", {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(7)})
    b = _ckpt(tmp_path / "step_2.pt", {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)})
    out = ckpt_io.average([a, b])
    assert torch.equal(out["model"]["w"], torch.tensor([2.0, 4.0]))
    assert out["model"]["n"].item() == 7 and out["optimizer"] is None
    ckpt_io.atomic_save(out, tmp_path / "avg.pt")
    assert ckpt_io.load(tmp_path / "avg.pt")["averaged_from"] == [str(a), str(b)]


def test_average_refuses_different_models(tmp_path):
    a = _ckpt(tmp_path / "a.pt", {"w": torch.zeros(2)})
    b = _ckpt(tmp_path / "b.pt", {"w": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="do not match"):
        ckpt_io.average([a, b])
