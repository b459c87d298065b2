"""Image and video data: caption corpora (COCO, Flickr8k/30k, hub) and folders of video frames.

Every source ends as an ``ImageCaptionCorpus`` (one ``CaptionSplit`` per split: a uint8 image tensor
and the captions of each image) or a ``VideoCorpus`` (one ``FrameSplit`` per split: clips and a label
per frame). Images are read once, converted to RGB (grey, palette and RGBA pictures are converted and
counted), resized so that the shorter side is ``image_size`` and centre-cropped square. A file that
cannot be read is skipped and counted, or stops the run (``on_bad_image=error``); either way the
message names it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from seqlab.config import plain
from seqlab.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class CaptionSplit:
    """images: N x 3 x H x W uint8; captions[i]: the raw reference captions of image i;
    objects[i] (synthetic data only): ``{"colour", "shape", "box": [x0, y0, x1, y1]}`` per object."""

    images: torch.Tensor
    captions: list[list[str]]
    names: list[str]
    objects: list[list[dict]] | None = None

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class ImageCaptionCorpus:
    splits: dict[str, CaptionSplit]
    tokenizer: str
    lowercase: bool
    image_size: int
    fingerprint: str  # changes whenever the images, captions or their reading change (cache key)
    synthetic: bool = False


@dataclass
class FrameSplit:
    """clips[i]: T_i x 3 x H x W uint8; labels[i]: one label per frame."""

    clips: list[torch.Tensor]
    labels: list[list[str]]
    names: list[str]

    def __len__(self) -> int:
        return len(self.clips)


@dataclass
class VideoCorpus:
    splits: dict[str, FrameSplit]
    image_size: int
    fingerprint: str
    labels: list[str] | None = None  # the label set in a fixed order (else: sorted training labels)


# ------------------------------------------------------------------------------------ images
class ImageStats:
    """Counts of what happened while reading images (logged once per split)."""

    def __init__(self, where: str):
        self.where = where
        self.converted: Counter[str] = Counter()
        self.bad: list[str] = []

    def report(self) -> None:
        if self.converted:
            modes = ", ".join(f"{n} {m}" for m, n in sorted(self.converted.items()))
            log.info("%s: converted to RGB: %s", self.where, modes)
        if self.bad:
            shown = "; ".join(self.bad[:3]) + (" ..." if len(self.bad) > 3 else "")
            log.warning("%s: skipped %d unreadable or missing images (%s)", self.where, len(self.bad), shown)


def load_image(path: str | Path, size: int, stats: ImageStats | None = None) -> np.ndarray:
    """``size x size x 3`` uint8: RGB, shorter side resized to ``size``, centre crop. Raises DataError."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                if stats is not None:
                    stats.converted[im.mode] += 1
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    im = im.convert("RGBA")
                    bg = Image.new("RGB", im.size, (255, 255, 255))
                    bg.paste(im, mask=im.getchannel("A"))  # transparent parts on white
                    im = bg
                else:
                    im = im.convert("RGB")
            w, h = im.size
            if w == 0 or h == 0:
                raise DataError(f"{path}: empty image ({w}x{h})")
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.array(im, dtype=np.uint8)  # a writable copy
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None


def _read_images(paths: list[Path], size: int, policy: str, where: str) -> tuple[list[np.ndarray | None], ImageStats]:
    stats = ImageStats(where)
    out: list[np.ndarray | None] = []
    for p in paths:
        try:
            out.append(load_image(p, size, stats))
        except DataError as e:
            if plain(policy) == "error":
                raise DataError(f"{e} (set data.on_bad_image=skip to leave such images out)") from None
            stats.bad.append(str(p))
            out.append(None)
    return out, stats


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _digest(paths: list[Path], extra: str) -> str:
    h = hashlib.sha1(extra.encode())
    for p in paths:
        try:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{p}|missing".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------- caption files
def read_coco(path: Path) -> list[tuple[str, list[str], int]]:
    """``(image file, captions, line)`` from a COCO captions JSON or a JSONL file.

    JSON: ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``.
    JSONL: one object per line with ``"image"`` and ``"captions"`` (a list) or ``"caption"`` (one).
    """
    try:
        with _open_text(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: captions file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the captions file ({e})") from None
    if not text.strip():
        raise DataError(f"{path}: the captions file is empty")
    stripped = text.lstrip()
    if stripped.startswith("{") and '"annotations"' in text[:10_000_000] and stripped.count("\n{") == 0:
        return _read_coco_json(path, text)
    rows: dict[str, tuple[list[str], int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}:{n}: not a JSON object ({e})") from None
        image = obj.get("image") or obj.get("file_name") if isinstance(obj, dict) else None
        if not image:
            raise DataError(f"{path}:{n}: no \"image\" field")
        caps = obj.get("captions", [obj["caption"]] if "caption" in obj else None)
        if not isinstance(caps, list):
            raise DataError(f"{path}:{n}: no \"captions\" list (or \"caption\" string)")
        rows.setdefault(image, ([], n))[0].extend(str(c) if c is not None else "" for c in caps)
    return [(img, caps, n) for img, (caps, n) in rows.items()]


def _read_coco_json(path: Path, text: str) -> list[tuple[str, list[str], int]]:
    try:
        data = json.loads(text)
        images = {im["id"]: im["file_name"] for im in data["images"]}
        annotations = data["annotations"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a COCO captions file ({type(e).__name__}: {e}); expected "
                        "{\"images\": [{\"id\", \"file_name\"}], \"annotations\": [{\"image_id\", \"caption\"}]}") from None
    caps: dict[int, list[str]] = {i: [] for i in images}
    unknown = Counter()
    for a in annotations:
        if a.get("image_id") not in images:
            unknown[a.get("image_id")] += 1
            continue
        caps[a["image_id"]].append(str(a.get("caption") or ""))
    if unknown:
        ids = ", ".join(map(str, list(unknown)[:5]))
        raise DataError(f"{path}: {sum(unknown.values())} captions refer to image ids missing from \"images\" "
                        f"({ids}{' ...' if len(unknown) > 5 else ''})")
    return [(images[i], c, 0) for i, c in caps.items()]


def read_flickr(path: Path, image_list: Path | None) -> list[tuple[str, list[str], int]]:
    """Flickr8k/30k token file: ``<image>#<k><TAB><caption>`` per line (``,`` CSV of Flickr30k's
    ``results.csv`` with ``image| comment_number| comment`` also works)."""
    try:
        with _open_text(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: captions file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the captions file ({e})") from None
    rows: dict[str, tuple[list[str], int]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "\t" in line:
            key, cap = line.split("\t", 1)
        elif "|" in line:
            parts = [p.strip() for p in line.split("|")]
            if n == 1 and parts[0] == "image_name":
                continue
            key, cap = parts[0], parts[-1] if len(parts) >= 3 else ""
        else:
            raise DataError(f"{path}:{n}: expected '<image>#<k><TAB><caption>'")
        image = key.split("#", 1)[0].strip()
        rows.setdefault(image, ([], n))[0].append(cap.strip())
    if not rows:
        raise DataError(f"{path}: the captions file is empty")
    if image_list is not None:
        try:
            wanted = [x.strip() for x in image_list.read_text(encoding="utf-8").splitlines() if x.strip()]
        except OSError as e:
            raise DataError(f"{image_list}: cannot read the image list ({e})") from None
        unknown = [w for w in wanted if w not in rows]
        if unknown:
            raise DataError(f"{image_list}: {len(unknown)} listed images have no captions in {path} "
                            f"({', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''})")
        return [(w, rows[w][0], rows[w][1]) for w in wanted]
    return [(img, caps, n) for img, (caps, n) in rows.items()]


def _build_split(rows, image_dir: Path, size: int, policy: str, where: str) -> tuple[CaptionSplit, list[Path]]:
    kept_rows, empty = [], 0
    for image, caps, _line in rows:
        good = [c.strip() for c in caps if c and c.strip()]
        empty += len(caps) - len(good)
        if good:
            kept_rows.append((image, good))
    if empty:
        log.warning("%s: dropped %d empty captions", where, empty)
    if len(kept_rows) < len(rows):
        log.warning("%s: dropped %d images without any non-empty caption", where, len(rows) - len(kept_rows))
    paths = [Path(image) if os.path.isabs(image) else image_dir / image for image, _ in kept_rows]
    arrays, stats = _read_images(paths, size, policy, where)
    stats.report()
    keep = [i for i, a in enumerate(arrays) if a is not None]
    if not keep:
        raise DataError(f"{where}: no readable images with captions (looked under {image_dir})")
    images = torch.from_numpy(np.stack([arrays[i] for i in keep])).permute(0, 3, 1, 2).contiguous()
    log.info("%s: %d images, %d captions", where, len(keep), sum(len(kept_rows[i][1]) for i in keep))
    return CaptionSplit(images, [kept_rows[i][1] for i in keep], [kept_rows[i][0] for i in keep]), paths


def _load_hub_captions(name: str, image_column: str, caption_column: str, size: int, subset: str | None = None,
                       revision: str | None = None) -> dict[str, CaptionSplit]:
    from seqlab.data.hub import open_hub

    fallback = ("the bundled sample (data=coco_mini), your own files (data=coco data.root=... or data=flickr) "
                "or the synthetic set (data=synthetic_captions)")
    hub = open_hub(name, fallback, subset=subset, revision=revision,
                   val_hint=f"captioning needs one: use a dataset that has one, or {fallback}")
    splits = {}
    for ours, ds in hub.items():
        for key, c in (("image_column", image_column), ("caption_column", caption_column)):
            if c not in ds.column_names:
                raise DataError(f"data.name={name!r}: split {ours!r} has no column {c!r} ({ds.column_names}); "
                                f"set data.{key}")
        arrays, captions, names = [], [], []
        for i, row in enumerate(ds):
            caps = row[caption_column]
            caps = [caps] if isinstance(caps, str) else [str(c) for c in caps if c and str(c).strip()]
            im = row[image_column]
            if not caps or im is None:
                continue
            try:
                arr = _pil_to_array(im, size)
            except (OSError, ValueError, AttributeError) as e:  # a broken hub image: named and skipped
                log.warning("%s[%s] row %d: cannot read the image (%s); skipped", name, ours, i, e)
                continue
            arrays.append(arr)
            captions.append(caps)
            names.append(f"{ours}_{i}")
        if arrays:
            splits[ours] = CaptionSplit(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(),
                                        captions, names)
        elif ours != "test":
            raise DataError(f"data.name={name!r}: split {ours!r} has no row with both an image and a caption "
                            "(data.image_column, data.caption_column)")
        else:
            log.warning("%s[test]: no row with both an image and a caption; left out", name)
    return splits


def _pil_to_array(im: Image.Image, size: int) -> np.ndarray:
    im = im.convert("RGB")
    scale = size / min(im.size)
    im = im.resize((max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))), Image.BILINEAR)
    left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    return np.array(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_captions(
    format: str = "coco",
    name: str | None = None,
    image_column: str = "image",
    caption_column: str = "captions",
    root: str | None = None,
    train: dict | None = None,
    val: dict | None = None,
    test: dict | None = None,
    image_size: int = 224,
    tokenizer: str = "word",
    lowercase: bool = True,
    on_bad_image: str = "skip",
    subset: str | None = None,
    revision: str | None = None,
) -> ImageCaptionCorpus:
    """Read an image-caption corpus (train, val and optionally test) into an ``ImageCaptionCorpus``."""
    fmt = plain(format)
    files = {"train": train or {}, "val": val or {}, "test": test or {}}
    splits: dict[str, CaptionSplit] = {}
    paths: list[Path] = []
    if fmt == "hub":
        from seqlab.data.hub import hub_origin

        if not name:
            raise DataError("data.name: a hub dataset name is required with data.format=hub")
        splits = _load_hub_captions(name, image_column, caption_column, image_size, subset, revision)
        origin = hub_origin(name, subset, revision)
    else:
        for split, spec in files.items():
            if not spec.get("captions"):
                continue
            cap_path = Path(spec["captions"])
            image_dir = Path(spec.get("images") or root or cap_path.parent)
            if not image_dir.is_dir():
                raise DataError(f"data.{split}.images: image folder {image_dir} does not exist")
            if fmt == "coco":
                rows = read_coco(cap_path)
            elif fmt == "flickr":
                lst = spec.get("image_list")
                rows = read_flickr(cap_path, Path(lst) if lst else None)
            else:
                raise DataError(f"data.format={fmt!r}: use coco, flickr or hub")
            splits[split], p = _build_split(rows, image_dir, image_size, on_bad_image, f"data.{split} ({cap_path})")
            paths += [cap_path, *p]
        origin = "files"
    for required in ("train", "val"):
        if required not in splits:
            raise DataError(f"data.{required}: no {required} split given (data.{required}.captions=...)")
    fp = _digest(paths, f"{origin}|{fmt}|{image_size}|{plain(tokenizer)}|{lowercase}|{plain(on_bad_image)}|"
                 f"{ {k: len(v) for k, v in splits.items()} }")
    return ImageCaptionCorpus(splits, plain(tokenizer), lowercase, image_size, fp)


# ------------------------------------------------------------------------------- frame folders
def read_frame_labels(path: Path) -> list[tuple[str, list[str], int]]:
    """``<clip><TAB><label per frame, space separated>`` per line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: labels file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the labels file ({e})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" not in line:
            raise DataError(f"{path}:{n}: expected '<clip folder><TAB><one label per frame>'")
        clip, labels = line.split("\t", 1)
        rows.append((clip.strip(), labels.split(), n))
    if not rows:
        raise DataError(f"{path}: the labels file is empty")
    return rows


def load_frame_folders(
    train: dict | None = None,
    val: dict | None = None,
    test: dict | None = None,
    image_size: int = 64,
    max_frames: int = 0,
    on_bad_image: str = "skip",
) -> VideoCorpus:
    """Clips as folders of frame images (sorted by name) with a labels file per split."""
    splits: dict[str, FrameSplit] = {}
    paths: list[Path] = []
    for split, spec in {"train": train or {}, "val": val or {}, "test": test or {}}.items():
        if not spec.get("labels"):
            continue
        label_path = Path(spec["labels"])
        root = Path(spec.get("root") or label_path.parent)
        clips, labels, names = [], [], []
        skipped = 0
        for clip, labs, n in read_frame_labels(label_path):
            where = f"{label_path}:{n} (clip {clip})"
            folder = root / clip
            frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) \
                if folder.is_dir() else []
            if max_frames > 0:
                frames = frames[:max_frames]
            problem = None
            if not folder.is_dir():
                problem = f"{where}: clip folder {folder} not found"
            elif not frames:
                problem = f"{where}: clip folder {folder} has zero frames"
            elif len(labs) < len(frames) or (max_frames <= 0 and len(labs) != len(frames)):
                problem = f"{where}: {len(labs)} labels for {len(frames)} frames"
            if problem is None:
                arrays, stats = _read_images(frames, image_size, "error" if plain(on_bad_image) == "error" else "skip",
                                             where)
                if stats.bad:
                    problem = f"{where}: unreadable frame {stats.bad[0]}"
            if problem is not None:
                if plain(on_bad_image) == "error":
                    raise DataError(problem + " (set data.on_bad_image=skip to leave such clips out)")
                log.warning("%s; clip skipped", problem)
                skipped += 1
                continue
            clips.append(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous())
            labels.append(labs[: len(frames)])
            names.append(clip)
            paths += frames
        if skipped:
            log.warning("data.%s: skipped %d clips", split, skipped)
        if not clips:
            raise DataError(f"data.{split} ({label_path}): no usable clips")
        splits[split] = FrameSplit(clips, labels, names)
        paths.append(label_path)
    for required in ("train", "val"):
        if required not in splits:
            raise DataError(f"data.{required}: no {required} split given (data.{required}.labels=...)")
    return VideoCorpus(splits, image_size, _digest(paths, f"frames|{image_size}|{max_frames}"))
