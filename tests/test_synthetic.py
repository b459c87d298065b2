"""Synthetic vision data: the same seed gives the same data, boxes and labels match the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.data.synthetic import (
    COLOURS,
    DIRECTIONS,
    caption_of,
    relation,
    synthetic_captions,
    synthetic_frames,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def scenes():
    return synthetic_captions(seed=3, n_train=60, n_val=10, n_test=0, image_size=64)


def test_captions_are_deterministic_given_the_seed(scenes):
    again = synthetic_captions(seed=3, n_train=60, n_val=10, n_test=0, image_size=64)
    other = synthetic_captions(seed=4, n_train=60, n_val=10, n_test=0, image_size=64)
    for split in ("train", "val"):
        assert torch.equal(scenes.splits[split].images, again.splits[split].images)
        assert scenes.splits[split].captions == again.splits[split].captions
        assert scenes.splits[split].objects == again.splits[split].objects
    assert scenes.fingerprint == again.fingerprint != other.fingerprint
    assert not torch.equal(scenes.splits["train"].images, other.splits["train"].images)
    assert "test" not in scenes.splits
    assert not torch.equal(scenes.splits["train"].images[:10], scenes.splits["val"].images)  # splits differ


def test_boxes_match_the_rendered_pixels(scenes):
    sp = scenes.splits["train"]
    assert sp.images.shape == (60, 3, 64, 64) and sp.images.dtype == torch.uint8
    for img, objs in zip(sp.images, sp.objects, strict=True):
        pic = img.permute(1, 2, 0).numpy()
        assert len(objs) == 2 and objs[0]["colour"] != objs[1]["colour"]
        painted = np.zeros(pic.shape[:2], dtype=bool)
        for o in objs:
            mask = (pic == np.array(COLOURS[o["colour"]], dtype=np.uint8)).all(-1)
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = o["box"]
            assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1
            # the shape reaches (almost) every side of its box
            assert xs.min() - x0 <= 1 and x1 - xs.max() <= 1 and y1 - ys.max() <= 1 and ys.min() - y0 <= 1
            painted |= mask
        assert not pic[~painted].any()  # the rest is black background


def test_caption_names_both_objects_and_their_relation(scenes):
    sp = scenes.splits["train"]
    relations = set()
    for caps, objs in zip(sp.captions, sp.objects, strict=True):
        assert len(caps) == 1 and caps[0] == caption_of(objs)
        words = caps[0].split()
        first = next(o for o in objs if o["colour"] == words[1])
        second = next(o for o in objs if o["colour"] == words[-2])
        assert (first["shape"], second["shape"]) == (words[2], words[-1])
        assert " ".join(words[3:-3]) == relation(first, second)
        relations.add(" ".join(words[3:-3]))
    assert relations == {"left of", "right of", "above", "below"}


def test_frames_are_deterministic_and_labels_follow_the_motion():
    kw = dict(n_train=20, n_val=4, n_test=0, num_frames=12, image_size=32, speed=2, turn_prob=0.3)
    a, b = synthetic_frames(seed=1, **kw), synthetic_frames(seed=1, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a.splits["train"].clips, b.splits["train"].clips, strict=True))
    assert a.splits["train"].labels == b.splits["train"].labels and a.labels[0] == "start"
    seen = set()
    for clip, labels in zip(a.splits["train"].clips, a.splits["train"].labels, strict=True):
        assert clip.shape == (12, 3, 32, 32) and len(labels) == 12 and labels[0] == "start"
        lit = clip.amax(1) > 0  # T x H x W
        corners = [(int(f.any(0).nonzero()[0]), int(f.any(1).nonzero()[0])) for f in lit]  # (x0, y0)
        for t in range(1, 12):
            # the painted 6 px square moved by `speed` pixels in the labelled direction
            dx, dy = DIRECTIONS[labels[t]]
            assert (corners[t][0] - corners[t - 1][0], corners[t][1] - corners[t - 1][1]) == (2 * dx, 2 * dy)
            assert int(lit[t].sum()) == 36
            seen.add(labels[t])
    assert seen == set(DIRECTIONS)


def test_long_range_frames_hide_the_object_and_keep_its_direction():
    v = synthetic_frames(seed=2, n_train=10, n_val=2, n_test=0, num_frames=30, hidden_after=5)
    for clip, labels in zip(v.splits["train"].clips, v.splits["train"].labels, strict=True):
        assert clip[:5].amax() > 0 and clip[5:].amax() == 0
        assert len(set(labels[4:])) == 1  # the last visible move's direction carries on
