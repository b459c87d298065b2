"""Captioning: COCO/Flickr readers (bundled sample and malformed files), CNN encoders and their
feature cache, attention over the grid, a contract test per model preset, debug runs, eval and
predict with attention overlays."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch
from conftest import compose_config
from PIL import Image

from seqlab.config import ASSETS, ImageEncoderConfig, ModelConfig
from seqlab.data.images import load_captions
from seqlab.data.synthetic import synthetic_captions
from seqlab.errors import DataError, SeqlabError
from seqlab.models.cnn import FeatureCache, ImageBackbone
from seqlab.tasks.captioning import CaptioningTask, box_cells

PRESETS = ["rnn", "gru", "lstm", "rnn_attn", "gru_attn", "lstm_attn"]
TINY = ["model.emb_size=16", "model.hidden_size=32", "task.encoder.channels=[8,8,16]"]


# tiny models run fastest on one thread (and on a shared CPU): the shared conftest fixture
pytestmark = pytest.mark.usefixtures("one_thread")


def _image(path, mode="RGB", size=(40, 30)):
    colour = {"RGB": (200, 30, 30), "L": 128, "RGBA": (0, 0, 255, 128), "P": 3}[mode]
    Image.new(mode, size, colour).save(path)


# ---------------------------------------------------------------------------------- readers
@pytest.mark.unit
def test_bundled_coco_sample_reads_with_five_references():
    corpus = load_captions(format="coco", root=str(ASSETS / "coco_mini"),
                           train={"captions": str(ASSETS / "coco_mini/captions_train2017.jsonl.gz")},
                           val={"captions": str(ASSETS / "coco_mini/captions_val2017.jsonl.gz")}, image_size=32)
    assert len(corpus.splits["train"]) == 80 and len(corpus.splits["val"]) == 159
    assert all(len(c) == 5 for sp in corpus.splits.values() for c in sp.captions)
    assert corpus.splits["val"].images.shape == (159, 3, 32, 32)
    assert (ASSETS / "coco_mini" / "README.md").is_file()


def _coco_fixture(tmp_path, annotations=None):
    img = tmp_path / "img"
    img.mkdir()
    _image(img / "a.jpg")
    _image(img / "grey.png", "L")
    _image(img / "rgba.png", "RGBA")
    (img / "broken.jpg").write_bytes(b"not a jpeg")
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "grey.png"}, {"id": 3, "file_name": "rgba.png"},
              {"id": 4, "file_name": "broken.jpg"}, {"id": 5, "file_name": "missing.jpg"}, {"id": 6, "file_name": "a.jpg"}]
    anns = annotations or [
        {"image_id": 1, "caption": "A red picture."}, {"image_id": 1, "caption": "   "},
        {"image_id": 2, "caption": "A grey picture."}, {"image_id": 3, "caption": "A blue picture."},
        {"image_id": 4, "caption": "Broken."}, {"image_id": 5, "caption": "Missing."}, {"image_id": 6, "caption": ""},
    ]
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    return path, img


@pytest.mark.unit
def test_coco_json_converts_modes_skips_and_counts_bad_images(tmp_path, caplog):
    path, img = _coco_fixture(tmp_path)
    with caplog.at_level(logging.INFO):
        corpus = load_captions(format="coco", train={"captions": str(path), "images": str(img)},
                               val={"captions": str(path), "images": str(img)}, image_size=16)
    sp = corpus.splits["train"]
    assert sp.names == ["a.jpg", "grey.png", "rgba.png"]  # broken and missing skipped, empty-only image dropped
    assert sp.captions[0] == ["A red picture."]  # the blank caption is gone
    assert sp.images.shape == (3, 3, 16, 16)
    grey = sp.images[1]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # grey converted to RGB
    text = caplog.text
    assert "skipped 2 unreadable or missing images" in text and "missing.jpg" in text
    assert "converted to RGB" in text and "dropped 2 empty captions" in text


@pytest.mark.unit
def test_coco_bad_image_can_stop_the_run_naming_the_file(tmp_path):
    path, img = _coco_fixture(tmp_path)
    with pytest.raises(DataError, match="broken.jpg"):
        load_captions(format="coco", train={"captions": str(path), "images": str(img)},
                      val={"captions": str(path), "images": str(img)}, on_bad_image="error")


@pytest.mark.unit
def test_captions_of_unknown_images_and_malformed_files_are_named(tmp_path):
    path, img = _coco_fixture(tmp_path, annotations=[{"image_id": 1, "caption": "ok"}, {"image_id": 99, "caption": "?"}])
    with pytest.raises(DataError, match="image ids missing.*99"):
        load_captions(format="coco", train={"captions": str(path), "images": str(img)},
                      val={"captions": str(path), "images": str(img)})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "a.jpg", "captions": ["x"]}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        load_captions(format="coco", train={"captions": str(bad), "images": str(img)}, val={"captions": str(bad)})
    with pytest.raises(DataError, match="not found"):
        load_captions(format="coco", train={"captions": str(tmp_path / "nope.json"), "images": str(img)},
                      val={"captions": str(bad), "images": str(img)})


@pytest.mark.unit
def test_flickr_token_file_with_image_lists(tmp_path):
    for name in ("1.jpg", "2.jpg", "3.jpg"):
        _image(tmp_path / name)
    token = tmp_path / "Flickr8k.token.txt"
    token.write_text("".join(f"{n}.jpg#{k}\tcaption {k} of image {n} .\n" for n in (1, 2, 3) for k in range(5)))
    (tmp_path / "train.txt").write_text("1.jpg\n2.jpg\n")
    (tmp_path / "dev.txt").write_text("3.jpg\n")
    corpus = load_captions(format="flickr", root=str(tmp_path), image_size=16,
                           train={"captions": str(token), "image_list": str(tmp_path / "train.txt")},
                           val={"captions": str(token), "image_list": str(tmp_path / "dev.txt")})
    assert corpus.splits["train"].names == ["1.jpg", "2.jpg"] and len(corpus.splits["val"].captions[0]) == 5
    (tmp_path / "dev.txt").write_text("4.jpg\n")
    with pytest.raises(DataError, match="4.jpg"):
        load_captions(format="flickr", root=str(tmp_path), train={"captions": str(token)},
                      val={"captions": str(token), "image_list": str(tmp_path / "dev.txt")})


@pytest.mark.unit
def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load the hub dataset.*offline"):
        load_captions(format="hub", name="someone/no-such-captions")


# ---------------------------------------------------------------------------------- encoders
@pytest.mark.unit
def test_pretrained_weights_offline_explain_how_to_use_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    with pytest.raises(SeqlabError, match=r"task.encoder.weights=/path/to/resnet18-.*\.pth"):
        ImageBackbone("resnet18", "IMAGENET1K_V1")
    with pytest.raises(SeqlabError, match="not one of DEFAULT"):
        ImageBackbone("resnet18", "IMAGENET_BOGUS")
    with pytest.raises(SeqlabError, match="not found"):
        ImageBackbone("resnet18", str(tmp_path / "missing.pth"))
    src = ImageBackbone("resnet18")
    state = {f"{k}": v for k, v in zip(
        ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"], src.trunk, strict=True)}
    flat = {f"{name}.{k}": v for name, m in state.items() for k, v in m.state_dict().items()}
    torch.save(flat, tmp_path / "r18.pth")
    loaded = ImageBackbone("resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(loaded.trunk[0].weight, src.trunk[0].weight)
    assert loaded(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)).shape == (1, 512, 2, 2)


@pytest.mark.unit
def test_frozen_features_are_computed_once_and_cached_on_disk(tmp_path):
    backbone = ImageBackbone("small", trainable=False, channels=[4, 8])
    images = torch.randint(0, 255, (10, 3, 16, 16), dtype=torch.uint8)
    calls = []

    def items(split, idx):
        calls.append(list(idx))
        return images[idx]

    cache = FeatureCache(backbone, tmp_path, "data-key", items, {"train": 10}, batch_size=4)
    first = cache.get("train", [3, 1, 3], torch.device("cpu"))
    assert first.shape == (3, 8, 4, 4) and torch.allclose(first[0], first[2])
    rest = cache.get("train", list(range(10)), torch.device("cpu"))
    assert sum(len(c) for c in calls) == 10  # each image through the CNN exactly once
    files = list((tmp_path / "features").glob("*-train.pt"))
    assert len(files) == 1
    calls.clear()
    again = FeatureCache(backbone, tmp_path, "data-key", items, {"train": 10}).get("train", [0, 9], torch.device("cpu"))
    assert not calls and torch.allclose(again, rest[[0, 9]])
    assert torch.allclose(rest[3], backbone(images[3:4])[0], atol=1e-2)  # fp16 on disk
    assert all(not p.requires_grad for p in backbone.trunk.parameters())
    backbone.train()
    assert not backbone.trunk.training  # frozen BatchNorm statistics stay fixed


@pytest.mark.unit
def test_box_cells_marks_the_cells_under_a_box():
    cells = box_cells([8, 0, 15, 7], (4, 4), 32)  # exactly cell (row 0, col 1)
    assert cells.sum() == 1 and cells[0, 1] == 1
    assert box_cells([6, 6, 17, 9], (4, 4), 32).sum() == 6  # overlaps 2 rows x 3 columns


# ---------------------------------------------------------------------------------- contract
@pytest.fixture(scope="module")
def tiny_scenes():
    return synthetic_captions(seed=0, n_train=12, n_val=4, n_test=0, image_size=32, min_object=6, max_object=10)


def _tiny_task(preset, data, tmp_path, **task_kw):
    cfg = compose_config("train", ["task=captioning", f"model={preset}", *TINY])
    model = ModelConfig(**{k: v for k, v in cfg.model.items()})
    enc = ImageEncoderConfig(channels=[8, 8, 16])
    return CaptioningTask(model=model, data=data, cache_dir=str(tmp_path), encoder=enc, **task_kw)


@pytest.mark.contract
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_and_decodes(preset, tiny_scenes, tmp_path):
    torch.manual_seed(0)
    task = _tiny_task(preset, tiny_scenes, tmp_path)
    task.network.train()
    batch = task.collate(list(range(6)))
    logits, attn = task.network(task.network.features(batch.inputs), batch.tgt_in)
    assert logits.shape == (*batch.tgt_in.shape, len(task.vocab))
    assert torch.isfinite(logits).all()
    if preset.endswith("_attn"):
        assert attn.shape == (*batch.tgt_in.shape, 16)  # 32 px, three pools -> 4 x 4 grid
        assert torch.allclose(attn.sum(-1), torch.ones(batch.tgt_in.shape))  # a distribution over the grid
    else:
        assert attn is None and task.network.decoder.fixed_context  # the image vector in every step
    out = task.training_step(batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in task.network.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for strategy, quantize in [("greedy", "none"), ("beam", "none"), ("sample", "none"), ("greedy", "int8"),
                               ("beam", "int8")]:
        caps = task.caption_split("val", [0, 1, 2], {"strategy": strategy, "max_len": 9, "beam_size": 3,
                                                     "quantize": quantize})
        assert len(caps) == 3 and all(len(c.tokens) <= 9 for c in caps)
        assert all(torch.isfinite(torch.tensor(c.score)) for c in caps)
        if preset.endswith("_attn"):
            assert caps[0].attention.shape[1:] == (4, 4)
    metrics = task.evaluate("val")
    assert {"val/loss", "val/bleu", "val/exact_match", "val/acc_relation", "val/acc_objects"} <= set(metrics)
    assert ("val/localisation" in metrics) == preset.endswith("_attn")


@pytest.mark.contract
def test_plain_model_can_use_the_image_for_the_initial_state_only(tiny_scenes, tmp_path):
    task = _tiny_task("gru", tiny_scenes, tmp_path, global_every_step=False)
    assert not task.network.decoder.fixed_context
    assert torch.isfinite(task.training_step(task.collate([0, 1])).loss)


# ---------------------------------------------------------------------------- end to end
SMOKE = ["task=captioning", "trainer=debug", "trainer.max_steps=3", "trainer.limit_eval=6", "trainer.batch_size=4",
         "trainer.progress_bar=false", "trainer.num_threads=1", "task.num_samples=1", "task.val_decode.max_len=9",
         *TINY]


@pytest.mark.smoke
def test_synthetic_debug_run_then_eval_and_predict_with_overlays(tmp_path):
    from seqlab.evaluate import evaluate
    from seqlab.predict import predict
    from seqlab.train import train

    cfg = compose_config("train", [*SMOKE, "model=gru_attn", "data.n_train=40", "data.n_val=8", "data.n_test=8",
                                   "data.image_size=32", "data.min_object=6", "data.max_object=10"], tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert "val/localisation" in metrics and (run / "checkpoints" / "best.pt").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*")) and (run / "images" / "val_image_0.png").is_file()
    ckpt = str(run / "checkpoints" / "best.pt")

    ev = compose_config("eval", [f"ckpt_path={ckpt}", "split=test", "decode.strategy=beam", "decode.max_len=9"])
    assert "test/exact_match" in evaluate(ev, tmp_path / "eval")

    photo = tmp_path / "photo.png"
    Image.fromarray(synthetic_captions(seed=9, n_train=1, n_val=0, n_test=0, image_size=32, min_object=6,
                                       max_object=10).splits["train"].images[0].permute(1, 2, 0).numpy()).save(photo)
    pr = compose_config("predict", [f"ckpt_path={ckpt}", f"input={photo}", f"attention_dir={tmp_path / 'att'}",
                                    "decode.max_len=5"])
    lines = predict(pr)
    assert len(lines) == 1
    pngs = sorted(p.name for p in (tmp_path / "att").glob("*.png"))
    assert "photo_grid.png" in pngs and len(pngs) == len(lines[0].split()) + 1  # one per word + the grid


@pytest.mark.smoke
def test_coco_mini_frozen_resnet_run_evaluates_with_five_references(tmp_path):
    from seqlab.train import train

    cfg = compose_config("train", [*SMOKE, "data=coco_mini", "data.image_size=64", "model=lstm_attn",
                                   "task.encoder.backbone=resnet18", "task.encoder.trainable=false",
                                   "trainer.max_steps=-1", "trainer.limit_train=null", "trainer.batch_size=100"], tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert {"val/bleu", "val/loss"} <= set(metrics)
    summary = json.loads((run / "metrics.json").read_text())
    assert "nrefs:5" in summary["signatures"]["bleu_signature"]
    assert summary["step"] == 4  # one epoch: 400 captions of 80 images
    assert list((tmp_path / "cache" / "features").glob("*-train.pt"))  # every train image's features cached


@pytest.mark.slow
def test_cli_bad_caption_file_is_one_line_without_traceback(tmp_path, cli_env):
    proc = subprocess.run(
        [sys.executable, "-m", "seqlab", "train", "task=captioning", "data=coco",
         f"data.train.captions={tmp_path / 'nope.json'}", f"data.val.captions={tmp_path / 'nope.json'}",
         f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env={**cli_env, "OMP_NUM_THREADS": "1"}, timeout=120,
    )
    assert proc.returncode != 0
    assert "captions file not found" in proc.stderr and "nope.json" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.contract
def test_validation_decodes_with_the_current_weights_after_a_fused_optimizer_step(tiny_scenes, tmp_path):
    """A fused Adam step does not bump parameter versions; decoding must not reuse stale weights."""
    torch.manual_seed(0)
    task = _tiny_task("lstm", tiny_scenes, tmp_path)
    opt = torch.optim.Adam(task.network.parameters(), lr=0.5, fused=True)
    task.caption_split("val", [0, 1])  # fills the decoder's step-weight cache
    task.network.train()
    opt.zero_grad()
    task.training_step(task.collate([0, 1, 2])).loss.backward()
    opt.step()
    before = [c.score for c in task.caption_split("val", [0, 1])]
    task.network.decoder._w_cache = None
    after = [c.score for c in task.caption_split("val", [0, 1])]
    assert before == pytest.approx(after)


@pytest.mark.smoke
@pytest.mark.parametrize("preset,shrink", [
    ("synthetic_captioning", ["data.n_train=16", "data.n_val=4", "data.n_test=0", "task.val_decode.max_len=8"]),
    ("synthetic_frames", ["data.n_train=8", "data.n_val=4", "data.n_test=0", "data.num_frames=4"]),
    ("coco_mini", ["data.image_size=32", "trainer.limit_train=8", "task.val_decode.max_len=8"]),
])
def test_vision_experiment_presets_compose_and_run_one_step(preset, shrink, tmp_path):
    from seqlab.train import train

    cfg = compose_config("train", [f"experiment={preset}", "trainer.max_steps=1", "trainer.batch_size=4",
                                   "trainer.limit_eval=4", "trainer.progress_bar=false", "trainer.num_threads=1",
                                   "task.num_samples=1", *shrink], tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert cfg.task.monitor in metrics and (run / "checkpoints" / "last.pt").is_file()
