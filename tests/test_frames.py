"""Per-frame video labels: the folder-of-frames reader and its bad input, a contract test per model
preset, a debug run and predict on a clip folder."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import compose_config
from PIL import Image

from seqlab.config import ImageEncoderConfig, ModelConfig
from seqlab.data.images import load_frame_folders
from seqlab.data.synthetic import synthetic_frames
from seqlab.errors import DataError
from seqlab.tasks.frames import FramesTask

PRESETS = ["rnn", "gru", "lstm", "rnn_attn", "gru_attn", "lstm_attn"]
TINY = ["model.emb_size=16", "model.hidden_size=32", "task.encoder.channels=[4,8]"]


# tiny models run fastest on one thread (and on a shared CPU): the shared conftest fixture
pytestmark = pytest.mark.usefixtures("one_thread")


def _clip_folder(root, name, n_frames, mode="RGB"):
    d = root / name
    d.mkdir(parents=True)
    for t in range(n_frames):
        img = Image.new("RGB", (20, 20), (0, 0, 0))
        img.paste((255, 0, 0), (t, t, t + 4, t + 4))
        img.convert(mode).save(d / f"{t:04d}.png")
    return d


def _labels(path, rows):
    path.write_text("".join(f"{clip}\t{labs}\n" for clip, labs in rows))
    return path


# ---------------------------------------------------------------------------------- reader
@pytest.mark.unit
def test_frame_folders_read_clips_with_a_label_per_frame(tmp_path, caplog):
    _clip_folder(tmp_path, "c1", 3)
    _clip_folder(tmp_path, "c2", 4, mode="L")
    (tmp_path / "empty").mkdir()
    _clip_folder(tmp_path, "short", 3)
    lab = _labels(tmp_path / "train.tsv", [("c1", "a b b"), ("c2", "a b a a"), ("empty", "a"), ("short", "a b"),
                                           ("gone", "a")])
    with caplog.at_level(logging.WARNING):
        v = load_frame_folders(train={"root": str(tmp_path), "labels": str(lab)},
                               val={"root": str(tmp_path), "labels": str(lab)}, image_size=16)
    sp = v.splits["train"]
    assert sp.names == ["c1", "c2"] and sp.clips[1].shape == (4, 3, 16, 16) and sp.labels[1] == ["a", "b", "a", "a"]
    assert "zero frames" in caplog.text and "2 labels for 3 frames" in caplog.text and "train.tsv:5" in caplog.text
    assert "skipped 3 clips" in caplog.text
    with pytest.raises(DataError, match=r"train.tsv:3 \(clip empty\).*zero frames"):
        load_frame_folders(train={"root": str(tmp_path), "labels": str(lab)},
                           val={"root": str(tmp_path), "labels": str(lab)}, on_bad_image="error")
    bad = tmp_path / "bad.tsv"
    bad.write_text("c1 a b b\n")
    with pytest.raises(DataError, match=r"bad.tsv:1: expected"):
        load_frame_folders(train={"root": str(tmp_path), "labels": str(bad)}, val={"labels": str(bad)})


@pytest.mark.unit
def test_unknown_validation_labels_are_named(tmp_path):
    _clip_folder(tmp_path, "c1", 2)
    tr = _labels(tmp_path / "train.tsv", [("c1", "a b")])
    va = _labels(tmp_path / "val.tsv", [("c1", "a zz")])
    v = load_frame_folders(train={"root": str(tmp_path), "labels": str(tr)}, val={"root": str(tmp_path), "labels": str(va)},
                           image_size=16)
    with pytest.raises(DataError, match="zz"):
        FramesTask(model=ModelConfig(name="gru", cell="gru", emb_size=8, hidden_size=8, attention="none"), data=v,
                   encoder=ImageEncoderConfig(channels=[4]))


# --------------------------------------------------------------------------------- contract
@pytest.fixture(scope="module")
def tiny_clips():
    return synthetic_frames(seed=0, n_train=8, n_val=4, n_test=0, num_frames=6, image_size=16, object_size=4)


@pytest.mark.contract
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("trainable", [True, False])
def test_every_preset_labels_every_frame(preset, trainable, tiny_clips, tmp_path):
    torch.manual_seed(0)
    cfg = compose_config("train", ["task=frames", f"model={preset}", *TINY])
    model = ModelConfig(**dict(cfg.model.items()))
    task = FramesTask(model=model, data=tiny_clips, cache_dir=str(tmp_path),
                      encoder=ImageEncoderConfig(channels=[4, 8], trainable=trainable))
    task.network.train()
    batch = task.collate([0, 1, 2])
    logits, attn = task._forward(batch)
    assert logits.shape == (3, 6, len(task.labels)) and torch.isfinite(logits).all()
    if preset.endswith("_attn"):
        assert attn.shape == (3, 6, 6) and torch.allclose(attn.sum(-1), torch.ones(3, 6))
    out = task.training_step(batch)
    assert torch.isfinite(out.loss) and out.n_tokens == 18
    out.loss.backward()
    for name, p in task.network.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert trainable or all(p.grad is None for p in task.network.backbone.parameters())
    metrics = task.evaluate("val")
    assert set(metrics) == {"val/loss", "val/frame_acc", "val/clip_acc"}
    assert 0 <= metrics["val/frame_acc"] <= 100


# ------------------------------------------------------------------------------- end to end
@pytest.mark.smoke
def test_debug_run_then_predict_on_a_clip_folder(tmp_path):
    from seqlab.predict import predict
    from seqlab.train import train

    cfg = compose_config("train", ["task=frames", "model=lstm", "trainer=debug", "trainer.max_steps=3",
                                   "trainer.batch_size=4", "trainer.progress_bar=false", "trainer.num_threads=1",
                                   "data.n_train=16", "data.n_val=4", "data.n_test=4", "data.num_frames=5",
                                   "data.image_size=16", "data.object_size=4", *TINY], tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert "val/frame_acc" in metrics and (run / "checkpoints" / "best.pt").is_file()
    clip = _clip_folder(tmp_path, "clip", 5)
    pr = compose_config("predict", [f"ckpt_path={run / 'checkpoints' / 'best.pt'}", f"input={clip}"])
    lines = predict(pr)
    assert len(lines) == 1 and len(lines[0].split()) == 5
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="zero frames"):
        predict(compose_config("predict", [f"ckpt_path={run / 'checkpoints' / 'best.pt'}", f"input={tmp_path / 'none'}"]))
