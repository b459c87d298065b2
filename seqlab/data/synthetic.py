"""Toy vision data generated in code, seeded and offline.

``synthetic_captions``: two coloured shapes on a black canvas with a caption that needs *what* and
*where*, e.g. ``a red circle left of a blue square``. The object mentioned first is the one whose
colour comes first in ``COLOURS``; the relation is the dominant axis of the offset between the two
centres (positions are drawn so that the axis is never ambiguous). Every object's box is recorded so
that attention can be checked against it.

``synthetic_frames``: one square moving inside the frame, turning now and then (and at the walls);
the label of a frame is the direction of the move *into* it, so one frame alone does not tell it. With ``hidden_after`` the square vanishes after that frame and keeps
moving straight on: the labels of the blank frames are only known to a model that remembers.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch
from PIL import Image, ImageDraw

from seqlab.data.images import CaptionSplit, FrameSplit, ImageCaptionCorpus, VideoCorpus

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (60, 90, 240),
    "yellow": (235, 220, 40),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
FRAME_LABELS = ("start", *DIRECTIONS)
RELATION_WORDS = ("left", "right", "above", "below")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    """Fill ``shape`` inside ``box`` = (x0, y0, x1, y1), inclusive pixel coordinates."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def relation(a: dict, b: dict) -> str:
    """Where ``a`` is relative to ``b``: ``left of``, ``right of``, ``above`` or ``below``."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a["box"], b["box"]
    dx = (ax0 + ax1) / 2 - (bx0 + bx1) / 2
    dy = (ay0 + ay1) / 2 - (by0 + by1) / 2
    if abs(dx) > abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def caption_of(objects: list[dict]) -> str:
    """The one correct caption of a two-object scene (the first colour in ``COLOURS`` goes first)."""
    order = list(COLOURS)
    a, b = sorted(objects, key=lambda o: order.index(o["colour"]))
    return f"a {a['colour']} {a['shape']} {relation(a, b)} a {b['colour']} {b['shape']}"


def _overlap(a, b, gap: int) -> bool:
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


def random_scene(rng: random.Random, size: int, min_obj: int, max_obj: int) -> list[dict]:
    """Two objects of different colours, apart, with an unambiguous dominant offset axis."""
    colours = rng.sample(list(COLOURS), 2)
    while True:
        objs = []
        for colour in colours:
            s = rng.randint(min_obj, max_obj)
            x0, y0 = rng.randint(0, size - s), rng.randint(0, size - s)
            objs.append({"colour": colour, "shape": rng.choice(SHAPES), "box": [x0, y0, x0 + s - 1, y0 + s - 1]})
        a, b = objs
        if _overlap(a["box"], b["box"], 2):
            continue
        dx = abs((a["box"][0] + a["box"][2]) - (b["box"][0] + b["box"][2])) / 2
        dy = abs((a["box"][1] + a["box"][3]) - (b["box"][1] + b["box"][3])) / 2
        if max(dx, dy) >= 1.5 * min(dx, dy) + 4:  # one axis clearly dominates
            return objs


def render_scene(objects: list[dict], size: int) -> np.ndarray:
    """H x W x 3 uint8 picture of the objects on black."""
    img = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for o in objects:
        draw_shape(draw, o["shape"], tuple(o["box"]), COLOURS[o["colour"]])
    return np.asarray(img)


def _caption_split(rng: random.Random, n: int, size: int, min_obj: int, max_obj: int) -> CaptionSplit:
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions, objects = [], []
    for i in range(n):
        objs = random_scene(rng, size, min_obj, max_obj)
        images[i] = render_scene(objs, size)
        captions.append([caption_of(objs)])
        objects.append(objs)
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # N x 3 x H x W
    return CaptionSplit(tensor, captions, [f"scene_{i:05d}" for i in range(n)], objects)


def synthetic_captions(
    seed: int = 0,
    n_train: int = 6000,
    n_val: int = 500,
    n_test: int = 500,
    image_size: int = 64,
    min_object: int = 14,
    max_object: int = 20,
) -> ImageCaptionCorpus:
    """The synthetic captioning set: the same seed gives the same pictures, captions and boxes."""
    if not 4 <= min_object <= max_object or 2 * max_object + 8 > image_size:
        raise ValueError(f"data: objects of {min_object}..{max_object} px do not fit twice in {image_size} px")
    splits = {}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        if n > 0:
            rng = random.Random(seed * 1000 + k)
            splits[split] = _caption_split(rng, n, image_size, min_object, max_object)
    key = f"synthetic_captions|{seed}|{n_train}|{n_val}|{n_test}|{image_size}|{min_object}|{max_object}|v1"
    return ImageCaptionCorpus(splits, "space", False, image_size, hashlib.sha1(key.encode()).hexdigest(),
                              synthetic=True)


# ------------------------------------------------------------------------------------ frames
def _clip(rng: random.Random, T: int, size: int, obj: int, speed: int, turn_prob: float,
          hidden_after: int) -> tuple[np.ndarray, list[str]]:
    frames = np.zeros((T, size, size, 3), dtype=np.uint8)
    colour = np.array(COLOURS[rng.choice(list(COLOURS))], dtype=np.uint8)
    x, y = rng.randint(0, size - obj), rng.randint(0, size - obj)
    direction = rng.choice(list(DIRECTIONS))
    labels = []
    for t in range(T):
        visible = hidden_after <= 0 or t < hidden_after
        if t == 0:
            labels.append("start")
        elif visible:
            if rng.random() < turn_prob:
                direction = rng.choice(list(DIRECTIONS))
            dx, dy = DIRECTIONS[direction]
            if not (0 <= x + dx * speed <= size - obj and 0 <= y + dy * speed <= size - obj):
                # at a wall: a new direction that stays inside (the label is the move actually made)
                direction = rng.choice([d for d, (ex, ey) in DIRECTIONS.items()
                                        if 0 <= x + ex * speed <= size - obj and 0 <= y + ey * speed <= size - obj])
                dx, dy = DIRECTIONS[direction]
            x, y = x + dx * speed, y + dy * speed
            labels.append(direction)
        else:  # hidden: it goes straight on (where it is no longer matters)
            labels.append(direction)
        if visible:
            frames[t, y : y + obj, x : x + obj] = colour
    return frames, labels


def synthetic_frames(
    seed: int = 0,
    n_train: int = 3000,
    n_val: int = 300,
    n_test: int = 300,
    num_frames: int = 16,
    image_size: int = 32,
    object_size: int = 6,
    speed: int = 2,
    turn_prob: float = 0.25,
    hidden_after: int = 0,
) -> VideoCorpus:
    """Synthetic clips of a moving square; label per frame = direction of motion into it."""
    if num_frames < 2:
        raise ValueError("data.num_frames must be at least 2")
    splits = {}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        if n <= 0:
            continue
        rng = random.Random(seed * 1000 + 17 + k)
        frames = np.empty((n, num_frames, image_size, image_size, 3), dtype=np.uint8)
        labels = []
        for i in range(n):
            frames[i], lab = _clip(rng, num_frames, image_size, object_size, speed, turn_prob, hidden_after)
            labels.append(lab)
        # one conversion for the whole split (many small ones are slow on a busy machine)
        clips = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).contiguous()  # N x T x 3 x H x W
        splits[split] = FrameSplit(list(clips.unbind(0)), labels, [f"clip_{i:05d}" for i in range(n)])
    key = (f"synthetic_frames|{seed}|{n_train}|{n_val}|{n_test}|{num_frames}|{image_size}|{object_size}|"
           f"{speed}|{turn_prob}|{hidden_after}|v2")
    return VideoCorpus(splits, image_size, hashlib.sha1(key.encode()).hexdigest(), labels=list(FRAME_LABELS))
