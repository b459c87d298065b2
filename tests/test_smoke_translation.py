"""Smoke tests: ``train(cfg, run_dir)`` with ``trainer=debug`` for every model preset, into tmp_path:
checkpoints, TensorBoard events, metrics.json and attention pictures exist and make sense."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

pytestmark = [pytest.mark.smoke, pytest.mark.usefixtures("one_thread")]

PRESETS = ["rnn", "gru", "lstm", "rnn_attn", "gru_attn", "lstm_attn"]
CHEAP = [
    "trainer=debug", "trainer.max_steps=3", "trainer.limit_eval=8", "trainer.log_every=1",
    "trainer.progress_bar=false", "model.emb_size=32", "model.hidden_size=64", "task.val_decode.max_len=12",
    "task.num_samples=2",
]


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory):
    """One tokenised-data cache for the module: Multi30k is tokenised once, not once per preset."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("preset", PRESETS)
def test_debug_run_writes_a_complete_run_directory(preset, tmp_path, token_cache):
    cfg = compose_config("train", [f"model={preset}", *CHEAP, f"cache_dir={token_cache}"])
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)

    assert {"val/loss", "val/ppl", "val/bleu", "val/chrf", "best/val/bleu"} <= set(metrics)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["metrics"]["val/bleu"] == metrics["val/bleu"]
    assert summary["step"] == 3 and summary["model"] == preset and summary["monitor"] == "val/bleu"
    assert "nrefs:1" in summary["signatures"]["bleu_signature"]  # sacrebleu's signature is kept

    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        assert path.is_file()
        raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
        assert raw["format"] == ckpt_io.FORMAT
        assert {"model", "optimizer", "step", "epoch", "rng", "sampler", "monitor", "config", "task"} <= set(raw)
        assert raw["config"]["model"]["name"] == preset
        assert raw["task"]["src_vocab"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    last = ckpt_io.load(run / "checkpoints" / "last.pt")
    assert last["step"] == 3
    assert not list((run / "checkpoints").glob("*.tmp"))  # atomic writes leave no temporaries
    assert json.loads((run / "task.json").read_text())["tgt_vocab"] == last["task"]["tgt_vocab"]

    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {"train/loss", "train/grad_norm", "train/lr", "train/tokens_per_sec",
                "val/loss", "val/ppl", "val/bleu"}
    assert expected <= tags, f"missing scalars: {expected - tags}"
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]

    pngs = sorted((run / "attention").glob("*.png")) if (run / "attention").exists() else []
    if preset.endswith("_attn"):
        assert len(pngs) == 2
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
        assert any(t.startswith("val/attention") for t in acc.Tags()["images"])
    else:
        assert not pngs
